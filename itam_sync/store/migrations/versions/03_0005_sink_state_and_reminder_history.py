"""sink state and reminder history

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-26 13:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sink_state",
        sa.Column("sink", sa.String(length=100), nullable=False),
        sa.Column("last_log_id", sa.Integer(), nullable=False),
        sa.Column("retry", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("sink"),
    )
    op.create_table(
        "reminder_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("item_key", sa.String(length=600), nullable=False),
        sa.Column("period", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("sent_at", sa.String(length=32), nullable=True),
        sa.Column("resolved_at", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reminder_history", schema=None) as batch_op:
        batch_op.create_index("ix_reminder_history_item", ["rule", "item_key"], unique=False)
        batch_op.create_index("ix_reminder_history_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reminder_history", schema=None) as batch_op:
        batch_op.drop_index("ix_reminder_history_status")
        batch_op.drop_index("ix_reminder_history_item")
    op.drop_table("reminder_history")
    op.drop_table("sink_state")
