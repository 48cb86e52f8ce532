"""The commented starter config written by `itam-sync init`.

Without a connector list it has a disabled example block for every registered connector type. With one
(`itam-sync init --connectors okta,intune,jamf,crowdstrike,bamboohr,procurement`) it is a config for exactly
that set: one enabled block each, with a schedule and a nightly full resync, its role in a comment, a filled-in
precedence (HR first for people, the MDMs for `assigned_to` within a freshness window, procurement for cost and
warranty) and commented sink and reminder examples. Placeholders the operator must replace (tenant ids) are the
ones `validate` refuses until they are replaced.

It takes connector type names and a loader (name -> connector class) and, for the guided form, each type's
role: it imports nothing above the settings layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml

HEADER = """\
# itam-sync configuration. Validate with: itam-sync validate --config THIS_FILE
# Secrets are references resolved at run time, never stored: ${env:NAME} or ${file:/run/secrets/name}.
# Relative paths (the SQLite store, mappings, data files) start from this file's folder.

store:
  url: sqlite:///itam.db          # or postgresql://user:${env:PGPASSWORD}@host/db

mappings_dir: MAPPINGS_DIR

identity:
  hostname_weak_key: false        # join assets on hostname only when no strong key matched
  junk_serials: []                # added to the built-in list ("0", "Default string", "To Be Filled By O.E.M.", ...)
  non_matching_macs: []           # dock / USB adapter MACs or OUI prefixes that must never join two assets
"""

ALL_TYPES_PRECEDENCE = """
precedence:
  default: [manual]               # source order for every field not listed below (instance or type names)
  asset:
    fields:
      assigned_to: {order: [], freshness: 30d}
      last_seen: {strategy: latest}
  person:
    default: []
"""

SYNC = """
sync:
  deletion_guard: 0.10            # a full run may mark at most this share of a connector's records missing
  fill_rate_drop: 0.20            # a full run whose field fill rate falls more than this ends `degraded`
"""

PUBLISHING = """
# Push golden records out (`itam-sync push`), and send reminders (`itam-sync remind`); see the README,
# "Publishing". Uncomment and fill in what you use.
# sinks:
#   - name: cmdb
#     type: servicenow
#     schedule: every 1h
#     settings: {base_url: https://example.service-now.com, username: itam_sync, password: "${env:SN_PASSWORD}"}
#   - name: hook
#     type: webhook
#     settings: {url: https://hooks.example.com/itam, secret: "${env:ITAM_WEBHOOK_SECRET}"}
# reminders:
#   schedule: "0 8 * * 1-5"        # weekdays at 08:00
#   delivery:
#     smtp: {host: smtp.example.com, from: itam@example.com, to: [it-assets@example.com],
#            username: itam, password: "${env:SMTP_PASSWORD}"}
#     # slack_webhook: "${env:SLACK_WEBHOOK_URL}"
#   rules:
#     - {name: warranty, type: warranty_ending, days: 60}
#     - {name: leavers, type: terminated_not_recovered, days: 7}
#     - {name: unseen, type: device_unseen, days: 30}
"""

# What each role is, for the comment above a block, and where it ranks (lower first).
ROLE_TEXT = {
    "mdm": "device management: knows who holds a device now and what it runs",
    "edr": "endpoint security: host names, MACs, last seen, agent health",
    "idp": "identity provider: accounts and e-mail; ranks below HR for people",
    "hr": "HR system: the source of truth for people: status, department, manager, dates",
    "cloud": "cloud accounts: instances and resources",
    "procurement": "purchasing: cost, order, vendor and warranty dates",
    "warranty": "warranty look-ups: warranty start and end",
    "other": "another source",
}
ROLE_RANK = {"mdm": 0, "edr": 1, "cloud": 2, "idp": 3, "hr": 4, "procurement": 5, "warranty": 6, "other": 7}
# Nightly full resyncs, staggered so the sources are not all read at the same minute.
FULL_AT = "0 {hour} * * *"
PURCHASE_FIELDS = ("purchase_cost", "purchase_date", "order_number", "vendor")
WARRANTY_FIELDS = ("warranty_start", "warranty_end")


def _yaml_block(value: Any, indent: int) -> str:
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=False).rstrip("\n")
    pad = " " * indent
    return "\n".join(pad + line for line in text.splitlines())


def _flow(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def instance_name(type_name: str) -> str:
    """The instance name a guided config gives a connector type (okta -> okta, google_workspace -> google-workspace)."""
    return type_name.replace("_", "-")


def describe_setting(info: Any, example: Any = None) -> str:
    """'required, e.g. ...' or 'default ...' for one settings field (a default factory is called, never shown as
    PydanticUndefined)."""
    if info.is_required():
        return "required" + (f", e.g. {_short(example)}" if example is not None else "")
    default = info.get_default(call_default_factory=True)
    return "optional" if default is None else f"default {_short(default)}"


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _settings_comments(cls: Any) -> list[str]:
    out = []
    examples = cls.example_settings or {}
    for fname, info in cls.settings_model.model_fields.items():
        desc = info.description or ""
        out.append(f"  #   settings.{fname}: {describe_setting(info, examples.get(fname))}"
                   f"{' - ' + desc if desc else ''}\n")
    return out


def starter_config(names: Iterable[str], load: Callable[[str], Any], *, connectors: list[str] | None = None,
                   roles: Mapping[str, str] | None = None, mappings_dir: str = "mappings") -> str:
    """The starter config text. `names`: every registered type; `load(name)` gives its class. With
    `connectors`, a guided config for exactly those types (`roles`: type -> mdm, edr, idp, hr, ...)."""
    head = HEADER.replace("MAPPINGS_DIR", mappings_dir + "   # <mappings_dir>/<connector type>.yaml, unless a "
                          "connector sets `mapping:`" if len(mappings_dir) < 40 else mappings_dir)
    if connectors:
        return _guided(connectors, load, roles or {}, head)
    parts = [head, ALL_TYPES_PRECEDENCE, SYNC, "\nconnectors:\n"]
    for name in names:
        try:
            cls = load(name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin still gets a comment
            parts.append(f"  # {name}: cannot load ({exc})\n")
            continue
        parts.append(f"  # {cls.description or name}\n")
        parts += _settings_comments(cls)
        parts.append(f"  - name: {name.replace('_', '-')}-main\n    type: {name}\n    enabled: false\n"
                     f"    schedule: every 1h\n    settings:\n")
        settings = cls.example_settings or {}
        parts.append((_yaml_block(settings, 6) if settings else "      {}") + "\n\n")
    return "".join(parts)


def _guided(types: list[str], load: Callable[[str], Any], roles: Mapping[str, str], head: str) -> str:
    role = {t: roles.get(t, "other") for t in types}
    ordered = sorted(types, key=lambda t: (ROLE_RANK.get(role[t], 9), types.index(t)))
    names = {t: instance_name(t) for t in types}

    def of(*wanted: str) -> list[str]:
        return [names[t] for t in ordered if role[t] in wanted]

    lines = ["", "precedence:",
             "  # Connector instance names, highest first; `manual` (operator overrides) always sits above them.",
             f"  default: {_flow([names[t] for t in ordered])}", "  asset:", "    fields:"]
    holders = of("mdm") or of("idp")
    if holders:
        fallback = of("idp", "procurement") if of("mdm") else of("procurement")
        lines.append("      # Who holds a device: the MDMs report it daily; a report older than 30 days loses to a "
                     "fresher source.")
        lines.append(f"      assigned_to: {{order: {_flow(holders + fallback)}, freshness: 30d}}")
    buying = of("procurement")
    if buying:
        lines.append("      # What it cost and when it was bought: the purchasing records.")
        lines += [f"      {f}: {{order: {_flow(buying)}}}" for f in PURCHASE_FIELDS]
    warranty = of("warranty") + buying
    if warranty:
        lines += [f"      {f}: {{order: {_flow(warranty)}}}" for f in WARRANTY_FIELDS]
    lines.append("      last_seen: {strategy: latest}   # the most recent sighting by any source")
    people = of("hr") + of("idp")
    if people:
        lines += ["  person:",
                  "    # People: HR first (status, department, manager, dates), then the identity providers.",
                  f"    default: {_flow(people)}"]
    parts = [head, "\n".join(lines) + "\n", SYNC, "\nconnectors:\n"]
    for n, t in enumerate(ordered):
        cls = load(t)
        parts.append(f"  # {names[t]}: {cls.description or t}\n")
        parts.append(f"  # role: {role[t]} ({ROLE_TEXT.get(role[t], ROLE_TEXT['other'])})\n")
        parts += _settings_comments(cls)
        every = "every 6h" if role[t] in ("procurement", "warranty") else "every 1h"
        parts.append(f"  - name: {names[t]}\n    type: {t}\n"
                     + ("" if t in roles else "    role: other   # what it is to the reports: mdm, edr, idp, hr, "
                        "procurement, cloud, warranty\n")
                     + f"    schedule: {every}\n"
                     f"    full_schedule: \"{FULL_AT.format(hour=(1 + n) % 24)}\"   # nightly full resync: "
                     "marks what disappeared as missing\n    settings:\n")
        settings = cls.example_settings or {}
        parts.append((_yaml_block(settings, 6) if settings else "      {}") + "\n\n")
    parts.append(PUBLISHING)
    return "".join(parts)
