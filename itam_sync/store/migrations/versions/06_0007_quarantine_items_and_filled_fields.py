"""quarantine items and filled fields: one quarantine row per broken record; each record's non-empty fields

Revision ID: 0007
Revises: 0004 (0006 once it lands)
Create Date: 2026-12-05 09:00:00.000000

Quarantine: a record that kept failing used to add a row on every run (one broken Okta user became 29 rows).
Now there is one row per (connector, stream, item), where the item is the record's source key, else its place
in a file ("hr.csv:17"), else a digest of its content; a run that quarantines it again updates its reason and
raises its `count`, and a run that maps it again (or a complete full run that no longer sees it) marks it
`resolved`. Existing rows collapse into one per item, keeping the newest reason and counting the rows.

source_records.filled: the names of a record's non-empty mapped fields, comma-separated, so a run counts fill
rates of the records it skips as unchanged without decoding them (itam_sync/engine/contracts.py). Filled in
from each record's stored fields.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_NEW = (
    ("item", sa.String(600)),
    ("position", sa.String(600)),
    ("count", sa.Integer()),
    ("status", sa.String(10)),
    ("first_run_id", sa.Integer()),
    ("last_seen_at", sa.String(32)),
    ("resolved_at", sa.String(32)),
    ("resolved_run_id", sa.Integer()),
)


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("quarantine") as batch:
        for name, type_ in _NEW:
            batch.add_column(sa.Column(name, type_))
    # Rows without a source key were never tied to a record: each stays one item of its own.
    op.execute("UPDATE quarantine SET item = CASE WHEN source_key IS NOT NULL THEN 'key:' || source_key "
               "ELSE 'row:' || CAST(id AS TEXT) END, count = 1, status = 'open', first_run_id = run_id, "
               "last_seen_at = created_at")
    # Collapse repeats: the newest row stays, with the number of rows, the first run and the first time.
    op.execute("UPDATE quarantine SET "
               "count = (SELECT count(*) FROM quarantine q WHERE q.connector = quarantine.connector "
               "AND q.stream = quarantine.stream AND q.item = quarantine.item), "
               "first_run_id = (SELECT min(q.run_id) FROM quarantine q WHERE q.connector = quarantine.connector "
               "AND q.stream = quarantine.stream AND q.item = quarantine.item), "
               "created_at = (SELECT min(q.created_at) FROM quarantine q WHERE q.connector = quarantine.connector "
               "AND q.stream = quarantine.stream AND q.item = quarantine.item)")
    op.execute("DELETE FROM quarantine WHERE id NOT IN (SELECT max(id) FROM quarantine "
               "GROUP BY connector, stream, item)")
    op.create_index("uq_quarantine_item", "quarantine", ["connector", "stream", "item"], unique=True)

    with op.batch_alter_table("source_records") as batch:
        batch.add_column(sa.Column("filled", sa.Text()))
    if pg:
        op.execute("UPDATE source_records SET filled = COALESCE((SELECT string_agg(k, ',' ORDER BY n) FROM "
                   "jsonb_object_keys(fields::jsonb) WITH ORDINALITY AS t(k, n)), '')")
    else:
        op.execute("UPDATE source_records SET filled = COALESCE((SELECT group_concat(key, ',') FROM "
                   "json_each(source_records.fields)), '')")


def downgrade() -> None:
    with op.batch_alter_table("source_records") as batch:
        batch.drop_column("filled")
    op.drop_index("uq_quarantine_item", table_name="quarantine")
    with op.batch_alter_table("quarantine") as batch:
        for name, _type in reversed(_NEW):
            batch.drop_column(name)
