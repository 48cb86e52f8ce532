"""Records that could not be mapped, with their reason."""

from __future__ import annotations

from typing import Any

from itam_sync.store.repos.base import RepoBase


class QuarantineRepo(RepoBase):
    """Records that could not be mapped, with their reason."""

    def quarantine(self, rows: list[tuple[Any, ...]]) -> None:
        """rows: (run_id, connector, stream, source_key, reason, raw, at)."""
        self._many("INSERT INTO quarantine (run_id, connector, stream, source_key, reason, raw, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def list_quarantine(self, run_id: int | None = None, limit: int = 100) -> list[tuple[Any, ...]]:
        sql = "SELECT id, run_id, connector, stream, source_key, reason FROM quarantine"
        params: tuple[Any, ...] = ()
        if run_id is not None:
            sql += " WHERE run_id=?"
            params = (run_id,)
        return [tuple(r) for r in self._exec(sql + " ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()]
