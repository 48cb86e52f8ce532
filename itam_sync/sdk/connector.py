"""Connector and Stream base classes.

A connector is a named instance of a type (two Okta orgs are two connectors of type `okta`). It declares
its streams; each stream yields raw records (dicts) as a generator so memory stays flat. The engine owns the
cursor: it hands the saved cursor to the stream on incremental runs and saves the new one only when the
whole run commits.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from itam_sync.model.keys import KeyKind

log = logging.getLogger(__name__)


class ConnectorError(Exception):
    """A connector failed in a way the run cannot recover from (bad config, auth refused, source down)."""

    def __init__(self, message: str, *, kind: str = "system") -> None:
        super().__init__(message)
        self.kind = kind  # "config" (fix your settings) or "system" (try again later)


class ConnectorSettings(BaseModel):
    """Base for a connector type's settings model; unknown keys are errors so typos surface."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class StreamState:
    """Cursor state handed to a stream for one run.

    `cursor` is what the last successful run saved (None on a full run or the first run). A stream that
    manages its own cursor (a Graph delta link, say) sets `new_cursor`; otherwise the engine saves the
    largest value of the stream's `cursor_field` seen in this run.
    """

    cursor: Any = None
    full: bool = True
    new_cursor: Any = None
    # Set by the engine from the stream's mapping: groups of source paths (each a tuple of keys from the top
    # level) of which a record must be able to hold at least one: the source key and the match-key fields.
    # Sources with a header (CSV, XLSX) or a whole file to look at (JSONL) refuse a file that lacks a group,
    # with a `BadRecord(incomplete=True)`, instead of staging records that cannot be identified.
    required: list[tuple[str, tuple[tuple[str, ...], ...]]] = field(default_factory=list)


class Stream(ABC):
    """One kind of record a connector pulls (users, devices, ...)."""

    name: ClassVar[str]
    # Dotted path into the raw record whose largest value becomes the next cursor (e.g. "lastUpdated").
    cursor_field: ClassVar[str | None] = None
    # True when every record is a plain JSON value (what a JSON response or a JSONL/CSV line parses to): the
    # engine may then hand a worker the record's JSON text instead of the object (engine/mapwork.py). Leave
    # False where records carry other types (datetimes from an SDK, spreadsheet cells).
    json_records: ClassVar[bool] = False

    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    def position(self) -> str | None:
        """Where the record last yielded came from ("people.csv:17"), for quarantine messages. A stream that
        knows (a file reader) overrides this; the engine otherwise names the record by its number in the run."""
        return None

    @abstractmethod
    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        """Yield raw records (or a `BadRecord` for one that cannot be parsed: the engine quarantines it).
        On an incremental run `state.cursor` says where the last run stopped."""


class Connector(ABC):
    """Base class of every connector type. Subclasses set `type_name`, `settings_model` and `streams()`."""

    type_name: ClassVar[str]
    description: ClassVar[str] = ""
    settings_model: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    # Commented example settings written by `itam-sync init` (values may be ${env:...} references).
    example_settings: ClassVar[dict[str, Any]] = {}
    # Mapping file used when the config names none: mappings/<default_mapping>.yaml (defaults to type_name).
    default_mapping: ClassVar[str | None] = None
    # Match-key kinds this connector adds to identity resolution, each with its scope (itam_sync.model.keys):
    # e.g. (KeyKind("asset_tag", EntityType.ASSET, KeyScope.HARDWARE, ("asset_tag",)),).
    key_kinds: ClassVar[tuple[KeyKind, ...]] = ()

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        self.name = name
        self.settings = settings

    @abstractmethod
    def streams(self) -> list[Stream]:
        """The streams this connector pulls, in pull order."""

    def check(self) -> dict[str, int]:
        """Connect and read the first record of every stream; returns records seen per stream."""
        seen: dict[str, int] = {}
        for stream in self.streams():
            seen[stream.name] = 0
            for _ in stream.records(StreamState()):
                seen[stream.name] = 1
                break
        return seen

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately a no-op by default
        """Release sessions and files; called by the engine after every run."""

    @classmethod
    def mapping_name(cls) -> str:
        return cls.default_mapping or cls.type_name


@dataclass(slots=True)
class BadRecord:
    """Yielded by a stream in place of a record it could not parse; the engine quarantines it with `reason`.

    `incomplete=True` says the stream could not be read to its end, or a whole file was refused (truncated,
    not in its encoding, missing a required column): a full run then marks nothing of the stream missing
    (what could not be read is not gone) and ends `degraded` with `reason`. `position` says where the record
    is ("hr.csv:17"), when the stream knows.
    """

    reason: str
    raw: str = ""
    source_key: str | None = None
    incomplete: bool = False
    position: str | None = None
