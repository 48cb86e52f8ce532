"""YAML config -> validated settings.

Problems are reported with the file, line and key that caused them and a hint on how to fix them.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from itam_sync.model.canonical import FIELDS, EntityType
from itam_sync.settings.checks import config_problems, secret_warnings
from itam_sync.settings.models import DATABASE_URL_ENV, ConfigError, Settings
from itam_sync.settings.paths import resolve_store_url
from itam_sync.settings.problems import format_problem, line_of  # noqa: F401 - line_of: re-exported here


@dataclass
class LoadedConfig:
    settings: Settings
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Secret references of enabled connectors/sinks that cannot be resolved here, in one line: shown by the
    # commands that use them (validate, run, check, serve, push), not by read-only ones.
    secret_warnings: list[str] = field(default_factory=list)


def _node_lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    # setdefault: a key's own line wins over its value's (a block value starts on the next line).
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[path + (key,)] = k.start_mark.line + 1
            _node_lines(v, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _node_lines(v, path + (i,), out)


def _hint(msg: str, loc: tuple[Any, ...]) -> str:
    if "Extra inputs are not permitted" in msg:
        known = _known_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1) if loc else []
        if close:
            return f"did you mean {close[0]!r}?"
        return f"remove it; known keys here: {', '.join(known)}" if known else "remove it or check its spelling"
    if "Field required" in msg:
        return "add it"
    if "should match pattern" in msg and loc and loc[-1] == "name":
        return "use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, e.g. hr-export"
    return ""


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the config model allows where `loc` points (for "did you mean" hints)."""
    model: Any = Settings
    skip_key = False
    for part in loc[:-1]:
        if skip_key or isinstance(part, int):  # a list index, or a free-form key (a field name under fields:)
            skip_key = False
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        model, skip_key = _model_in(info.annotation)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _model_in(annotation: Any) -> tuple[Any, bool]:
    """(the pydantic model inside `annotation`, whether a dict key comes before it in a location)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = get_args(annotation)
    if get_origin(annotation) is dict and len(args) == 2:
        return _model_in(args[1])[0], True
    for arg in args:  # list[X], X | None
        found, keyed = _model_in(arg)
        if found is not None:
            return found, keyed
    return None, False


def load_settings(path: str | Path) -> LoadedConfig:
    """Read and validate a config file; raise ConfigError naming every problem with file and line."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read config: {exc.strerror}"]) from exc
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark else file
        # Where the unclosed bracket or block began is often more useful than where the parser gave up.
        context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        began = f" ({context} that began on line {cmark.line + 1})" if context and cmark else ""
        raise ConfigError([f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}{began}"]) from exc
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _node_lines(node, (), lines)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{file}:1: the config must be a mapping of sections (store, connectors, ...)"])
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown key {str(loc[-1])!r}"
            problems.append(format_problem(file, lines, loc, msg, _hint(err["msg"], loc)))
        raise ConfigError(problems) from None
    settings.source_path = file
    # The environment wins over the file: a deployment points the same config at its own database, and a
    # PostgreSQL password stays out of the file (README "Running as a service").
    if env_url := os.environ.get(DATABASE_URL_ENV, "").strip():
        settings.store.url = env_url
    else:  # sqlite:///itam.db is the file next to the config, from whichever folder the command runs
        settings.store.url = resolve_store_url(settings.store.url, settings.base_dir())
    loaded = LoadedConfig(settings=settings, lines=lines)
    problems = _semantic_problems(loaded, file)
    if problems:
        raise ConfigError(problems)
    return loaded


def _semantic_problems(loaded: LoadedConfig, file: str) -> list[str]:
    s, lines = loaded.settings, loaded.lines
    problems: list[str] = []
    seen: set[str] = set()
    for i, c in enumerate(s.connectors):
        if c.name in seen:
            problems.append(format_problem(file, lines, ("connectors", i, "name"),
                                           f"duplicate connector name {c.name!r}", "give each instance its own name"))
        seen.add(c.name)
    sources = seen | {"manual"} | {c.type for c in s.connectors}
    for ent in EntityType:
        prec = s.precedence.for_entity(ent)
        for fname in prec.fields:
            if fname not in FIELDS[ent]:
                close = difflib.get_close_matches(fname, FIELDS[ent], n=3)
                hint = f"did you mean {', '.join(close)}?" if close else f"known fields: {', '.join(FIELDS[ent])}"
                problems.append(format_problem(file, lines, ("precedence", ent.value, "fields", fname),
                                               f"unknown {ent.value} field {fname!r}", hint))
    for loc, order in precedence_orders(s):
        for src in order:
            if src not in sources:
                loaded.warnings.append(format_problem(file, lines, loc,
                                                      f"source {src!r} is not a configured connector name or type"))
        # A source listed twice ranks both above and below the ones between: the order contradicts itself.
        for src in sorted({x for x in order if order.count(x) > 1}):
            at = [str(n + 1) for n, x in enumerate(order) if x == src]
            problems.append(format_problem(file, lines, loc, f"circular precedence: source {src!r} is listed "
                                           f"{len(at)} times (positions {', '.join(at)})", "list each source once"))
    loaded.secret_warnings = secret_warnings(s, lines, file)
    problems += config_problems(s, lines, file)
    problems += _publishing_problems(loaded, file)
    return problems


def _publishing_problems(loaded: LoadedConfig, file: str) -> list[str]:
    """Sinks and reminders: unique names, a delivery for the rules, the keys each rule type needs."""
    s, lines = loaded.settings, loaded.lines
    problems: list[str] = []
    seen: set[str] = set()
    for i, c in enumerate(s.sinks):
        if c.name in seen:
            problems.append(format_problem(file, lines, ("sinks", i, "name"), f"duplicate sink name {c.name!r}",
                                           "give each sink its own name"))
        seen.add(c.name)
        if c.name in {conn.name for conn in s.connectors}:
            # Runs are recorded by name: a sink's pushes and a connector's syncs must not be confused.
            problems.append(format_problem(file, lines, ("sinks", i, "name"),
                                           f"sink name {c.name!r} is also a connector name",
                                           "give the sink its own name, e.g. " + f"{c.name}-out"))
    rem = s.reminders
    if rem.rules and rem.delivery.smtp is None and rem.delivery.slack_webhook is None:
        problems.append(format_problem(file, lines, ("reminders", "delivery"),
                                       "reminder rules are configured but no delivery",
                                       "add reminders.delivery.smtp or reminders.delivery.slack_webhook"))
    needs_days = {"warranty_ending", "terminated_not_recovered", "device_unseen"}
    rule_names: set[str] = set()
    for i, r in enumerate(rem.rules):
        if r.name in rule_names:
            problems.append(format_problem(file, lines, ("reminders", "rules", i, "name"),
                                           f"duplicate reminder rule name {r.name!r}", "give each rule its own name"))
        rule_names.add(r.name)
        if r.type in needs_days and r.days is None:
            problems.append(format_problem(file, lines, ("reminders", "rules", i),
                                           f"rule {r.name!r} ({r.type}) needs `days`", "add e.g. days: 30"))
    return problems


def precedence_orders(s: Settings) -> list[tuple[tuple[Any, ...], list[str]]]:
    """Every source order in the precedence section, with its location in the config."""
    out: list[tuple[tuple[Any, ...], list[str]]] = [(("precedence", "default"), s.precedence.default)]
    for ent in EntityType:
        prec = s.precedence.for_entity(ent)
        if prec.default:
            out.append((("precedence", ent.value, "default"), prec.default))
        out += [(("precedence", ent.value, "fields", f, "order"), r.order) for f, r in prec.fields.items() if r.order]
    return out
