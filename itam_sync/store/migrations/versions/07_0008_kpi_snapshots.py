"""kpi snapshots: the dashboard's trend points in a table of their own

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 10:00:00.000000

One row per state of the store (the merge log's newest id when the overview was computed): the KPI values as
JSON, when, and the newest sync run then. Earlier snapshots kept in connector_state under the pseudo-connector
"(kpis)" move here, so connector state holds only connectors.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kpi_snapshots",
        sa.Column("log_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("run_id", sa.Integer()),
        sa.Column("kpis", sa.Text(), nullable=False),
    )
    op.execute("INSERT INTO kpi_snapshots (log_id, at, run_id, kpis) SELECT CAST(stream AS BIGINT), updated_at, "
               "run_id, cursor FROM connector_state WHERE connector = '(kpis)'")
    op.execute("DELETE FROM connector_state WHERE connector = '(kpis)'")


def downgrade() -> None:
    op.drop_table("kpi_snapshots")
