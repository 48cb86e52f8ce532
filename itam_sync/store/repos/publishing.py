"""Publishing state: sink cursors and retries, reminders and their delivery history."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from itam_sync.store.repos.base import RepoBase, dumps


class PublishRepo(RepoBase):
    """Publishing state: sink cursors and retries, reminders and their delivery history."""

    def sink_state(self, sink: str) -> tuple[int, list[int]]:
        """(last merge-log id pushed, entity ids to retry) of a sink; (0, []) before its first push."""
        row = self._exec("SELECT last_log_id, retry FROM sink_state WHERE sink=?", (sink,)).fetchone()
        return (0, []) if row is None else (int(row[0]), [int(e) for e in json.loads(row[1] or "[]")])

    def save_sink_state(self, sink: str, last_log_id: int, retry: list[int], run_id: int | None, at: str) -> None:
        self._exec("INSERT INTO sink_state (sink, last_log_id, retry, run_id, updated_at) VALUES (?, ?, ?, ?, ?) "
                   "ON CONFLICT (sink) DO UPDATE SET last_log_id=excluded.last_log_id, retry=excluded.retry, "
                   "run_id=excluded.run_id, updated_at=excluded.updated_at",
                   (sink, last_log_id, dumps(sorted(set(retry))), run_id, at))

    def open_reminders(self, rules: Sequence[str]) -> list[tuple[int, str, str, str, str, str, str]]:
        """Unresolved reminder history of these rules: (id, rule, item_key, period, channel, status, created_at)."""
        if not rules:
            return []
        return [tuple(r) for r in self._in("SELECT id, rule, item_key, period, channel, status, created_at "
                                           "FROM reminder_history WHERE resolved_at IS NULL AND rule IN ({in}) "
                                           "ORDER BY id", rules)]

    def insert_reminders(self, rows: list[tuple[Any, ...]]) -> None:
        """rows: (rule, item_key, period, channel, entity_id, summary, run_id, created_at), queued as pending."""
        self._many("INSERT INTO reminder_history (rule, item_key, period, channel, entity_id, summary, status, "
                   "run_id, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)", rows)

    def pending_reminders(self, channel: str) -> list[tuple[int, str, str, str, int | None, str, str]]:
        """Queued, undelivered, unresolved reminders of a channel, oldest first: (id, rule, item_key, period,
        entity_id, summary, created_at)."""
        return [tuple(r) for r in self._exec(
            "SELECT id, rule, item_key, period, entity_id, summary, created_at FROM reminder_history "
            "WHERE status='pending' AND channel=? AND resolved_at IS NULL ORDER BY id", (channel,)).fetchall()]

    def mark_reminders_sent(self, ids: list[int], at: str) -> None:
        self._many("UPDATE reminder_history SET status='sent', sent_at=? WHERE id=?", [(at, i) for i in ids])

    def resolve_reminders(self, ids: list[int], at: str) -> None:
        """Close episodes whose condition no longer holds (a recurrence is reminded again)."""
        self._many("UPDATE reminder_history SET resolved_at=? WHERE id=?", [(at, i) for i in ids])
