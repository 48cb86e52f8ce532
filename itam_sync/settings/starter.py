"""The commented starter config written by `itam-sync init`: a block for every registered connector type."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import yaml

HEADER = """\
# itam-sync configuration. Validate with: itam-sync validate --config THIS_FILE
# Secrets are references resolved at run time, never stored: ${env:NAME} or ${file:/run/secrets/name}.

store:
  url: sqlite:///itam.db          # or postgresql://user:${env:PGPASSWORD}@host/db

mappings_dir: mappings            # mappings/<connector type>.yaml, unless a connector sets `mapping:`

identity:
  hostname_weak_key: false        # join assets on hostname only when no strong key matched
  junk_serials: []                # added to the built-in list ("0", "Default string", "To Be Filled By O.E.M.", ...)
  non_matching_macs: []           # dock / USB adapter MACs or OUI prefixes that must never join two assets

precedence:
  default: [manual]               # source order for every field not listed below (instance or type names)
  asset:
    fields:
      assigned_to: {order: [], freshness: 30d}
      last_seen: {strategy: latest}
  person:
    default: []

sync:
  deletion_guard: 0.10            # a full run may mark at most this share of a connector's records missing

connectors:
"""


def _yaml_block(value: Any, indent: int) -> str:
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=False).rstrip("\n")
    pad = " " * indent
    return "\n".join(pad + line for line in text.splitlines())


def starter_config(names: Iterable[str], load: Callable[[str], Any]) -> str:
    """A commented config with one disabled example block per connector type; `load(name)` gives its class."""
    parts = [HEADER]
    for name in names:
        try:
            cls = load(name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin still gets a comment
            parts.append(f"  # {name}: cannot load ({exc})\n")
            continue
        parts.append(f"  # {cls.description or name}\n")
        for fname, info in cls.settings_model.model_fields.items():
            desc = info.description or ""
            req = "required" if info.is_required() else f"default {info.default!r}"
            parts.append(f"  #   settings.{fname}: {req}{' - ' + desc if desc else ''}\n")
        parts.append(f"  - name: {name.replace('_', '-')}-main\n    type: {name}\n    enabled: false\n"
                     f"    schedule: every 1h\n    settings:\n")
        settings = cls.example_settings or {}
        parts.append((_yaml_block(settings, 6) if settings else "      {}") + "\n\n")
    return "".join(parts)
