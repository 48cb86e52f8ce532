"""The schema, as SQLAlchemy Core tables. Alembic migrations (store/migrations) create and move it.

JSON payloads are stored as TEXT written by the repository: it keeps one code path for SQLite and
PostgreSQL and lets the hot path hand pre-serialised strings straight to executemany.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

sync_runs = Table(
    "sync_runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("connector", String(100), nullable=False, index=True),
    Column("connector_type", String(100), nullable=False),
    Column("mode", String(20), nullable=False),  # full | incremental | merge | manual
    Column("status", String(20), nullable=False),  # running | success | degraded | guarded | failed | interrupted
    Column("started_at", String(32), nullable=False),
    Column("finished_at", String(32)),
    Column("duration_s", Float),
    Column("counts", Text, nullable=False, default="{}"),  # JSON: per stream seen/new/changed/...
    Column("error", Text),
    Column("pid", Integer),
    Column("host", String(255)),
)

connector_state = Table(
    "connector_state", metadata,
    Column("connector", String(100), primary_key=True),
    Column("stream", String(100), primary_key=True),
    Column("cursor", Text),  # JSON
    Column("run_id", Integer),
    Column("updated_at", String(32)),
)

source_records = Table(
    "source_records", metadata,
    Column("id", Integer, primary_key=True),
    Column("connector", String(100), nullable=False),
    Column("stream", String(100), nullable=False),
    Column("source_key", String(512), nullable=False),
    Column("entity_type", String(20), nullable=False),
    Column("entity_id", Integer, index=True),
    Column("content_hash", String(32), nullable=False),
    Column("raw", Text, nullable=False),  # the raw record, so a mapping change re-maps without an API call
    Column("fields", Text, nullable=False),  # JSON: canonical fields as mapped
    Column("match_keys", Text, nullable=False, default="[]"),  # JSON list of "kind:value"
    Column("observed_at", String(32)),
    # The non-empty mapped field names, comma-separated: a run counts fill rates of unchanged records from it.
    Column("filled", Text),
    Column("first_seen_run", Integer),
    Column("last_seen_run", Integer),
    Column("missing", Boolean, nullable=False, default=False),
    Column("missing_since", String(32)),
    UniqueConstraint("connector", "stream", "source_key", name="uq_source_record"),
)

entities = Table(
    "entities", metadata,
    Column("id", Integer, primary_key=True),
    Column("entity_type", String(20), nullable=False, index=True),
    Column("golden", Text, nullable=False, default="{}"),  # JSON: field -> [value, source, observed_at]
    Column("status", String(20), nullable=False, default="active"),  # active | missing | merged
    Column("merged_into", Integer),
    Column("created_run", Integer),
    Column("updated_run", Integer),
    Column("created_at", String(32)),
    Column("updated_at", String(32)),
)

# Which entities hold records with each match key (migration 0006: one row per key and entity, so a key
# shared by records of several entities -- an ambiguous dock MAC -- lists them all; identity resolution reads
# it to find every record a changed key touches).
entity_keys = Table(
    "entity_keys", metadata,
    Column("entity_type", String(20), primary_key=True),
    Column("key", String(600), primary_key=True),  # "serial_number:C02FK1ABQ6L4"
    Column("entity_id", Integer, primary_key=True, index=True),
)

conflicts = Table(
    "conflicts", metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer),
    Column("entity_type", String(20), nullable=False),
    Column("record_id", Integer, nullable=False),
    Column("key", String(600), nullable=False),
    Column("entity_id", Integer),  # the entity the record was linked to instead
    Column("other_entity_id", Integer, nullable=False),  # the entity the key pointed at
    Column("reason", Text, nullable=False),
    Column("status", String(20), nullable=False, default="open"),  # open | resolved
    Column("created_at", String(32)),
    UniqueConstraint("record_id", "key", "other_entity_id", name="uq_conflict"),
)

manual_links = Table(
    "manual_links", metadata,
    Column("id", Integer, primary_key=True),
    Column("record_id", Integer, nullable=False, unique=True),
    Column("entity_id", Integer, nullable=False),  # the record is pinned to this entity
    Column("action", String(10), nullable=False),  # link | unlink
    Column("reason", Text),
    Column("actor", String(255)),
    Column("created_at", String(32)),
)

overrides = Table(
    "overrides", metadata,
    Column("id", Integer, primary_key=True),
    Column("entity_id", Integer, nullable=False, index=True),
    Column("field", String(100), nullable=False),
    Column("value", Text, nullable=False),  # JSON
    Column("reason", Text, nullable=False),
    Column("actor", String(255)),
    Column("created_at", String(32), nullable=False),
    Column("expires_at", String(32)),
    Column("active", Boolean, nullable=False, default=True),
)

# One row per record that could not be read or mapped: (connector, stream, item), the item being its source key
# ("key:..."), else its place in a file ("at:hr.csv:17"), else a digest of its content ("raw:..."). A run that
# quarantines it again updates reason, raw, run and count; one that maps it again marks it resolved.
quarantine = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, index=True),  # the latest run that quarantined it
    Column("connector", String(100), nullable=False),
    Column("stream", String(100), nullable=False),
    Column("source_key", String(512)),
    Column("reason", Text, nullable=False),
    Column("raw", Text),
    Column("created_at", String(32)),  # first quarantined
    Column("item", String(600)),
    Column("position", String(600)),  # file:line, or "record N" of the stream in that run
    Column("count", Integer),  # times quarantined
    Column("status", String(10)),  # open | resolved
    Column("first_run_id", Integer),
    Column("last_seen_at", String(32)),
    Column("resolved_at", String(32)),
    Column("resolved_run_id", Integer),
    Index("uq_quarantine_item", "connector", "stream", "item", unique=True),
)

# Entities whose sources changed in a committed staging run but that are not merged yet. The merge step
# drains it in its own transaction, so a crash between staging and merging loses nothing.
dirty_entities = Table(
    "dirty_entities", metadata,
    Column("entity_id", Integer, primary_key=True),
    Column("run_id", Integer),
)

merge_log = Table(
    "merge_log", metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer),
    Column("at", String(32), nullable=False),
    Column("entity_type", String(20), nullable=False),
    Column("entity_id", Integer, nullable=False),
    Column("action", String(12), nullable=False),  # set | clear | link | merge | unlink | conflict | missing
    Column("field", String(100)),
    Column("old_value", Text),  # JSON
    Column("new_value", Text),  # JSON
    Column("source", String(100)),
    Column("rule", Text),
    Column("actor", String(255)),
    # Tamper evidence: sha256 over this row's content and the previous row's hash (a chain per database).
    Column("prev_hash", String(64)),
    Column("row_hash", String(64)),
)

# A connector runs on at most one worker at a time: the holder renews the lease; an expired lease is free.
leases = Table(
    "leases", metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("acquired_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False),
)

Index("ix_merge_log_entity", merge_log.c.entity_id, merge_log.c.id)
Index("ix_source_records_conn", source_records.c.connector, source_records.c.missing)
# Web lists (migration 0004): counts and filters by presence. Migration 0004 also adds partial expression
# indexes on golden fields (asset hostname, assigned_to, kind, lifecycle_state; person status), which are
# dialect-specific and so live only in the migration (see Repos._gx).
Index("ix_entities_type_status", entities.c.entity_type, entities.c.status)

# -- publishing: sinks and reminders (issue 8) ------------------------------------------------------------
# Per sink: the last merge-log id it pushed successfully (the change feed is the merge log) and the entities
# whose last push failed on the far side, retried on the next push.
sink_state = Table(
    "sink_state", metadata,
    Column("sink", String(100), primary_key=True),
    Column("last_log_id", Integer, nullable=False, default=0),
    Column("retry", Text, nullable=False, default="[]"),  # JSON list of entity ids
    Column("run_id", Integer),
    Column("updated_at", String(32)),
)

# Every reminder item ever queued: once per (rule, item, period) while the item stays true. `pending` rows
# are queued but not delivered yet (a failed delivery is retried by the next run); `resolved_at` closes an
# episode when the condition stops holding, so a later recurrence is reminded again.
reminder_history = Table(
    "reminder_history", metadata,
    Column("id", Integer, primary_key=True),
    Column("rule", String(100), nullable=False),
    Column("item_key", String(600), nullable=False),
    Column("period", String(100), nullable=False),
    Column("channel", String(20), nullable=False),  # smtp | slack: each channel gets each item once
    Column("entity_id", Integer),
    Column("summary", Text, nullable=False),
    Column("status", String(10), nullable=False),  # pending | sent
    Column("run_id", Integer),
    Column("created_at", String(32), nullable=False),
    Column("sent_at", String(32)),
    Column("resolved_at", String(32)),
)
Index("ix_reminder_history_item", reminder_history.c.rule, reminder_history.c.item_key)
Index("ix_reminder_history_status", reminder_history.c.status)


# The dashboard's trend (itam_sync/insight/dashboard.py): one snapshot of the KPI values per state of the store,
# keyed by the merge log's newest id at the time; the newest 90 are kept.
kpi_snapshots = Table(
    "kpi_snapshots", metadata,
    Column("log_id", BigInteger, primary_key=True, autoincrement=False),
    Column("at", String(32), nullable=False),
    Column("run_id", Integer),
    Column("kpis", Text, nullable=False),
)

# -- identity (issue 19): ambiguous identifiers, operator decisions on them, suggested matches ------------
# Values that join nothing because records that cannot be one thing hold them (or config/an operator says
# so): one row per value while it is ambiguous; the merge log keeps when it became and stopped being so.
ambiguous_identifiers = Table(
    "ambiguous_identifiers", metadata,
    Column("entity_type", String(20), primary_key=True),
    Column("key", String(600), primary_key=True),
    Column("origin", String(12), nullable=False),  # conflict | source | config | operator
    Column("reason", Text, nullable=False),
    Column("records", Integer, nullable=False, default=0),
    Column("entities", Integer, nullable=False, default=0),
    Column("since", String(32), nullable=False),
    Column("updated_at", String(32)),
    Column("run_id", Integer),
)

# `itam-sync identifiers block|allow VALUE --reason`: held across runs until changed.
identifier_decisions = Table(
    "identifier_decisions", metadata,
    Column("entity_type", String(20), primary_key=True),
    Column("key", String(600), primary_key=True),
    Column("action", String(10), nullable=False),  # block | allow
    Column("reason", Text, nullable=False),
    Column("actor", String(255)),
    Column("at", String(32), nullable=False),
)

# Pairs of entities with no shared usable key but strong weak evidence; never merged without an operator.
identity_suggestions = Table(
    "identity_suggestions", metadata,
    Column("id", Integer, primary_key=True),
    Column("entity_type", String(20), nullable=False),
    Column("entity_a", Integer, nullable=False),
    Column("entity_b", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("evidence", Text, nullable=False),  # JSON list of sentences
    Column("status", String(12), nullable=False),  # open | accepted | dismissed | gone
    Column("reason", Text),
    Column("actor", String(255)),
    Column("created_at", String(32), nullable=False),
    Column("decided_at", String(32)),
    UniqueConstraint("entity_type", "entity_a", "entity_b", name="uq_identity_suggestion"),
)
