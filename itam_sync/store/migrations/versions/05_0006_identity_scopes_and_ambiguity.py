"""identity: entity_keys per (key, entity), ambiguous identifiers, identifier decisions, suggestions

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-27 09:00:00.000000

entity_keys said which ONE entity owned each match key. Identity resolution now recomputes the part of the
store a change touches, and needs every entity that holds records with a key (a dock MAC reported by eight
laptops names eight entities), so its primary key becomes (entity_type, key, entity_id) and its rows are
rebuilt from the records' stored match keys. Existing entities are not re-partitioned here: the next run
re-resolves what it touches, and `itam-sync identifiers recheck` re-resolves everything at once.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH = 5000


def _rebuild_pairs(conn: sa.Connection, table: str) -> None:
    """One row per (entity_type, key, entity_id) from every record's match keys."""
    last = 0
    while True:
        rows = conn.execute(sa.text("SELECT id, entity_type, entity_id, match_keys FROM source_records "
                                    "WHERE id > :last AND entity_id IS NOT NULL ORDER BY id LIMIT :n"),
                            {"last": last, "n": BATCH}).fetchall()
        if not rows:
            return
        last = rows[-1][0]
        pairs = {(t, k, e) for _, t, e, keys in rows for k in json.loads(keys or "[]")}
        if pairs:
            conn.execute(sa.text(f"INSERT INTO {table} (entity_type, key, entity_id) VALUES (:t, :k, :e) "
                                 "ON CONFLICT DO NOTHING"), [{"t": t, "k": k, "e": e} for t, k, e in sorted(pairs)])


def upgrade() -> None:
    op.create_table(
        "entity_keys_0006",
        sa.Column("entity_type", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=600), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("entity_type", "key", "entity_id"),
    )
    _rebuild_pairs(op.get_bind(), "entity_keys_0006")
    with op.batch_alter_table("entity_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_entity_keys_entity_id"))
    op.drop_table("entity_keys")
    op.rename_table("entity_keys_0006", "entity_keys")
    with op.batch_alter_table("entity_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_entity_keys_entity_id"), ["entity_id"], unique=False)

    op.create_table(
        "ambiguous_identifiers",
        sa.Column("entity_type", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=600), nullable=False),
        sa.Column("origin", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("entities", sa.Integer(), nullable=False),
        sa.Column("since", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.String(length=32), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("entity_type", "key"),
    )
    op.create_table(
        "identifier_decisions",
        sa.Column("entity_type", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=600), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=True),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("entity_type", "key"),
    )
    op.create_table(
        "identity_suggestions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_type", sa.String(length=20), nullable=False),
        sa.Column("entity_a", sa.Integer(), nullable=False),
        sa.Column("entity_b", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("decided_at", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("entity_type", "entity_a", "entity_b", name="uq_identity_suggestion"),
    )


def downgrade() -> None:
    op.drop_table("identity_suggestions")
    op.drop_table("identifier_decisions")
    op.drop_table("ambiguous_identifiers")
    op.create_table(
        "entity_keys_0001",
        sa.Column("entity_type", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=600), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("entity_type", "key"),
    )
    # One owner per key again: the smallest entity id holding it.
    op.execute("INSERT INTO entity_keys_0001 (entity_type, key, entity_id) SELECT entity_type, key, min(entity_id) "
               "FROM entity_keys GROUP BY entity_type, key")
    with op.batch_alter_table("entity_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_entity_keys_entity_id"))
    op.drop_table("entity_keys")
    op.rename_table("entity_keys_0001", "entity_keys")
    with op.batch_alter_table("entity_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_entity_keys_entity_id"), ["entity_id"], unique=False)
