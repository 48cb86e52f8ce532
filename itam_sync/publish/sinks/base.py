"""What sinks are made of: the Sink base classes, the settings base, and the values passed to and from them.

A sink is a named instance of a sink type (two Snipe-IT servers are two sinks of type `snipeit`), exactly as
connectors are. The engine owns the change feed and the saved position; a sink only turns a batch into calls:

- a `RecordSink` receives the current golden records of the entities that changed since its last successful
  push (ServiceNow CMDB, Snipe-IT) and creates or updates them on the far side, never deleting anything;
- an `EventSink` receives change events in merge-log order (the webhook).

Each implements `push_*` (send) and `plan_*` (the calls a dry run would make, without any network traffic).
HTTP goes through the SDK's `HttpClient`, so retries, 429/5xx handling and redaction are the connectors'.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from itam_sync.publish.events import ChangeEvent
from itam_sync.sdk.connector import ConnectorError

log = logging.getLogger(__name__)


class SinkError(ConnectorError):
    """A push cannot go on (bad settings, credentials refused, far side down after retries)."""


class SinkSettings(BaseModel):
    """Base of a sink type's settings model; unknown keys are errors so typos surface."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(default=100, ge=1, le=10_000, description="records or events per request")


class EventSinkSettings(SinkSettings):
    """Base of an event sink's settings: where a sink with no saved position starts."""

    start: Literal["beginning", "end"] = Field(
        default="beginning", description="first push: the whole merge log (beginning) or only what comes next (end)")


@dataclass(frozen=True)
class GoldenRecord:
    """The current golden record of one entity: its values and, per field, the winning source."""

    entity_id: int
    entity_type: str
    status: str
    values: dict[str, Any]
    sources: dict[str, str]

    @classmethod
    def from_golden(cls, entity_id: int, entity_type: str, golden: dict[str, Any], status: str) -> GoldenRecord:
        """From the stored form {field: [value, source, observed_at]}."""
        return cls(entity_id, entity_type, status, {f: v[0] for f, v in golden.items()},
                   {f: v[1] for f, v in golden.items()})

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value in (None, "", []) else value

    def label(self) -> str:
        """How to name it in messages: serial, host name or e-mail, else the entity id."""
        for f in ("serial_number", "hostname", "email", "product"):
            if self.get(f):
                return str(self.get(f))
        return f"{self.entity_type} {self.entity_id}"


@dataclass(frozen=True)
class PlannedCall:
    """One call a push would make: shown by a dry run (`body` is the JSON it would send, if any)."""

    method: str
    url: str
    summary: str = ""
    body: Any = None


@dataclass
class PushOutcome:
    """What a batch did on the far side. `failed` entities are retried by the next push; `skipped` ones cannot
    be pushed as they are (no serial, a kind the sink does not take) and wait for a change."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    sent: int = 0  # events delivered (event sinks)
    calls: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)

    def add(self, other: PushOutcome) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.sent += other.sent
        self.calls += other.calls
        self.skipped += other.skipped
        self.failed += other.failed

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged, "sent": self.sent,
                "calls": self.calls, "skipped": len(self.skipped), "failed": len(self.failed)}


class Sink(ABC):
    """Base class of every sink type. Subclasses set `type_name`, `settings_model` and derive from
    `RecordSink` or `EventSink`."""

    type_name: ClassVar[str]
    description: ClassVar[str] = ""
    settings_model: ClassVar[type[SinkSettings]] = SinkSettings
    # Commented example settings written to the README / starter configs (values may be ${env:...} refs).
    example_settings: ClassVar[dict[str, Any]] = {}

    def __init__(self, name: str, settings: SinkSettings) -> None:
        self.name = name
        self.settings = settings

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately a no-op by default
        """Release sessions; called by the engine after every push."""


class RecordSink(Sink):
    """A sink that receives current golden records of changed entities (create or update, never delete)."""

    # Entity types this sink publishes; changes to other types are not read for it.
    entity_types: ClassVar[tuple[str, ...]] = ("asset",)

    def accepts(self, record: GoldenRecord) -> str | None:
        """None when the record can be pushed, else why not (reported as skipped). Default: all."""
        return None

    @abstractmethod
    def push_records(self, records: Sequence[GoldenRecord]) -> PushOutcome:
        """Create or update these records on the far side; count what happened per record."""

    @abstractmethod
    def plan_records(self, records: Sequence[GoldenRecord]) -> list[PlannedCall]:
        """The calls `push_records` would make, without touching the network."""


class EventSink(Sink):
    """A sink that receives change events in merge-log order."""

    def accepts_event(self, event: ChangeEvent) -> bool:
        """Whether this sink publishes this event (filters); skipped events still advance the position."""
        return True

    @abstractmethod
    def push_events(self, events: Sequence[ChangeEvent]) -> PushOutcome:
        """Deliver these events (one batch); raise on failure so the position does not move past them."""

    @abstractmethod
    def plan_events(self, events: Sequence[ChangeEvent]) -> list[PlannedCall]:
        """The calls `push_events` would make, without touching the network."""
