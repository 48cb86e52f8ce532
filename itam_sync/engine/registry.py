"""Connector type name -> class, from the `itam_sync.connectors` entry-point group.

Built-in connectors register exactly the way a third-party package would (pyproject entry points), and
classes are imported only when a connector of that type is used.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

from itam_sync.sdk.connector import Connector

log = logging.getLogger(__name__)
GROUP = "itam_sync.connectors"


class UnknownConnectorType(LookupError):
    """No installed connector registers this type name."""


class Registry:
    """The installed connector types; `extra` adds classes directly (tests, embedded use)."""

    def __init__(self, extra: dict[str, type[Connector]] | None = None) -> None:
        self._eps: dict[str, EntryPoint] = {ep.name: ep for ep in entry_points(group=GROUP)}
        self._loaded: dict[str, type[Connector]] = dict(extra or {})

    def names(self) -> list[str]:
        return sorted(set(self._eps) | set(self._loaded))

    def get(self, type_name: str) -> type[Connector]:
        if type_name in self._loaded:
            return self._loaded[type_name]
        ep = self._eps.get(type_name)
        if ep is None:
            raise UnknownConnectorType(
                f"unknown connector type {type_name!r}; known types: {', '.join(self.names())}")
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise UnknownConnectorType(f"entry point {type_name!r} ({ep.value}) is not a Connector class")
        self._loaded[type_name] = cls
        return cls
