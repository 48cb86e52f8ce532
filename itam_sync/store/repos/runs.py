"""Sync runs and their per-stream cursors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from itam_sync.settings.redaction import redact
from itam_sync.store.repos.base import RepoBase, dumps


class RunsRepo(RepoBase):
    """Sync runs and their per-stream cursors."""

    def create_run(self, connector: str, ctype: str, mode: str, started_at: str, pid: int, host: str) -> int:
        row = self._exec("INSERT INTO sync_runs (connector, connector_type, mode, status, started_at, counts, "
                         "pid, host) VALUES (?, ?, ?, 'running', ?, '{}', ?, ?) RETURNING id",
                         (connector, ctype, mode, started_at, pid, host)).fetchone()
        return int(row[0])

    def finish_run(self, run_id: int, status: str, finished_at: str, duration: float, counts: dict[str, Any],
                   error: str | None) -> None:
        error = redact(error) if error else error  # no resolved secret value is ever stored (settings/redaction.py)
        self._exec("UPDATE sync_runs SET status=?, finished_at=?, duration_s=?, counts=?, error=? WHERE id=?",
                   (status, finished_at, duration, dumps(counts), error, run_id))

    def running_runs(self, connector: str | None = None) -> list[tuple[int, str, int | None, str | None]]:
        sql = "SELECT id, connector, pid, host FROM sync_runs WHERE status='running'"
        if connector:
            return [tuple(r) for r in self._exec(sql + " AND connector=?", (connector,)).fetchall()]
        return [tuple(r) for r in self._exec(sql).fetchall()]

    def list_runs(self, limit: int = 50, connector: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT id, connector, connector_type, mode, status, started_at, finished_at, duration_s, counts, "
               "error FROM sync_runs")
        params: tuple[Any, ...] = ()
        if connector:
            sql += " WHERE connector=?"
            params = (connector,)
        rows = self._exec(sql + " ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
        keys = ("id", "connector", "type", "mode", "status", "started_at", "finished_at", "duration_s",
                "counts", "error")
        out = []
        for r in rows:
            d = dict(zip(keys, r, strict=True))
            d["counts"] = json.loads(d["counts"] or "{}")
            out.append(d)
        return out

    def last_successful(self, connector: str, mode: str,
                        before: int | None = None) -> tuple[int, dict[str, Any]] | None:
        """(id, counts) of the connector's newest `success` run in `mode` (older than run `before`), if any: the
        baseline a run's data contracts compare against."""
        sql = "SELECT id, counts FROM sync_runs WHERE connector=? AND mode=? AND status='success'"
        params: tuple[Any, ...] = (connector, mode)
        if before is not None:
            sql += " AND id<?"
            params += (before,)
        r = self._exec(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
        return (int(r[0]), json.loads(r[1] or "{}")) if r else None

    def latest_contracts(self) -> dict[str, dict[str, Any]]:
        """connector -> counts of its latest finished sync run that recorded data contracts (metrics start)."""
        rows = self._exec("SELECT connector, max(id) FROM sync_runs WHERE status IN ('success', 'degraded', "
                          "'guarded') AND mode IN ('full', 'incremental') GROUP BY connector").fetchall()
        out: dict[str, dict[str, Any]] = {}
        for conn, counts in self._in("SELECT connector, counts FROM sync_runs WHERE id IN ({in})",
                                     [r[1] for r in rows]):
            out[conn] = json.loads(counts or "{}")
        return out

    def run_counts(self, run_id: int) -> tuple[str, str, str, dict[str, Any]] | None:
        """(connector, mode, status, counts) of one run."""
        r = self._exec("SELECT connector, mode, status, counts FROM sync_runs WHERE id=?", (run_id,)).fetchone()
        return (r[0], r[1], r[2], json.loads(r[3] or "{}")) if r else None

    def get_cursors(self, connector: str) -> dict[str, Any]:
        rows = self._exec("SELECT stream, cursor FROM connector_state WHERE connector=?", (connector,)).fetchall()
        return {s: json.loads(c) for s, c in rows if c is not None}

    def save_cursor(self, connector: str, stream: str, cursor: Any, run_id: int, at: str) -> None:
        self._exec("INSERT INTO connector_state (connector, stream, cursor, run_id, updated_at) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (connector, stream) DO UPDATE SET "
                   "cursor=excluded.cursor, run_id=excluded.run_id, updated_at=excluded.updated_at",
                   (connector, stream, dumps(cursor), run_id, at))

    def run_started_since(self, connector: str, since: str, modes: Sequence[str]) -> int | None:
        """The id of a finished run of `connector` in one of `modes` that started at or after `since`, if any:
        a scheduled occurrence that another worker already served."""
        marks = ",".join("?" * len(modes))
        r = self._exec(f"SELECT id FROM sync_runs WHERE connector=? AND started_at>=? AND mode IN ({marks}) "
                       "AND status NOT IN ('running', 'interrupted') ORDER BY id DESC LIMIT 1",
                       (connector, since, *modes)).fetchone()
        return int(r[0]) if r else None

    def last_runs(self) -> dict[str, dict[str, Any]]:
        """Per connector (and "(merge)"): its latest run and when it last succeeded."""
        latest = [r[0] for r in self._exec("SELECT max(id) FROM sync_runs GROUP BY connector").fetchall()]
        out: dict[str, dict[str, Any]] = {}
        for r in self._in("SELECT id, connector, mode, status, started_at, finished_at, duration_s, error, host, pid "
                          "FROM sync_runs WHERE id IN ({in})", latest):
            out[r[1]] = dict(zip(("id", "connector", "mode", "status", "started_at", "finished_at", "duration_s",
                                  "error", "host", "pid"), r, strict=True))
        for conn, at in self._exec("SELECT connector, max(finished_at) FROM sync_runs WHERE status='success' "
                                   "GROUP BY connector").fetchall():
            if conn in out:
                out[conn]["last_success_at"] = at
        return out
