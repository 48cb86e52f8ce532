"""Checks of a loaded config that pydantic's types cannot express, run whenever a config is loaded.

`load_settings` runs them, so `validate` refuses what `run`, `serve` or `status` would trip over later, with
the same words: a secret written as a shell variable (`${OKTA_API_TOKEN}`) or as a literal in a secret field,
a store URL whose scheme no driver serves (`sqlit:///`), an identity key that is not a canonical field, an
unknown time zone, and placeholder ids that `itam-sync init` wrote for the operator to replace. Unset secret
references are warnings, for enabled connectors and sinks only, gathered into one line.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from itam_sync.model.canonical import FIELDS, EntityType
from itam_sync.settings.models import DATABASE_URL_ENV, SECRET_REF, Settings
from itam_sync.settings.problems import Lines, format_problem
from itam_sync.settings.secrets import _secret_refs_at

# Placeholder ids `itam-sync init` writes where only the operator knows the value (a tenant id, a key id).
PLACEHOLDER_IDS = ("00000000-0000-0000-0000-000000000000",)
# A shell-style reference: `${NAME}` or `$NAME`, which itam-sync does not expand (only ${env:..}/${file:..}).
_SHELL_REF = re.compile(r"\$\{(?!env:|file:)([A-Za-z_][A-Za-z0-9_]*)\}|^\$([A-Za-z_][A-Za-z0-9_]*)$")
# Setting names that hold secrets: ends of names, so `token_url` or `key_id` are not secrets but
# `api_token`, `client_secret`, `secret_access_key` and `private_key` are.
_SECRET_NAME = re.compile(r"(secret|password|passwd|token|_key|credentials_json)$")
STORE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
_STORE_EXAMPLES = "sqlite:///itam.db (a file next to the config) or postgresql://user@host/db"


def is_secret_setting(name: str) -> bool:
    """Whether a connector or sink setting called `name` holds a secret (by its name)."""
    return bool(_SECRET_NAME.search(name.lower()))


def config_problems(s: Settings, lines: Lines, file: str) -> list[str]:
    """Every problem of these kinds, each with file:line, key and the fix."""
    problems = store_url_problems(s, lines, file)
    blocks: list[tuple[tuple[Any, ...], str, dict[str, Any], bool]] = [
        (("connectors", i), c.name, c.settings, c.enabled) for i, c in enumerate(s.connectors)]
    blocks += [(("sinks", i), c.name, c.settings, c.enabled) for i, c in enumerate(s.sinks)]
    for where, name, settings, enabled in blocks:
        problems += _secret_problems(lines, file, where, name, settings)
        if enabled:
            problems += _placeholder_problems(lines, file, where, settings)
    for ent, keys in ((EntityType.ASSET, s.identity.asset_keys), (EntityType.PERSON, s.identity.person_keys),
                      (EntityType.SUBSCRIPTION, s.identity.subscription_keys)):
        for n, key in enumerate(keys):
            if key not in FIELDS[ent]:
                close = difflib.get_close_matches(key, FIELDS[ent], n=1)
                hint = (f"did you mean {close[0]!r}?" if close
                        else f"use canonical fields such as {', '.join(list(FIELDS[ent])[:4])}")
                problems.append(format_problem(file, lines, ("identity", f"{ent.value}_keys", n),
                                               f"{key!r} is not a canonical {ent.value} field, so it can never "
                                               "match", hint))
    if s.service.timezone:
        try:
            ZoneInfo(s.service.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(format_problem(file, lines, ("service", "timezone"),
                                           f"unknown time zone {s.service.timezone!r}",
                                           "use an IANA name such as Europe/Lisbon or UTC"))
    return problems


def store_url_problems(s: Settings, lines: Lines, file: str) -> list[str]:
    """A store URL no driver serves: an unknown scheme, or a SQLite URL without its third slash."""
    url = s.store.url.strip()
    env = os.environ.get(DATABASE_URL_ENV, "").strip()
    where = f"{DATABASE_URL_ENV} (environment)" if env and env == url else None
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    msg, hint = "", f"use {_STORE_EXAMPLES}"
    if scheme not in STORE_SCHEMES:
        close = difflib.get_close_matches(scheme, STORE_SCHEMES, n=1, cutoff=0.5)
        shown = url.split("@")[-1] if "@" in url else url  # never a password
        msg = (f"store URL {shown!r} has no scheme" if not scheme else
               f"unknown store URL scheme {scheme!r}; itam-sync stores data in {', '.join(STORE_SCHEMES)}")
        if close:
            hint = f"did you mean {close[0]!r}? {hint}"
    elif scheme == "sqlite" and url not in ("sqlite://", "sqlite:///:memory:") and not url.startswith("sqlite:///"):
        msg = f"SQLite URL {url!r} needs three slashes before a relative path (four for an absolute one)"
        hint = "write sqlite:///itam.db or sqlite:////var/lib/itam/itam.db"
    if not msg:
        return []
    if where:
        return [f"{where}: {msg} (fix: {hint})"]
    return [format_problem(file, lines, ("store", "url"), msg, hint)]


def _secret_problems(lines: Lines, file: str, where: tuple[Any, ...], name: str,
                     settings: dict[str, Any]) -> list[str]:
    problems = []
    for path, value in _strings(settings, ()):
        loc = (*where, "settings", *path)
        m = _SHELL_REF.search(value)
        if m:
            var = m.group(1) or m.group(2)
            problems.append(format_problem(file, lines, loc, f"{m.group(0)} is a shell-style reference, which "
                                           "itam-sync does not expand (it would be sent as is)",
                                           f"write ${{env:{var}}} (or ${{file:/run/secrets/...}})"))
            continue
        key = next((p for p in reversed(path) if isinstance(p, str)), "")
        if is_secret_setting(key) and value.strip() and not SECRET_REF.search(value):
            var = re.sub(r"[^A-Z0-9]+", "_", f"{name}_{key}".upper()).strip("_")
            problems.append(format_problem(file, lines, loc, f"{key} holds a literal secret; config files end up "
                                           "in version control and backups, so secrets must be references",
                                           f"export {var}=... and write ${{env:{var}}}, or "
                                           f"${{file:/run/secrets/{name}_{key}}}"))
    return problems


def _placeholder_problems(lines: Lines, file: str, where: tuple[Any, ...],
                          settings: dict[str, Any]) -> list[str]:
    problems = []
    for path, value in _strings(settings, ()):
        if any(p in value for p in PLACEHOLDER_IDS):
            key = ".".join(map(str, path))
            problems.append(format_problem(file, lines, (*where, "settings", *path),
                                           f"{value!r} is the placeholder `itam-sync init` wrote",
                                           f"put your real {key} here (or set enabled: false until you have it)"))
    return problems


def _strings(value: Any, path: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in _strings(v, (*path, k))]
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in _strings(v, (*path, i))]
    return []


def secret_warnings(s: Settings, lines: Lines, file: str) -> list[str]:
    """One line naming every secret reference that cannot be resolved here, of enabled connectors and sinks
    and the reminder delivery; [] when all resolve. Disabled blocks are not run, so they are not mentioned."""
    refs: list[tuple[tuple[Any, ...], str, str, str]] = []  # (location, whose, kind, reference)
    for i, c in enumerate(s.connectors):
        if c.enabled:
            refs += [(("connectors", i, "settings", *p), c.name, k, r) for p, k, r in _secret_refs_at(c.settings, ())]
    for i, sink in enumerate(s.sinks):
        if sink.enabled:
            refs += [(("sinks", i, "settings", *p), sink.name, k, r)
                     for p, k, r in _secret_refs_at(sink.settings, ())]
    delivery = s.reminders.delivery
    if s.reminders.rules:
        refs += [(("reminders", "delivery", "slack_webhook"), "reminders", k, r)
                 for _, k, r in _secret_refs_at(delivery.slack_webhook, ())]
        if delivery.smtp:
            refs += [(("reminders", "delivery", "smtp", "password"), "reminders", k, r)
                     for _, k, r in _secret_refs_at(delivery.smtp.password, ())]
    missing: dict[str, list[str]] = {}
    for loc, whose, kind, ref in refs:
        if (kind == "env" and ref in os.environ) or (kind == "file" and Path(ref).exists()):
            continue
        label = f"${ref}" if kind == "env" else f"file {ref}"
        line = lines.get(loc)
        missing.setdefault(label, []).append(f"{whose}{f' line {line}' if line else ''}")
    if not missing:
        return []
    names = "; ".join(f"{label} ({', '.join(at)})" for label, at in missing.items())
    what = "secret is" if len(missing) == 1 else f"{len(missing)} secrets are"
    return [f"{file}: {what} not available here, needed when the connectors run: {names} "
            "(fix: export the variables / create the files before `itam-sync run`)"]
