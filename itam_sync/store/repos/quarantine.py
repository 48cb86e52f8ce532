"""Records that could not be read or mapped: one row per record, with its latest reason and a count.

A record is named by an *item*: its source key ("key:ab12"), else its place in a file ("at:hr.csv:17"), else
a digest of its content ("raw:9f0c..."). Quarantining it again updates the row (reason, raw, run, count) and
reopens it if it was resolved; the runner resolves rows whose record maps again, and on a complete full run
every open row of a stream the run did not quarantine again (the record is fixed or gone).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from itam_sync.store.repos.base import RepoBase, chunks


class QuarantineRepo(RepoBase):
    """Records that could not be read or mapped, one row per record."""

    def quarantine(self, rows: list[tuple[Any, ...]]) -> None:
        """rows: (run_id, connector, stream, item, source_key, position, reason, raw, at); a row of an item
        already quarantined updates it."""
        self._many(
            "INSERT INTO quarantine (run_id, connector, stream, item, source_key, position, reason, raw, created_at, "
            "last_seen_at, count, status, first_run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 'open', ?) "
            "ON CONFLICT (connector, stream, item) DO UPDATE SET run_id=excluded.run_id, "
            "source_key=excluded.source_key, position=excluded.position, reason=excluded.reason, raw=excluded.raw, "
            "last_seen_at=excluded.last_seen_at, count=quarantine.count + 1, status='open', resolved_at=NULL, "
            "resolved_run_id=NULL",
            [(*r[:8], r[8], r[8], r[0]) for r in rows])

    def open_items(self, connector: str) -> set[tuple[str, str]]:
        """(stream, item) of the connector's open rows (few: read once per run)."""
        return {(s, i) for s, i in self._exec("SELECT stream, item FROM quarantine WHERE connector=? "
                                              "AND status='open'", (connector,)).fetchall()}

    def resolve(self, connector: str, items: Iterable[tuple[str, str]], run_id: int, at: str) -> int:
        """Mark these (stream, item) rows resolved: the record maps again, or is gone."""
        todo = list(items)
        for chunk in chunks(todo):
            self._many("UPDATE quarantine SET status='resolved', resolved_at=?, resolved_run_id=? "
                       "WHERE connector=? AND stream=? AND item=? AND status='open'",
                       [(at, run_id, connector, s, i) for s, i in chunk])
        return len(todo)

    def list_quarantine(self, run_id: int | None = None, limit: int = 100,
                        include_resolved: bool = False) -> list[tuple[Any, ...]]:
        """Newest first: open rows (and resolved ones with `include_resolved`), optionally those a given run
        quarantined last: (id, run_id, connector, stream, source_key, reason, position, count, status,
        first quarantined at, last quarantined at)."""
        where, params = [], []
        if not include_resolved:
            where.append("status='open'")
        if run_id is not None:
            where.append("run_id=?")
            params.append(run_id)
        sql = ("SELECT id, run_id, connector, stream, source_key, reason, position, count, status, created_at, "
               "last_seen_at FROM quarantine")
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [tuple(r) for r in self._exec(sql + " ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()]

    def count_open(self) -> int:
        """Records in quarantine now."""
        return int(self._exec("SELECT count(*) FROM quarantine WHERE status='open'").scalar() or 0)
