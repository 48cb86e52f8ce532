"""What a mapping produces from one raw source record: the engine's unit of work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from itam_sync.model.canonical import EntityType


@dataclass(slots=True)
class Observation:
    """One source record, mapped to canonical fields.

    `fields` holds only canonical field names with normalised values (None/empty means "the source says
    nothing"). `observed_at` is an ISO-8601 UTC string: when the source last saw this record.
    """

    entity: EntityType
    stream: str
    source_key: str
    fields: dict[str, Any]
    observed_at: str | None = None


@dataclass(slots=True)
class SourceValues:
    """One live source record's mapped fields."""

    source: str
    fields: dict[str, Any]
    observed_at: str | None
    record_id: int | None = None


@dataclass(slots=True)
class Override:
    """An operator's value for a field, with who and why."""

    field: str
    value: Any
    reason: str
    actor: str | None
    created_at: str
