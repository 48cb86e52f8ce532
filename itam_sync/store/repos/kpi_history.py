"""KPI snapshots for the overview's trends: one per state of the store (the merge log's newest id), newest kept.

Stored in `connector_state` under the pseudo-connector "(kpis)", a name no connector can have (names match
^[a-z0-9][a-z0-9_.-]*$), one row per snapshot: stream = the zero-padded merge-log id (so rows sort by it),
cursor = the snapshot JSON, run_id = the newest sync run then. No schema change is needed; a table of its own
can replace this behind the same two methods.
"""

from __future__ import annotations

import json
from typing import Any

from itam_sync.store.repos.base import RepoBase

PSEUDO_CONNECTOR = "(kpis)"
KEEP = 90  # snapshots kept; older ones are deleted as new ones arrive


class KpiHistoryRepo(RepoBase):
    """KPI snapshots, newest first."""

    def kpi_snapshots(self, limit: int = 30) -> list[dict[str, Any]]:
        """The newest `limit` snapshots, newest first: {"log_id", "at", "run_id", "values"}."""
        rows = self._exec("SELECT stream, cursor, run_id, updated_at FROM connector_state WHERE connector=? "
                          "ORDER BY stream DESC LIMIT ?", (PSEUDO_CONNECTOR, limit)).fetchall()
        out = []
        for stream, cursor, run_id, at in rows:
            try:
                values = json.loads(cursor) if cursor else {}
            except ValueError:
                continue  # a damaged snapshot is skipped, not fatal to the overview
            out.append({"log_id": int(stream), "at": at, "run_id": run_id, "values": values})
        return out

    def add_kpi_snapshot(self, log_id: int, at: str, run_id: int | None, values: dict[str, Any]) -> bool:
        """Keep a snapshot for merge-log id `log_id` unless one exists; drop the ones beyond KEEP. True when
        it was added."""
        stream = f"{log_id:020d}"
        if self._exec("SELECT 1 FROM connector_state WHERE connector=? AND stream=?",
                      (PSEUDO_CONNECTOR, stream)).fetchone():
            return False
        self._exec("INSERT INTO connector_state (connector, stream, cursor, run_id, updated_at) VALUES (?, ?, ?, ?, ?)",
                   (PSEUDO_CONNECTOR, stream, json.dumps(values, sort_keys=True), run_id, at))
        old = self._exec("SELECT stream FROM connector_state WHERE connector=? ORDER BY stream DESC LIMIT -1 OFFSET ?"
                         if not self.pg else
                         "SELECT stream FROM connector_state WHERE connector=? ORDER BY stream DESC OFFSET ?",
                         (PSEUDO_CONNECTOR, KEEP)).fetchall()
        for (s,) in old:
            self._exec("DELETE FROM connector_state WHERE connector=? AND stream=?", (PSEUDO_CONNECTOR, s))
        return True
