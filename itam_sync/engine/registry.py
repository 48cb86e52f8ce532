"""Connector type name -> class, from the `itam_sync.connectors` entry-point group.

Built-in connectors register exactly the way a third-party package would (pyproject entry points), and
classes are imported only when a connector of that type is used. A connector whose optional dependencies
are not installed stays listed; using it raises `ConnectorUnavailable`, whose one-line message names the
extra to install (`needs `pip install itam-sync[aws]``), never an ImportError traceback.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

from itam_sync.sdk.connector import Connector
from itam_sync.sdk.extras import extra_for_error, install_hint

log = logging.getLogger(__name__)
GROUP = "itam_sync.connectors"


class UnknownConnectorType(LookupError):
    """No installed connector registers this type name."""


class ConnectorUnavailable(UnknownConnectorType):
    """The type is installed but cannot be imported here, usually because its extra is not installed."""

    def __init__(self, type_name: str, reason: str, extra: str | None = None) -> None:
        super().__init__(f"connector type {type_name!r} {reason}")
        self.type_name, self.reason, self.extra = type_name, reason, extra


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
        try:
            cls = ep.load()
        except ImportError as exc:
            extra = extra_for_error(exc, type_name)
            if extra is not None:
                raise ConnectorUnavailable(type_name, install_hint(extra), extra) from None
            raise ConnectorUnavailable(type_name, f"cannot be imported ({type(exc).__name__}: {exc}; fix: install "
                                                  f"what {ep.value.split(':')[0]} needs)") from None
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise UnknownConnectorType(f"entry point {type_name!r} ({ep.value}) is not a Connector class")
        self._loaded[type_name] = cls
        return cls

    def describe(self, type_name: str) -> str:
        """One line for `itam-sync connectors`: the description, or what the type needs to be usable here."""
        try:
            return self.get(type_name).description
        except ConnectorUnavailable as exc:
            return exc.reason if exc.extra else f"(cannot load: {exc.reason})"
