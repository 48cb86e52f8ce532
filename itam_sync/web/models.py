"""The shapes the REST API returns (and the HTML pages render): pydantic models, so /openapi.json says
exactly what each endpoint gives back."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SourceRef(BaseModel):
    """A source record feeding a golden record."""

    connector: str
    stream: str
    source_key: str
    missing: bool = Field(description="The source no longer reports it (soft-deleted).")


class EntitySummary(BaseModel):
    """A golden record in a list: every field's value and the source that won it."""

    id: int
    type: str = Field(description="asset, person or subscription")
    status: str = Field(description="active, or missing when no live source reports it")
    fields: dict[str, Any] = Field(description="Golden value per canonical field.")
    field_sources: dict[str, str] = Field(description="Winning source per field.")
    observed_at: dict[str, str | None] = Field(description="When the winning source observed each value.")
    sources: list[SourceRef]
    in_conflict: bool = Field(description="On either side of an open identity conflict.")


class EntityPage(BaseModel):
    """One page of a list. Pass `next_after` as `after` for the next page, `prev_before` as `before` for the
    previous one (keyset pagination by id: every page is as fast as the first)."""

    items: list[EntitySummary]
    limit: int
    next_after: int | None = None
    prev_before: int | None = None
    total: int | None = Field(None, description="Matching records; a lower bound when total_is_lower_bound.")
    total_is_lower_bound: bool = False


class Competitor(BaseModel):
    """A value that lost, and why."""

    source: str
    value: Any
    observed_at: str | None
    age: str
    why_lost: str


class FieldOut(BaseModel):
    """One golden field: value, winning source, age, the rule that decided, and who lost and why."""

    field: str
    description: str = ""
    value: Any
    source: str
    observed_at: str | None
    age: str
    rule: str
    rule_detail: str
    competitors: list[Competitor]
    link: str | None = Field(None, description="Page of the entity this value refers to (e.g. the person).")
    override: dict[str, Any] | None = Field(
        None, description="For a `manual` value: the operator override behind it (value, reason, actor, "
                          "created_at, expires_at).")


class RecordOut(BaseModel):
    """A source record as stored: mapped fields, the raw record, match keys, when it was seen."""

    id: int
    connector: str
    stream: str
    source_key: str
    observed_at: str | None
    missing: bool
    missing_since: str | None
    first_seen_run: int | None
    last_seen_run: int | None
    fields: dict[str, Any] | None
    raw: Any
    match_keys: list[str] | None


class LogRow(BaseModel):
    """One merge-log row: a changed golden field, an identity link, merge, split, conflict or missing mark."""

    id: int
    run_id: int | None
    at: str
    entity_type: str
    entity_id: int
    action: str
    field: str | None
    old: Any
    new: Any
    source: str | None
    rule: str | None
    actor: str | None


class LogPage(BaseModel):
    """Merge-log rows, newest first; pass `next_before` as `before` for older rows."""

    items: list[LogRow]
    limit: int
    next_before: int | None = None


class ConflictOut(BaseModel):
    """A refused identity link: a record whose key points at an entity that contradicts it."""

    id: int
    run_id: int | None
    entity_type: str
    key: str
    record_id: int
    record: str | None = Field(description="connector/stream/source_key of the record")
    entity_id: int | None = Field(description="The entity the record was linked to instead.")
    other_entity_id: int = Field(description="The entity the key pointed at.")
    reason: str
    status: str
    created_at: str | None


class ConflictPage(BaseModel):
    items: list[ConflictOut]
    limit: int
    next_after: int | None = None


class EntityDetail(BaseModel):
    """A golden record explained: every field with its source, age and competing values, the source records
    that feed it, its open conflicts and the newest page of its merge history."""

    id: int
    type: str
    status: str
    merged_into: int | None
    created_at: str | None
    updated_at: str | None
    fields: list[FieldOut]
    records: list[RecordOut]
    conflicts: list[ConflictOut]
    history: LogPage
    assets_held: list[EntitySummary] = Field(default_factory=list,
                                             description="People only: assets assigned to them.")


class RunOut(BaseModel):
    """One sync run of one connector (or a merge)."""

    id: int
    connector: str
    type: str
    mode: str
    status: str
    started_at: str
    finished_at: str | None
    duration_s: float | None
    counts: dict[str, Any]
    error: str | None
    host: str | None


class RunPage(BaseModel):
    """Runs, newest first; pass `next_before` as `before` for older runs."""

    items: list[RunOut]
    limit: int
    next_before: int | None = None


class Overview(BaseModel):
    """Headline numbers of the store."""

    assets: int
    assets_missing: int
    people: int
    people_missing: int
    subscriptions: int
    subscriptions_missing: int
    open_conflicts: int
    quarantined: int
    merge_log_rows: int
    latest_runs: list[RunOut]


class ReportOut(BaseModel):
    """A report: its columns and rows (and headline numbers where the report has them)."""

    name: str
    title: str
    description: str = ""
    columns: list[str]
    rows: list[dict[str, Any]]
    summary: dict[str, Any] = Field(default_factory=dict)


class ReportInfo(BaseModel):
    name: str
    title: str
    description: str = ""
    url: str


class AsOfFieldOut(BaseModel):
    """A golden field as the merge log says it stood then: value, the source and rule that set it, and when."""

    field: str
    value: Any
    source: str | None
    rule: str | None
    logged_at: str
    run_id: int | None
    log_id: int
    actor: str | None = None


class AsOfDetail(BaseModel):
    """A golden record as it stood at `as_of`, rebuilt from the merge log alone (time travel)."""

    id: int
    type: str
    as_of: str
    status: str
    merged_into: dict[str, Any] | None
    merged_from: list[dict[str, Any]]
    merged_later: list[dict[str, Any]]
    records: list[str]
    fields: list[AsOfFieldOut]
    history: list[LogRow]
    note: str


class VerifyOut(BaseModel):
    """The merge log's hash chain, walked: whether it holds and, if not, the first row that breaks it."""

    ok: bool
    checked: int = Field(description="Chained rows whose hashes were recomputed.")
    legacy: int = Field(description="Leading rows written before the chain existed (no hash).")
    first_id: int | None
    head_id: int | None = Field(description="The last row walked.")
    head_hash: str | None
    anchor: str | None = Field(None, description="The ID:HASH anchor checked on the way, if one was given.")
    broken_row: int | None = None
    break_kind: str | None = Field(None, description="altered | deleted | inserted | foreign | order | anchor")
    message: str | None = None
    seconds: float


class Problem(BaseModel):
    """An error: what went wrong, in one line."""

    detail: str
