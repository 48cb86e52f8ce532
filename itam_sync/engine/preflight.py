"""Check a whole config before anything syncs: what `validate` reports, `run` and `serve` refuse to start on.

Without it, a config whose fifth connector had an unknown type, an unknown canonical field or a JMESPath
syntax error let the first four sync in full before the error, and the error named no file or line.
`preflight` checks every configured connector (its type is installed, its settings fit the type's settings
model, its mapping file exists and loads) and the precedence sources, and returns every problem as one line
with file, line, key and a fix. (Sinks are checked by the publishing layer's `sink_config_problems`, which
the commands call beside this.)
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

from pydantic import ValidationError

from itam_sync.engine.registry import ConnectorUnavailable, Registry, UnknownConnectorType
from itam_sync.mapping.loader import MappingLoadError, load_mapping
from itam_sync.settings import ConfigError, Settings, load_settings, precedence_orders, resolve_secrets

log = logging.getLogger(__name__)
Lines = dict[tuple[Any, ...], int]


def preflight(settings: Settings, registry: Registry | None = None, *, config_path: str | None = None,
              lines: Lines | None = None) -> list[str]:
    """Every problem of the config's connectors, mappings and precedence sources, one line each with
    `config_path:line`. Without `lines` they are read again from `settings.source_path` when it is set."""
    registry = registry or Registry()
    path = config_path or settings.source_path or "config"
    if lines is None:
        lines = _lines_of(settings)
    problems: list[str] = []
    for i, c in enumerate(settings.connectors):
        where = f"{path}:{lines.get(('connectors', i, 'type'), '?')}"
        try:
            cls = registry.get(c.type)
        except UnknownConnectorType as exc:
            close = ([] if isinstance(exc, ConnectorUnavailable)  # installed, its extra is not: no "did you mean"
                     else difflib.get_close_matches(c.type, registry.names(), n=1))
            problems.append(f"{where}: connectors.{i}.type: {exc}" + (f" (fix: did you mean {close[0]!r}?)"
                                                                     if close else ""))
            continue
        problems += _settings_problems(path, lines, settings, i, cls)
        mpath = settings.mapping_path(c, cls.mapping_name())
        if not mpath.exists():
            key = ("connectors", i, "mapping") if c.mapping else ("connectors", i, "type")
            problems.append(f"{path}:{lines.get(key, '?')}: {'.'.join(map(str, key))}: mapping file {mpath} not "
                            "found (fix: create it, or set `mapping:` to an existing file)")
            continue
        try:
            load_mapping(mpath)
        except MappingLoadError as exc:
            problems.extend(exc.problems or [str(exc)])
        except OSError as exc:
            problems.append(f"{mpath}: cannot read the mapping of connector {c.name!r}: {exc}")
    problems += _precedence_problems(path, lines, settings, registry)
    return problems


def check(settings: Settings, registry: Registry | None = None, *, config_path: str | None = None,
          lines: Lines | None = None, extra: list[str] | None = None) -> None:
    """Raise `ConfigError` with every `preflight` problem (and `extra` ones) before anything runs."""
    problems = preflight(settings, registry, config_path=config_path, lines=lines) + list(extra or [])
    if problems:
        raise ConfigError(problems)


def _lines_of(settings: Settings) -> Lines:
    if not settings.source_path:
        return {}
    try:
        return load_settings(settings.source_path).lines
    except (ConfigError, OSError):  # changed since it was loaded: messages say "?" for the line
        log.debug("could not re-read %s for line numbers", settings.source_path, exc_info=True)
        return {}


def _settings_problems(path: str, lines: Lines, settings: Settings, i: int, cls: Any) -> list[str]:
    """Problems of one connector's `settings`, validated as they will be at run time: references whose
    variable or file exists are resolved first (a `${env:URL}/api` must pass a URL check); a key whose
    reference cannot be resolved here is not judged (the warning about the reference says enough)."""
    conn = settings.connectors[i]
    checked: dict[str, Any] = {}
    unresolved: set[str] = set()
    secrets: list[str] = []
    for key, value in conn.settings.items():
        try:
            checked[key] = resolve_secrets(value, key)
        except ConfigError:
            checked[key], unresolved = value, unresolved | {key}
            continue
        if checked[key] != value and isinstance(checked[key], str) and len(checked[key]) >= 6:
            secrets.append(checked[key])  # (masking shorter values would garble the message, not protect)
    try:
        cls.settings_model.model_validate(checked)
    except ValidationError as exc:
        out = []
        known = list(cls.settings_model.model_fields)
        for e in exc.errors():
            if e["loc"] and e["loc"][0] in unresolved:
                continue
            loc = ("connectors", i, "settings", *e["loc"])
            line = lines.get(loc) or lines.get(("connectors", i, "settings")) or "?"
            msg = str(e["msg"]).removeprefix("Value error, ")
            fix = f"see `itam-sync init` for the {conn.type} settings"
            if e["type"] == "extra_forbidden":
                msg = f"unknown {conn.type} setting {str(loc[-1])!r}"
                close = difflib.get_close_matches(str(loc[-1]), known, n=1)
                fix = f"did you mean {close[0]!r}?" if close else f"known settings: {', '.join(known)}"
            for secret in secrets:  # a validator may quote the value it refused: never a resolved secret
                msg = msg.replace(secret, "***")
            out.append(f"{path}:{line}: {'.'.join(map(str, loc))}: {msg} (fix: {fix})")
        return out
    return []


def _precedence_problems(path: str, lines: Lines, s: Settings, registry: Registry) -> list[str]:
    """Precedence sources that name nothing at all (no configured connector, no installed connector type):
    a typo that would silently change which source wins. (Installed types that are not configured yet are
    fine: a config may rank sources it adds later.)"""
    known = {c.name for c in s.connectors} | {c.type for c in s.connectors} | {"manual"} | set(registry.names())
    problems = []
    for loc, order in precedence_orders(s):
        for src in order:
            if src not in known:
                close = difflib.get_close_matches(src, sorted(known), n=1)
                problems.append(f"{path}:{lines.get(loc, '?')}: {'.'.join(map(str, loc))}: source {src!r} is not a "
                                "configured connector name or type"
                                + (f" (fix: did you mean {close[0]!r}?)" if close else
                                   " (fix: use a connector instance name, a connector type or `manual`)"))
    return problems


__all__ = ["check", "preflight"]
