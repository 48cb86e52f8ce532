"""Refused links (conflicts) and operator pins (link/unlink decisions)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from itam_sync.store.repos.base import RepoBase


class ConflictsRepo(RepoBase):
    """Refused links (conflicts) and operator pins (link/unlink decisions)."""

    def pins(self, record_ids: Iterable[int]) -> dict[int, int]:
        return {r: e for r, e in self._in("SELECT record_id, entity_id FROM manual_links WHERE record_id IN ({in})",
                                          record_ids)}

    def has_pins(self) -> bool:
        return self._exec("SELECT 1 FROM manual_links LIMIT 1").fetchone() is not None

    def pin(self, record_id: int, entity_id: int, action: str, reason: str | None, actor: str | None,
            at: str) -> None:
        self._exec("INSERT INTO manual_links (record_id, entity_id, action, reason, actor, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (record_id) DO UPDATE SET entity_id=excluded.entity_id, "
                   "action=excluded.action, reason=excluded.reason, actor=excluded.actor, "
                   "created_at=excluded.created_at", (record_id, entity_id, action, reason, actor, at))

    def insert_conflicts(self, rows: list[tuple[Any, ...]]) -> None:
        """rows: (run_id, entity_type, record_id, key, entity_id, other_entity_id, reason, at)."""
        self._many("INSERT INTO conflicts (run_id, entity_type, record_id, key, entity_id, other_entity_id, reason, "
                   "status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?) "
                   "ON CONFLICT (record_id, key, other_entity_id) DO UPDATE SET status='open'", rows)

    def list_conflicts(self, status: str = "open") -> list[dict[str, Any]]:
        rows = self._exec(
            "SELECT c.id, c.entity_type, c.key, c.record_id, r.connector, r.stream, r.source_key, c.entity_id, "
            "c.other_entity_id, c.reason, c.created_at FROM conflicts c JOIN source_records r ON r.id=c.record_id "
            "WHERE c.status=? ORDER BY c.id", (status,)).fetchall()
        keys = ("id", "entity_type", "key", "record_id", "connector", "stream", "source_key", "entity_id",
                "other_entity_id", "reason", "created_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def resolve_conflicts_for(self, record_id: int) -> None:
        self._exec("UPDATE conflicts SET status='resolved' WHERE record_id=? AND status='open'", (record_id,))
