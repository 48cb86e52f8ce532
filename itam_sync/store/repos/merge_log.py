"""The hash-chained merge log: appends (one chain head per transaction) and its readers.

Two forms record a golden field's change. A `set` row names one field (old and new value, deciding source and
rule). A `create` row, written when an entity is first merged, holds every field at once: new_value is
{field: [value, source, rule]} and field, old_value, source are null; it stands for one `set` from nothing per
field, in that order (one chained row instead of ~20 on a first load). Databases written before create rows
existed hold only `set` rows; both stay valid.

The readers here that return change history hand out the per-field form: `expand_rows` turns each create row
into its `set` rows (same id, run, time, entity and actor), so explain, log, time travel, the web history and
reports see one history whichever form was written. Two readers return rows as stored: `log_chain_batch` (the
hashes cover the stored form) and `log_after` (the change feed, whose event ids are row ids: a create row is
one `entity_created` event, built with `create_fields`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from itam_sync.store.chain import GENESIS, PG_LOCK_KEY, chain_rows
from itam_sync.store.repos.base import Db, RepoBase, dumps, encode_value, loads

CREATE = "create"  # a first merge's one row for every field (see the module docstring)
CREATE_RULE = "first merge"  # the create row's own rule column; each field's rule is inside new_value
LOG_KEYS = ("id", "run_id", "at", "entity_type", "entity_id", "action", "field", "old", "new", "source", "rule",
            "actor")


def _loads(text: str | None) -> Any:
    return None if text is None else loads(text)


def create_fields(new_value: str | None) -> list[tuple[str, Any, str | None, str | None]]:
    """(field, value, source, rule) of every field a create row set, in the order they were decided."""
    body = _loads(new_value) or {}
    return [(f, v[0], v[1], v[2]) for f, v in body.items()]


def expand_rows(rows: Iterable[Sequence[Any]], decode: bool = False) -> list[tuple[Any, ...]]:
    """Merge-log rows (id, run_id, at, entity_type, entity_id, action, field, old JSON, new JSON, source, rule,
    actor), in their order, with each create row replaced by one `set` row per field (old None).

    decode=False keeps old and new as JSON text (a create row's values are re-encoded); decode=True parses
    them. The one place that reads the create form: every row reader goes through it."""
    out: list[tuple[Any, ...]] = []
    add = out.append
    for r in rows:
        if r[5] == CREATE:
            head = tuple(r[:5])
            for f, value, source, rule in create_fields(r[8]):
                add((*head, "set", f, None, value if decode else encode_value(value), source, rule, r[11]))
        elif decode:
            add((*r[:7], _loads(r[7]), _loads(r[8]), *r[9:12]))
        else:
            add(tuple(r))
    return out


def as_dicts(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows as `expand_rows(..., decode=True)` returns them -> dicts keyed by LOG_KEYS."""
    return [dict(zip(LOG_KEYS, r, strict=True)) for r in rows]


def _action_sql(action: str | None) -> tuple[str, tuple[Any, ...]]:
    """SQL condition for rows that may hold `action` events: `set` events are in set and create rows."""
    if action is None:
        return "", ()
    if action == "set":
        return " AND action IN ('set', 'create')", ()
    return " AND action=?", (action,)


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
        """The newest `limit` log entries matching every filter, oldest first, per field (create rows expanded),
        with old and new parsed; keys LOG_KEYS."""
        sql = self._LOG_COLUMNS + " WHERE 1=1"
        params: list[Any] = []
        for cond, val in ((" AND entity_id=?", entity_id), (" AND at>=?", since), (" AND run_id=?", run_id),
                          (" AND (source=? OR action='create')", source)):
            if val is not None:
                sql += cond
                params.append(val)
        action_cond, action_params = _action_sql(action)
        sql += action_cond
        params += action_params
        newest_first: list[list[tuple[Any, ...]]] = []  # per stored row, its matching entries
        found, before, page = 0, None, max(limit, 1)
        while found < limit:
            page_sql, page_params = (sql, params) if before is None else (sql + " AND id<?", [*params, before])
            rows = self._exec(page_sql + " ORDER BY id DESC LIMIT ?", (*page_params, page)).fetchall()
            for r in rows:
                # A create row's fields carry their own source; filter the expanded entries.
                entries = [e for e in expand_rows((r,), decode=True)
                           if (source is None or e[9] == source) and (action is None or e[5] == action)]
                if entries:
                    newest_first.append(entries)
                    found += len(entries)
            if len(rows) < page:
                break
            before = rows[-1][0]
        out = [e for entries in reversed(newest_first) for e in entries]
        return as_dicts(out[-limit:] if limit > 0 else [])

    def max_log_id(self) -> int:
        """The newest merge-log id (0 when the log is empty): a push's high-water mark."""
        return int(self._exec("SELECT max(id) FROM merge_log").scalar() or 0)

    def log_after(self, after_id: int, limit: int, upto_id: int | None = None) -> list[tuple[Any, ...]]:
        """Merge-log rows with id > after_id (and <= upto_id), oldest first: (id, run_id, at, entity_type,
        entity_id, action, field, old JSON, new JSON, source, rule, actor). Rows as stored, one per id (the change
        feed's event ids are these ids): a create row stays one row, read with `create_fields`."""
        sql = self._LOG_COLUMNS + " WHERE id>?"
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
        """Merge-log rows (id, run_id, at, entity_type, entity_id, action, field, old JSON, new JSON, source,
        rule, actor) of these entities, with at <= until / at > after, in id order, per field (create rows
        expanded)."""
        cond, params = "", []
        for sql, val in ((" AND at<=?", until), (" AND at>?", after)):
            if val is not None:
                cond += sql
                params.append(val)
        action_cond, action_params = _action_sql(action)
        rows = self._in_suffix(self._LOG_COLUMNS + " WHERE entity_id IN ({in})" + cond + action_cond, entity_ids,
                               (*params, *action_params))
        out = expand_rows(sorted((tuple(r) for r in rows), key=lambda r: r[0]))
        return out if action is None else [r for r in out if r[5] == action]

    def _in_suffix(self, sql: str, ids: Iterable[Any], suffix: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        """Like _in, with the parameters after the IN list."""
        return self.db.in_chunks(sql, ids, (), suffix)

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
        for r in self._field_rows(field, entity_type, ("set", "clear"), first - 1, batch):
            yield r[0], r[4], r[2], r[7], r[8], r[9], r[1], r[11]

    def _field_rows(self, field: str, entity_type: str, actions: tuple[str, ...], after_id: int,
                    batch: int) -> Iterator[tuple[Any, ...]]:
        """Expanded log rows (LOG_KEYS order, JSON text) of one field's `actions` on one entity type, id > after_id,
        streamed in id order. Create rows are read only when their JSON names the field."""
        marks = ",".join("?" * len(actions))
        like = "%" + dumps(field) + ":%"
        last = after_id
        while True:
            rows = self._exec(self._LOG_COLUMNS + f" WHERE id>? AND entity_type=? AND ((field=? AND action IN "
                              f"({marks})) OR (action='create' AND new_value LIKE ?)) ORDER BY id LIMIT ?",
                              (last, entity_type, field, *actions, like, batch)).fetchall()
            if not rows:
                return
            for r in expand_rows(rows):
                if r[6] == field and r[5] in actions:
                    yield r
            last = rows[-1][0]

    def report_assignment_changes(self, batch: int = 5000) -> Iterator[tuple[int, str | None, str | None, str]]:
        """(asset id, old JSON, new JSON, at) of every logged change of an asset's assigned_to, in log order."""
        for r in self._field_rows("assigned_to", "asset", ("set",), 0, batch):
            yield r[4], r[7], r[8], r[2]
