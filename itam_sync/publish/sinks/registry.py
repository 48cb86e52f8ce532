"""Sink type name -> class, from the `itam_sync.sinks` entry-point group.

Built-in sinks (connectors/sinks/) register exactly the way a third-party package would, and classes are
imported only when a sink of that type is used.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

from pydantic import ValidationError

from itam_sync.publish.sinks.base import Sink
from itam_sync.settings import ConfigError, LoadedConfig

log = logging.getLogger(__name__)
GROUP = "itam_sync.sinks"


class UnknownSinkType(ConfigError):
    """No installed sink registers this type name; the message lists the known ones."""

    def __init__(self, message: str) -> None:
        super().__init__([message])


class SinkRegistry:
    """The installed sink types; `extra` adds classes directly (tests, embedded use)."""

    def __init__(self, extra: dict[str, type[Sink]] | None = None) -> None:
        self._eps: dict[str, EntryPoint] = {ep.name: ep for ep in entry_points(group=GROUP)}
        self._loaded: dict[str, type[Sink]] = dict(extra or {})

    def names(self) -> list[str]:
        return sorted(set(self._eps) | set(self._loaded))

    def get(self, type_name: str) -> type[Sink]:
        if type_name in self._loaded:
            return self._loaded[type_name]
        ep = self._eps.get(type_name)
        if ep is None:
            raise UnknownSinkType(f"unknown sink type {type_name!r}; known types: {', '.join(self.names()) or 'none'}")
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Sink)):
            raise UnknownSinkType(f"entry point {type_name!r} ({ep.value}) is not a Sink class")
        self._loaded[type_name] = cls
        return cls


def sink_config_problems(config_path: str, loaded: LoadedConfig, registry: SinkRegistry | None = None) -> list[str]:
    """`itam-sync validate` for the `sinks:` section: every sink's type is installed (else the known types are
    listed) and its settings fit the type's settings model; one line per problem with file, line and key."""
    registry = registry or SinkRegistry()
    problems: list[str] = []
    for i, c in enumerate(loaded.settings.sinks):
        where = f"{config_path}:{loaded.lines.get(('sinks', i, 'type'), '?')}"
        try:
            cls = registry.get(c.type)
        except UnknownSinkType as exc:
            problems.append(f"{where}: sinks.{i}.type: {exc.problems[0]}")
            continue
        try:
            cls.settings_model.model_validate(c.settings)
        except ValidationError as exc:
            for e in exc.errors():
                loc = ("sinks", i, "settings", *e["loc"])
                line = loaded.lines.get(loc) or loaded.lines.get(("sinks", i, "settings")) or "?"
                msg = e["msg"].removeprefix("Value error, ")
                problems.append(f"{config_path}:{line}: {'.'.join(map(str, loc))}: {msg} "
                                f"(fix: see connectors/sinks/{c.type}/README.md for the {c.type} settings)")
    return problems
