"""web query indexes: golden fields the web UI and API search and filter on

Revision ID: 0004
Revises: 0005
Create Date: 2026-11-26 13:20:00.000000

Golden records are JSON text; the lists of the web UI and REST API search assets by the start of their host
name or assigned-to e-mail and filter them by kind and lifecycle state, and people by status. Without an
index each of those scans every golden record (about 0.4 s per query at 100,000 assets); these expression
indexes make them index lookups. They are partial (one entity type each), so an entity of another type costs
nothing to write, and Repos._gx() writes the same expressions in its queries.

The expression indexes are dialect-specific and are not declared in tables.py (Alembic does not compare
expression indexes); the plain (entity_type, status) index is.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0005"
branch_labels = None
depends_on = None

# (index name, entity type, golden field)
GOLDEN_INDEXES = (
    ("ix_entities_asset_hostname", "asset", "hostname"),
    ("ix_entities_asset_assigned_to", "asset", "assigned_to"),
    ("ix_entities_asset_kind", "asset", "kind"),
    ("ix_entities_asset_lifecycle", "asset", "lifecycle_state"),
    ("ix_entities_person_status", "person", "status"),
)


def _expr(dialect: str, field: str) -> str:
    if dialect == "postgresql":
        # text_pattern_ops: LIKE 'prefix%' uses the index in any collation, and so does equality.
        return f"((golden::jsonb -> '{field}' ->> 0)) text_pattern_ops"
    return f"json_extract(golden, '$.{field}[0]')"


def upgrade() -> None:
    op.create_index("ix_entities_type_status", "entities", ["entity_type", "status"])
    dialect = op.get_bind().dialect.name
    for name, etype, field in GOLDEN_INDEXES:
        # entity_type leads although the index is partial: without table statistics SQLite's planner otherwise
        # prefers ix_entities_type_status (entity_type=?) over a range on the expression.
        op.execute(f"CREATE INDEX {name} ON entities (entity_type, {_expr(dialect, field)}) "
                   f"WHERE entity_type = '{etype}'")


def downgrade() -> None:
    for name, _etype, _field in GOLDEN_INDEXES:
        op.execute(f"DROP INDEX {name}")
    op.drop_index("ix_entities_type_status", table_name="entities")
