"""KPI snapshots for the overview's trends: one per state of the store (the merge log's newest id), newest kept."""

from __future__ import annotations

import json
from typing import Any

from itam_sync.store.repos.base import RepoBase

KEEP = 90  # snapshots kept; older ones are deleted as new ones arrive


class KpiHistoryRepo(RepoBase):
    """KPI snapshots (table kpi_snapshots), newest first."""

    def kpi_snapshots(self, limit: int = 30) -> list[dict[str, Any]]:
        """The newest `limit` snapshots, newest first: {"log_id", "at", "run_id", "values"}."""
        rows = self._exec("SELECT log_id, kpis, run_id, at FROM kpi_snapshots ORDER BY log_id DESC LIMIT ?",
                          (limit,)).fetchall()
        out = []
        for log_id, kpis, run_id, at in rows:
            try:
                values = json.loads(kpis) if kpis else {}
            except ValueError:
                continue  # a damaged snapshot is skipped, not fatal to the overview
            out.append({"log_id": int(log_id), "at": at, "run_id": run_id, "values": values})
        return out

    def add_kpi_snapshot(self, log_id: int, at: str, run_id: int | None, values: dict[str, Any]) -> bool:
        """Keep a snapshot for merge-log id `log_id` unless one exists; drop the ones beyond KEEP. True when
        it was added."""
        if self._exec("SELECT 1 FROM kpi_snapshots WHERE log_id=?", (log_id,)).fetchone():
            return False
        self._exec("INSERT INTO kpi_snapshots (log_id, at, run_id, kpis) VALUES (?, ?, ?, ?)",
                   (log_id, at, run_id, json.dumps(values, sort_keys=True)))
        cutoff = self._exec("SELECT log_id FROM kpi_snapshots ORDER BY log_id DESC LIMIT 1 OFFSET ?",
                            (KEEP - 1,)).fetchone()
        if cutoff:
            self._exec("DELETE FROM kpi_snapshots WHERE log_id < ?", (cutoff[0],))
        return True
