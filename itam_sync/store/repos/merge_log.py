"""The hash-chained merge log: appends (one chain head per transaction) and its readers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from itam_sync.store.chain import GENESIS, PG_LOCK_KEY, chain_rows
from itam_sync.store.repos.base import Db, RepoBase, chunks, dumps


class MergeLogRepo(RepoBase):
    """The hash-chained merge log: appends (one chain head per transaction) and its readers."""

    _LOG_COLUMNS = ("SELECT id, run_id, at, entity_type, entity_id, action, field, old_value, new_value, source, "
                    "rule, actor FROM merge_log")

    def __init__(self, db: Db) -> None:
        super().__init__(db)
        # The chain head, read once per transaction (a repository lives for one transaction).
        self._log_head: str | None = None

    def insert_log(self, rows: list[tuple[Any, ...]]) -> None:
        """rows: (run_id, at, entity_type, entity_id, action, field, old, new, source, rule, actor).

        The only way rows enter the merge log: each gets prev_hash and row_hash (store/chain.py), chained
        from the head this transaction read on its first write.
        """
        if not rows:
            return
        head = self._log_head if self._log_head is not None else self._read_log_head()
        chained, self._log_head = chain_rows(head, rows)
        if self.pg:  # COPY: the merge log is the largest insert of a run, and COPY is far faster than executemany
            self.db.copy_rows("merge_log", ("run_id", "at", "entity_type", "entity_id", "action", "field", "old_value",
                                         "new_value", "source", "rule", "actor", "prev_hash", "row_hash"), chained)
            return
        self._many("INSERT INTO merge_log (run_id, at, entity_type, entity_id, action, field, old_value, new_value, "
                   "source, rule, actor, prev_hash, row_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   chained)

    def _read_log_head(self) -> str:
        """The last row's hash. On PostgreSQL this first takes a transaction-scoped advisory lock, so two
        writers never chain from the same head (SQLite's single writer lock already serialises them)."""
        if self.pg:
            self._exec("SELECT pg_advisory_xact_lock(?)", (PG_LOCK_KEY,))
        row = self._exec("SELECT row_hash FROM merge_log ORDER BY id DESC LIMIT 1").fetchone()
        return row[0] if row is not None and row[0] else GENESIS

    def log_rows(self, entity_id: int | None = None, since: str | None = None, source: str | None = None,
                 run_id: int | None = None, action: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        where, params = [], []
        for cond, val in (("entity_id=?", entity_id), ("at>=?", since), ("source=?", source), ("run_id=?", run_id),
                          ("action=?", action)):
            if val is not None:
                where.append(cond)
                params.append(val)
        sql = ("SELECT id, run_id, at, entity_type, entity_id, action, field, old_value, new_value, source, rule, "
               "actor FROM merge_log")
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._exec(sql + " ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
        keys = ("id", "run_id", "at", "entity_type", "entity_id", "action", "field", "old", "new", "source", "rule",
                "actor")
        out = []
        for r in reversed(rows):
            d = dict(zip(keys, r, strict=True))
            d["old"] = json.loads(d["old"]) if d["old"] is not None else None
            d["new"] = json.loads(d["new"]) if d["new"] is not None else None
            out.append(d)
        return out

    def max_log_id(self) -> int:
        """The newest merge-log id (0 when the log is empty): a push's high-water mark."""
        return int(self._exec("SELECT max(id) FROM merge_log").scalar() or 0)

    def log_after(self, after_id: int, limit: int, upto_id: int | None = None) -> list[tuple[Any, ...]]:
        """Merge-log rows with id > after_id (and <= upto_id), oldest first: (id, run_id, at, entity_type,
        entity_id, action, field, old JSON, new JSON, source, rule, actor)."""
        sql = ("SELECT id, run_id, at, entity_type, entity_id, action, field, old_value, new_value, source, rule, "
               "actor FROM merge_log WHERE id>?")
        params: tuple[Any, ...] = (after_id,)
        if upto_id is not None:
            sql += " AND id<=?"
            params += (upto_id,)
        return [tuple(r) for r in self._exec(sql + " ORDER BY id LIMIT ?", (*params, limit)).fetchall()]

    def changed_entity_ids(self, after_id: int, upto_id: int, entity_types: Sequence[str]) -> list[int]:
        """Entities of these types with a merge-log row in (after_id, upto_id], sorted."""
        marks = ",".join("?" * len(entity_types))
        rows = self._exec(f"SELECT DISTINCT entity_id FROM merge_log WHERE id>? AND id<=? AND entity_type IN ({marks})",
                          (after_id, upto_id, *entity_types)).fetchall()
        return sorted(r[0] for r in rows)

    def log_chain_batch(self, after_id: int, limit: int, last_id: int | None = None) -> list[tuple[Any, ...]]:
        """Merge-log rows with id > after_id (and <= last_id), in id order: (id, run_id, at, entity_type,
        entity_id, action, field, old_value, new_value, source, rule, actor, prev_hash, row_hash)."""
        sql = ("SELECT id, run_id, at, entity_type, entity_id, action, field, old_value, new_value, source, rule, "
               "actor, prev_hash, row_hash FROM merge_log WHERE id>?")
        params: tuple[Any, ...] = (after_id,)
        if last_id is not None:
            sql += " AND id<=?"
            params += (last_id,)
        return [tuple(r) for r in self._exec(sql + " ORDER BY id LIMIT ?", (*params, limit)).fetchall()]

    def log_id_range(self, since: str | None, until: str | None) -> tuple[int | None, int | None]:
        """(first id with at >= since, last id with at <= until); None ends mean the log's first / last row."""
        first = self._exec("SELECT min(id) FROM merge_log" + (" WHERE at>=?" if since else ""),
                           (since,) if since else ()).scalar()
        last = self._exec("SELECT max(id) FROM merge_log" + (" WHERE at<=?" if until else ""),
                          (until,) if until else ()).scalar()
        return first, last

    def log_rows_of(self, entity_ids: Iterable[int], until: str | None = None, after: str | None = None,
                    action: str | None = None) -> list[tuple[Any, ...]]:
        """Raw merge-log rows (id, run_id, at, entity_type, entity_id, action, field, old_value, new_value,
        source, rule, actor) of these entities, with at <= until / at > after, in id order."""
        cond, params = "", []
        for sql, val in ((" AND at<=?", until), (" AND at>?", after), (" AND action=?", action)):
            if val is not None:
                cond += sql
                params.append(val)
        rows = self._in_suffix(self._LOG_COLUMNS + " WHERE entity_id IN ({in})" + cond, entity_ids, tuple(params))
        return sorted((tuple(r) for r in rows), key=lambda r: r[0])

    def _in_suffix(self, sql: str, ids: Iterable[Any], suffix: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        """Like _in, with the parameters after the IN list."""
        items = list(ids)
        for chunk in chunks(items):
            marks = ",".join("?" * len(chunk))
            yield from self._exec(sql.format(**{"in": marks}), (*chunk, *suffix)).fetchall()

    def log_links_leaving(self, entity_ids: Iterable[int], until: str) -> list[tuple[Any, ...]]:
        """Link rows (same columns as log_rows_of) that moved a record away from one of these entities."""
        olds = [dumps(e) for e in entity_ids]
        return sorted((tuple(r) for r in self._in_suffix(
            self._LOG_COLUMNS + " WHERE old_value IN ({in}) AND action='link' AND at<=?", olds, (until,))),
            key=lambda r: r[0])

    def log_identity_rows(self, until: str, batch: int = 5000) -> Iterator[tuple[int, int, str, str | None,
                                                                                str | None]]:
        """(id, entity_id, action, old_value, new_value) of every link, unlink and merge row with at <= until,
        in id order, streamed."""
        last = 0
        while True:
            rows = self._exec("SELECT id, entity_id, action, old_value, new_value FROM merge_log WHERE id>? AND "
                              "action IN ('link', 'unlink', 'merge') AND at<=? ORDER BY id LIMIT ?",
                              (last, until, batch)).fetchall()
            if not rows:
                return
            for r in rows:
                yield r[0], r[1], r[2], r[3], r[4]
            last = rows[-1][0]

    def report_field_changes(self, field: str, entity_type: str = "asset", since: str | None = None,
                             batch: int = 5000) -> Iterator[tuple[int, int, str, str | None, str | None, str | None,
                                                                  int | None, str | None]]:
        """(log id, entity id, at, old JSON, new JSON, source, run id, actor) of every logged set/clear of
        `field` on entities of this type, at or after `since`, in log order."""
        first = self.log_id_range(since, None)[0] if since else 0
        if first is None:
            return
        last = first - 1
        while True:
            rows = self._exec("SELECT id, entity_id, at, old_value, new_value, source, run_id, actor FROM merge_log "
                              "WHERE id>? AND field=? AND entity_type=? AND action IN ('set', 'clear') "
                              "ORDER BY id LIMIT ?", (last, field, entity_type, batch)).fetchall()
            if not rows:
                return
            for r in rows:
                yield r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]
            last = rows[-1][0]

    def report_assignment_changes(self, batch: int = 5000) -> Iterator[tuple[int, str | None, str | None, str]]:
        """(asset id, old JSON, new JSON, at) of every logged change of an asset's assigned_to, in log order."""
        last = 0
        while True:
            rows = self._exec("SELECT id, entity_id, old_value, new_value, at FROM merge_log WHERE id>? "
                              "AND action='set' AND field='assigned_to' AND entity_type='asset' ORDER BY id LIMIT ?",
                              (last, batch)).fetchall()
            if not rows:
                return
            for _i, e, o, n, at in rows:
                yield e, o, n, at
            last = rows[-1][0]
