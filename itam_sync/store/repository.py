"""All SQL lives here. Hot paths use executemany with pre-serialised JSON; queries chunk IN lists."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection

from itam_sync.merge.merger import Override, SourceValues
from itam_sync.model.canonical import EntityType
from itam_sync.store.chain import GENESIS, PG_LOCK_KEY, chain_rows

log = logging.getLogger(__name__)
CHUNK = 500
WRITE_LOCK_KEY = 7_193_004_211  # PostgreSQL advisory lock id of the store's writer lock (any fixed bigint)


# One encoder for the process: json.dumps() with options builds a new encoder per call, which is slow.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)
dumps = _ENCODER.encode
_encode_str = json.encoder.encode_basestring


def encode_value(value: Any) -> str:
    """JSON text of one field value; strings (the common case) skip the general encoder."""
    if type(value) is str:
        return _encode_str(value)
    return dumps(value)


def _chunks(items: Sequence[Any], n: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class Repository:
    """Reads and writes of one store connection (the caller owns the transaction)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self._next_id: dict[str, int] = {}
        # The merge log's chain head, read once per transaction (a Repository lives for one transaction).
        self._log_head: str | None = None

    # -- plumbing ---------------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    def _exec(self, sql: str, params: Any = ()) -> Any:
        return self.conn.exec_driver_sql(self._sql(sql), params)

    def _many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.conn.exec_driver_sql(self._sql(sql), rows)

    def _in(self, sql: str, ids: Iterable[Any], prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """Run `sql` (with one `{in}` placeholder) over chunks of `ids`."""
        items = list(ids)
        for chunk in _chunks(items):
            marks = ",".join("?" * len(chunk))
            yield from self._exec(sql.format(**{"in": marks}), (*prefix, *chunk)).fetchall()

    def allocate_ids(self, table: str, n: int) -> list[int]:
        """Reserve `n` primary keys (the run holds the write lock on SQLite; PostgreSQL uses the sequence)."""
        if n == 0:
            return []
        if self.pg:
            rows = self._exec(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                              "FROM generate_series(1, ?)", (n,)).fetchall()
            return [r[0] for r in rows]
        if table not in self._next_id:
            self._next_id[table] = (self._exec(f"SELECT max(id) FROM {table}").scalar() or 0) + 1
        start = self._next_id[table]
        self._next_id[table] = start + n
        return list(range(start, start + n))

    # -- runs and cursors -------------------------------------------------------------------------
    def create_run(self, connector: str, ctype: str, mode: str, started_at: str, pid: int, host: str) -> int:
        row = self._exec("INSERT INTO sync_runs (connector, connector_type, mode, status, started_at, counts, "
                         "pid, host) VALUES (?, ?, ?, 'running', ?, '{}', ?, ?) RETURNING id",
                         (connector, ctype, mode, started_at, pid, host)).fetchone()
        return int(row[0])

    def finish_run(self, run_id: int, status: str, finished_at: str, duration: float, counts: dict[str, Any],
                   error: str | None) -> None:
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

    def get_cursors(self, connector: str) -> dict[str, Any]:
        rows = self._exec("SELECT stream, cursor FROM connector_state WHERE connector=?", (connector,)).fetchall()
        return {s: json.loads(c) for s, c in rows if c is not None}

    def save_cursor(self, connector: str, stream: str, cursor: Any, run_id: int, at: str) -> None:
        self._exec("INSERT INTO connector_state (connector, stream, cursor, run_id, updated_at) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (connector, stream) DO UPDATE SET "
                   "cursor=excluded.cursor, run_id=excluded.run_id, updated_at=excluded.updated_at",
                   (connector, stream, dumps(cursor), run_id, at))

    # -- staging ----------------------------------------------------------------------------------
    def source_index(self, connector: str) -> dict[tuple[str, str], tuple[int, str, int | None, bool]]:
        """(stream, source_key) -> (record id, content hash, entity id, missing) for one connector."""
        rows = self._exec("SELECT stream, source_key, id, content_hash, entity_id, missing FROM source_records "
                          "WHERE connector=?", (connector,))
        return {(r[0], r[1]): (r[2], r[3], r[4], bool(r[5])) for r in rows}

    def insert_records(self, rows: list[tuple[Any, ...]]) -> None:
        """rows: (id, connector, stream, source_key, entity_type, hash, raw, fields, keys, observed_at, run,
        entity_id)."""
        self._many("INSERT INTO source_records (id, connector, stream, source_key, entity_type, content_hash, raw, "
                   "fields, match_keys, observed_at, first_seen_run, entity_id, last_seen_run, missing) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [(*r, r[-2], False) for r in rows])

    def update_records(self, rows: list[tuple[Any, ...]]) -> None:
        """rows: (hash, raw, fields, keys, observed_at, run, entity_id, id)."""
        self._many("UPDATE source_records SET content_hash=?, raw=?, fields=?, match_keys=?, observed_at=?, "
                   "last_seen_run=?, entity_id=?, missing=?, missing_since=NULL WHERE id=?",
                   [(*r[:7], False, r[7]) for r in rows])

    def mark_missing(self, record_ids: list[int], at: str) -> list[int]:
        """Mark records missing; returns the entities they fed."""
        entity_ids: list[int] = []
        for chunk in _chunks(record_ids):
            marks = ",".join("?" * len(chunk))
            entity_ids += [r[0] for r in self._exec(
                f"SELECT DISTINCT entity_id FROM source_records WHERE id IN ({marks}) AND entity_id IS NOT NULL",
                tuple(chunk)).fetchall()]
            self._exec(f"UPDATE source_records SET missing=?, missing_since=? WHERE id IN ({marks})",
                       (True, at, *chunk))
            # A record the source no longer has cannot be in conflict any more (a re-imaged host's old agent).
            self._exec(f"UPDATE conflicts SET status='resolved' WHERE status='open' AND record_id IN ({marks})",
                       tuple(chunk))
        return entity_ids

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

    # -- identity ---------------------------------------------------------------------------------
    def owners(self, entity: EntityType, keys: Iterable[str]) -> dict[str, int]:
        return {k: e for k, e in self._in("SELECT key, entity_id FROM entity_keys WHERE entity_type=? AND key "
                                          "IN ({in})", keys, (entity.value,))}

    def keys_of(self, entity_ids: Iterable[int]) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        for e, k in self._in("SELECT entity_id, key FROM entity_keys WHERE entity_id IN ({in})", entity_ids):
            out.setdefault(e, set()).add(k)
        return out

    def pins(self, record_ids: Iterable[int]) -> dict[int, int]:
        return {r: e for r, e in self._in("SELECT record_id, entity_id FROM manual_links WHERE record_id IN ({in})",
                                          record_ids)}

    def has_pins(self) -> bool:
        return self._exec("SELECT 1 FROM manual_links LIMIT 1").fetchone() is not None

    def insert_entities(self, rows: list[tuple[int, str]], run_id: int | None, at: str) -> None:
        self._many("INSERT INTO entities (id, entity_type, golden, status, created_run, updated_run, created_at, "
                   "updated_at) VALUES (?, ?, '{}', 'active', ?, ?, ?, ?)",
                   [(i, t, run_id, run_id, at, at) for i, t in rows])

    def insert_keys(self, rows: list[tuple[str, str, int]]) -> None:
        self._many("INSERT INTO entity_keys (entity_type, key, entity_id) VALUES (?, ?, ?) "
                   "ON CONFLICT (entity_type, key) DO NOTHING", rows)

    def set_record_entities(self, rows: list[tuple[int, int]]) -> None:
        """rows: (entity_id, record_id)."""
        self._many("UPDATE source_records SET entity_id=? WHERE id=?", rows)

    def merge_entities(self, from_id: int, into_id: int, run_id: int | None, at: str) -> None:
        self._exec("UPDATE source_records SET entity_id=? WHERE entity_id=?", (into_id, from_id))
        self._exec("UPDATE entity_keys SET entity_id=? WHERE entity_id=?", (into_id, from_id))
        self._exec("UPDATE overrides SET entity_id=? WHERE entity_id=?", (into_id, from_id))
        self._exec("UPDATE manual_links SET entity_id=? WHERE entity_id=?", (into_id, from_id))
        self._exec("UPDATE entities SET status='merged', merged_into=?, golden='{}', updated_run=?, updated_at=? "
                   "WHERE id=?", (into_id, run_id, at, from_id))

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

    def find_record(self, connector: str, stream: str | None, source_key: str) -> list[tuple[Any, ...]]:
        sql = "SELECT id, connector, stream, source_key, entity_id, entity_type FROM source_records " \
              "WHERE connector=? AND source_key=?"
        params: tuple[Any, ...] = (connector, source_key)
        if stream:
            sql += " AND stream=?"
            params += (stream,)
        return [tuple(r) for r in self._exec(sql, params).fetchall()]

    def record(self, record_id: int) -> tuple[Any, ...] | None:
        r = self._exec("SELECT id, connector, stream, source_key, entity_id, entity_type, match_keys "
                       "FROM source_records WHERE id=?", (record_id,)).fetchone()
        return tuple(r) if r else None

    def pin(self, record_id: int, entity_id: int, action: str, reason: str | None, actor: str | None,
            at: str) -> None:
        self._exec("INSERT INTO manual_links (record_id, entity_id, action, reason, actor, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (record_id) DO UPDATE SET entity_id=excluded.entity_id, "
                   "action=excluded.action, reason=excluded.reason, actor=excluded.actor, "
                   "created_at=excluded.created_at", (record_id, entity_id, action, reason, actor, at))

    def move_keys(self, keys: list[str], entity_type: str, entity_id: int) -> None:
        self._many("UPDATE entity_keys SET entity_id=? WHERE entity_type=? AND key=?",
                   [(entity_id, entity_type, k) for k in keys])

    def records_of_entity(self, entity_id: int) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._exec(
            "SELECT id, connector, stream, source_key, match_keys, missing, observed_at FROM source_records "
            "WHERE entity_id=? ORDER BY connector, stream, source_key", (entity_id,)).fetchall()]

    # -- merge ------------------------------------------------------------------------------------
    def add_dirty(self, entity_ids: Iterable[int], run_id: int | None) -> None:
        self._many("INSERT INTO dirty_entities (entity_id, run_id) VALUES (?, ?) ON CONFLICT (entity_id) DO NOTHING",
                   [(e, run_id) for e in entity_ids])

    def dirty_ids(self) -> list[int]:
        return [r[0] for r in self._exec("SELECT entity_id FROM dirty_entities ORDER BY entity_id").fetchall()]

    def clear_dirty(self, entity_ids: list[int]) -> None:
        for chunk in _chunks(entity_ids):
            self._exec(f"DELETE FROM dirty_entities WHERE entity_id IN ({','.join('?' * len(chunk))})", tuple(chunk))

    def entity_sources(self, entity_ids: Iterable[int]) -> dict[int, list[SourceValues]]:
        """Live (not missing) source values of each entity."""
        out: dict[int, list[SourceValues]] = {}
        loads = json.loads
        for e, conn, fields, at, rid in self._live(entity_ids):
            out.setdefault(e, []).append(SourceValues(conn, loads(fields), at, rid))
        return out

    def _live(self, entity_ids: Iterable[int]) -> Iterator[tuple[Any, ...]]:
        items = list(entity_ids)
        for chunk in _chunks(items):
            marks = ",".join("?" * len(chunk))
            yield from self._exec(
                f"SELECT entity_id, connector, fields, observed_at, id FROM source_records "
                f"WHERE entity_id IN ({marks}) AND missing=?", (*chunk, False)).fetchall()

    def goldens(self, entity_ids: Iterable[int]) -> dict[int, tuple[str, dict[str, Any], str]]:
        loads = json.loads
        return {i: (t, loads(g), s) for i, t, g, s in self._in(
            "SELECT id, entity_type, golden, status FROM entities WHERE id IN ({in})", entity_ids)}

    def active_overrides(self, entity_ids: Iterable[int], now: str) -> dict[int, list[Override]]:
        out: dict[int, list[Override]] = {}
        for e, f, v, reason, actor, created, expires in self._in(
                "SELECT entity_id, field, value, reason, actor, created_at, expires_at FROM overrides "
                "WHERE active=? AND entity_id IN ({in}) ORDER BY id", entity_ids, (True,)):
            if expires and expires <= now:
                continue
            out.setdefault(e, []).append(Override(f, json.loads(v), reason, actor, created))
        return out

    def expired_override_entities(self, now: str) -> list[int]:
        """Entities with an override that has expired; their overrides are deactivated."""
        rows = self._exec("SELECT DISTINCT entity_id FROM overrides WHERE active=? AND expires_at IS NOT NULL "
                          "AND expires_at <= ?", (True, now)).fetchall()
        if rows:
            self._exec("UPDATE overrides SET active=? WHERE active=? AND expires_at IS NOT NULL AND expires_at <= ?",
                       (False, True, now))
        return [r[0] for r in rows]

    def add_override(self, entity_id: int, field: str, value: Any, reason: str, actor: str | None, at: str,
                     expires: str | None) -> None:
        self._exec("UPDATE overrides SET active=? WHERE entity_id=? AND field=? AND active=?",
                   (False, entity_id, field, True))
        self._exec("INSERT INTO overrides (entity_id, field, value, reason, actor, created_at, expires_at, active) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (entity_id, field, dumps(value), reason, actor, at, expires,
                                                       True))

    def update_goldens(self, rows: list[tuple[str, str, int | None, str, int]]) -> None:
        """rows: (golden json, status, run_id, at, entity id)."""
        self._many("UPDATE entities SET golden=?, status=?, updated_run=?, updated_at=? WHERE id=?", rows)

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
            self.copy_rows("merge_log", ("run_id", "at", "entity_type", "entity_id", "action", "field", "old_value",
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

    def entity_ids(self, entity_type: str | None = None, status: tuple[str, ...] = ("active", "missing")
                   ) -> list[int]:
        marks = ",".join("?" * len(status))
        sql = f"SELECT id FROM entities WHERE status IN ({marks})"
        params: tuple[Any, ...] = status
        if entity_type:
            sql += " AND entity_type=?"
            params += (entity_type,)
        return [r[0] for r in self._exec(sql + " ORDER BY id", params).fetchall()]

    def records_for_remap(self, after_id: int, limit: int) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._exec(
            "SELECT id, connector, stream, raw, fields, entity_id FROM source_records WHERE id > ? ORDER BY id "
            "LIMIT ?", (after_id, limit)).fetchall()]

    def set_record_fields(self, rows: list[tuple[str, int]]) -> None:
        self._many("UPDATE source_records SET fields=? WHERE id=?", rows)

    # -- queries for people -----------------------------------------------------------------------
    def counts(self) -> dict[str, Any]:
        ent = {f"{t}:{s}": n for t, s, n in self._exec(
            "SELECT entity_type, status, count(*) FROM entities GROUP BY entity_type, status").fetchall()}
        return {
            "entities": ent,
            "source_records": self._exec("SELECT count(*) FROM source_records").scalar(),
            "missing_records": self._exec("SELECT count(*) FROM source_records WHERE missing=?", (True,)).scalar(),
            "open_conflicts": self._exec("SELECT count(*) FROM conflicts WHERE status='open'").scalar(),
            "quarantined": self._exec("SELECT count(*) FROM quarantine").scalar(),
            "merge_log_rows": self._exec("SELECT count(*) FROM merge_log").scalar(),
        }

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

    def iter_entities(self, entity_type: str, batch: int = 1000) -> Iterator[tuple[int, dict[str, Any], str]]:
        """Golden records of one type (not merged-away ones), streamed in id order."""
        last = 0
        while True:
            rows = self._exec("SELECT id, golden, status FROM entities WHERE entity_type=? AND status<>'merged' "
                              "AND id>? ORDER BY id LIMIT ?", (entity_type, last, batch)).fetchall()
            if not rows:
                return
            for i, g, s in rows:
                yield i, json.loads(g), s
            last = rows[-1][0]

    def source_keys_of(self, entity_ids: Iterable[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for e, c, s, k, m in self._in("SELECT entity_id, connector, stream, source_key, missing FROM source_records "
                                      "WHERE entity_id IN ({in}) ORDER BY connector, stream, source_key", entity_ids):
            out.setdefault(e, []).append(f"{c}/{s}/{k}" + (" (missing)" if m else ""))
        return out

    def entity_by_key(self, entity_type: str, key: str) -> int | None:
        r = self._exec("SELECT entity_id FROM entity_keys WHERE entity_type=? AND key=?", (entity_type, key)).fetchone()
        return r[0] if r else None

    # -- web queries ---------------------------------------------------------------------------------
    # Read-only queries of the web UI and REST API (itam_sync/web). Lists page by id (keyset), so page 2,000
    # costs what page 1 costs; searches use entity_keys and the golden-field indexes of migration 0004.
    def _gx(self, field: str) -> str:
        """SQL for the golden value of canonical field `field` (a field name, never user text).

        Written exactly as the expression indexes of migration 0004 so that they serve these queries."""
        if not field.isidentifier():
            raise ValueError(f"not a field name: {field!r}")
        return f"(golden::jsonb -> '{field}' ->> 0)" if self.pg else f"json_extract(golden, '$.{field}[0]')"

    def _prefix(self, expr: str, prefix: str) -> tuple[str, list[Any]]:
        """`expr` starts with `prefix`, in a form the dialect's index serves: a range on SQLite (binary
        collation), LIKE on PostgreSQL (text_pattern_ops indexes, right in any locale)."""
        if self.pg:
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return f"{expr} LIKE ?", [escaped + "%"]
        return f"{expr} >= ? AND {expr} < ?", [prefix, prefix + "\U0010ffff"]

    def _web_where(self, entity_type: str, search: dict[str, Any] | None, equals: dict[str, str],
                   source: str | None, presence: str | None, conflict: bool | None) -> tuple[str, list[Any]]:
        """WHERE clause over `entities e` for the list filters; `search` terms are OR'ed, the rest AND'ed.

        search: {"ids": [int], "key_prefixes": [str], "field_prefixes": [(field, prefix)],
                 "field_contains": [(field, lower-case text)]}  (contains scans: keep it to small sets)."""
        # The type is written as a literal (one of three known names): SQLite uses a partial index only when
        # the query's WHERE names the index's entity type itself, not through a parameter.
        etype = EntityType(entity_type).value
        where = [f"e.entity_type='{etype}'", "e.status<>'merged'"]
        params: list[Any] = []
        if presence:
            where.append("e.status=?")
            params.append(presence)
        for f, v in equals.items():
            where.append(f"{self._gx(f)}=?")
            params.append(v)
        if source:
            where.append("EXISTS (SELECT 1 FROM source_records r WHERE r.entity_id=e.id AND r.connector=?)")
            params.append(source)
        if conflict is not None:
            # Open conflicts are few; the entities on either side of one are "in conflict".
            sub = ("SELECT entity_id FROM conflicts WHERE status='open' AND entity_id IS NOT NULL "
                   "UNION SELECT other_entity_id FROM conflicts WHERE status='open'")
            where.append(f"e.id {'IN' if conflict else 'NOT IN'} ({sub})")
        if search is not None:
            subs: list[str] = []
            sub_params: list[Any] = []
            for kp in search.get("key_prefixes", []):
                cond, p = self._prefix("key", kp)
                subs.append(f"SELECT entity_id FROM entity_keys WHERE entity_type='{etype}' AND {cond}")
                sub_params += p
            for f, fp in search.get("field_prefixes", []):
                cond, p = self._prefix(self._gx(f), fp)
                subs.append(f"SELECT id FROM entities WHERE entity_type='{etype}' AND {cond}")
                sub_params += p
            ors = [f"e.id IN ({' UNION '.join(subs)})"] if subs else []
            ids = list(search.get("ids", []))
            if ids:
                ors.append(f"e.id IN ({','.join('?' * len(ids))})")
                sub_params += ids
            for f, text in search.get("field_contains", []):
                escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                ors.append(f"lower({self._gx(f)}) LIKE ? ESCAPE '\\'")
                sub_params.append(f"%{escaped}%")
            where.append("(" + " OR ".join(ors) + ")" if ors else "1=0")
            params += sub_params
        return " AND ".join(where), params

    def web_entity_page(self, entity_type: str, *, search: dict[str, Any] | None = None,
                        equals: dict[str, str] | None = None, source: str | None = None,
                        presence: str | None = None, conflict: bool | None = None, after: int | None = None,
                        before: int | None = None, limit: int = 50) -> list[tuple[int, dict[str, Any], str]]:
        """One page of golden records in id order: ids > `after`, or the page ending just before `before`.

        Returns up to `limit` + 1 rows (the extra one says another page exists), always in ascending id order
        for `after` and descending for `before` (the caller reverses)."""
        where, params = self._web_where(entity_type, search, equals or {}, source, presence, conflict)
        order = "ASC"
        if before is not None:
            where += " AND e.id<?"
            params.append(before)
            order = "DESC"
        elif after is not None:
            where += " AND e.id>?"
            params.append(after)
        rows = self._exec(f"SELECT e.id, e.golden, e.status FROM entities e WHERE {where} ORDER BY e.id {order} "
                          "LIMIT ?", (*params, limit + 1)).fetchall()
        return [(r[0], json.loads(r[1]), r[2]) for r in rows]

    def web_entity_count(self, entity_type: str, *, search: dict[str, Any] | None = None,
                         equals: dict[str, str] | None = None, source: str | None = None,
                         presence: str | None = None, conflict: bool | None = None, cap: int = 10_000) -> int:
        """How many records match, counting at most `cap` + 1 (a filter over JSON fields scans)."""
        where, params = self._web_where(entity_type, search, equals or {}, source, presence, conflict)
        return int(self._exec(f"SELECT count(*) FROM (SELECT 1 FROM entities e WHERE {where} LIMIT ?) m",
                              (*params, cap + 1)).scalar() or 0)

    def web_entity(self, entity_id: int) -> dict[str, Any] | None:
        """The entity row: type, status, merged_into, golden, created/updated run and time."""
        r = self._exec("SELECT id, entity_type, status, merged_into, golden, created_run, updated_run, created_at, "
                       "updated_at FROM entities WHERE id=?", (entity_id,)).fetchone()
        if r is None:
            return None
        keys = ("id", "entity_type", "status", "merged_into", "golden", "created_run", "updated_run", "created_at",
                "updated_at")
        d = dict(zip(keys, r, strict=True))
        d["golden"] = json.loads(d["golden"] or "{}")
        return d

    def web_sources_of(self, entity_ids: Iterable[int]) -> dict[int, list[tuple[str, str, str, bool]]]:
        """(connector, stream, source key, missing) of the source records feeding each entity."""
        out: dict[int, list[tuple[str, str, str, bool]]] = {}
        for e, c, s, k, m in self._in("SELECT entity_id, connector, stream, source_key, missing FROM source_records "
                                      "WHERE entity_id IN ({in}) ORDER BY connector, stream, source_key", entity_ids):
            out.setdefault(e, []).append((c, s, k, bool(m)))
        return out

    def web_conflicted(self, entity_ids: Iterable[int]) -> set[int]:
        """The entities among `entity_ids` on either side of an open conflict."""
        ids = set(entity_ids)
        rows = self._exec("SELECT entity_id, other_entity_id FROM conflicts WHERE status='open'").fetchall()
        return {e for r in rows for e in r if e in ids}

    def web_records(self, entity_id: int) -> list[dict[str, Any]]:
        """The source records feeding an entity, with their mapped fields and raw record."""
        rows = self._exec("SELECT id, connector, stream, source_key, observed_at, missing, missing_since, "
                          "first_seen_run, last_seen_run, fields, raw, match_keys FROM source_records "
                          "WHERE entity_id=? ORDER BY connector, stream, source_key", (entity_id,)).fetchall()
        keys = ("id", "connector", "stream", "source_key", "observed_at", "missing", "missing_since",
                "first_seen_run", "last_seen_run", "fields", "raw", "match_keys")
        out = []
        for r in rows:
            d = dict(zip(keys, r, strict=True))
            d["missing"] = bool(d["missing"])
            for k in ("fields", "raw", "match_keys"):
                d[k] = json.loads(d[k]) if d[k] else None
            out.append(d)
        return out

    def web_history(self, entity_id: int, before: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """An entity's merge-log rows, newest first, with ids below `before`; up to `limit` + 1 rows."""
        sql = ("SELECT id, run_id, at, entity_type, entity_id, action, field, old_value, new_value, source, rule, "
               "actor FROM merge_log WHERE entity_id=?")
        params: list[Any] = [entity_id]
        if before is not None:
            sql += " AND id<?"
            params.append(before)
        rows = self._exec(sql + " ORDER BY id DESC LIMIT ?", (*params, limit + 1)).fetchall()
        keys = ("id", "run_id", "at", "entity_type", "entity_id", "action", "field", "old", "new", "source", "rule",
                "actor")
        out = []
        for r in rows:
            d = dict(zip(keys, r, strict=True))
            d["old"] = json.loads(d["old"]) if d["old"] is not None else None
            d["new"] = json.loads(d["new"]) if d["new"] is not None else None
            out.append(d)
        return out

    def web_conflicts(self, status: str | None = "open", entity_id: int | None = None, after: int | None = None,
                      limit: int = 50) -> list[dict[str, Any]]:
        """Identity conflicts in id order (ids > `after`), optionally those touching one entity; up to
        `limit` + 1 rows."""
        where: list[str] = []
        params: list[Any] = []
        if status:
            where.append("c.status=?")
            params.append(status)
        if entity_id is not None:
            where.append("(c.entity_id=? OR c.other_entity_id=?)")
            params += [entity_id, entity_id]
        if after is not None:
            where.append("c.id>?")
            params.append(after)
        sql = ("SELECT c.id, c.run_id, c.entity_type, c.key, c.record_id, r.connector, r.stream, r.source_key, "
               "c.entity_id, c.other_entity_id, c.reason, c.status, c.created_at FROM conflicts c "
               "LEFT JOIN source_records r ON r.id=c.record_id")
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._exec(sql + " ORDER BY c.id LIMIT ?", (*params, limit + 1)).fetchall()
        keys = ("id", "run_id", "entity_type", "key", "record_id", "connector", "stream", "source_key", "entity_id",
                "other_entity_id", "reason", "status", "created_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def web_runs(self, before: int | None = None, limit: int = 50, connector: str | None = None,
                 status: str | None = None, run_id: int | None = None) -> list[dict[str, Any]]:
        """Sync runs, newest first (ids below `before`); up to `limit` + 1 rows."""
        where: list[str] = []
        params: list[Any] = []
        for cond, val in (("connector=?", connector), ("status=?", status), ("id<?", before), ("id=?", run_id)):
            if val is not None:
                where.append(cond)
                params.append(val)
        sql = ("SELECT id, connector, connector_type, mode, status, started_at, finished_at, duration_s, counts, "
               "error, host FROM sync_runs")
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._exec(sql + " ORDER BY id DESC LIMIT ?", (*params, limit + 1)).fetchall()
        keys = ("id", "connector", "type", "mode", "status", "started_at", "finished_at", "duration_s", "counts",
                "error", "host")
        out = []
        for r in rows:
            d = dict(zip(keys, r, strict=True))
            d["counts"] = json.loads(d["counts"] or "{}")
            out.append(d)
        return out

    def web_overview(self) -> dict[str, Any]:
        """Dashboard numbers that stay cheap on a large store (the log's size is its highest id: append-only)."""
        ent = {f"{t}:{s}": n for t, s, n in self._exec(
            "SELECT entity_type, status, count(*) FROM entities GROUP BY entity_type, status").fetchall()}
        return {
            "entities": ent,
            "open_conflicts": self._exec("SELECT count(*) FROM conflicts WHERE status='open'").scalar() or 0,
            "quarantined": self._exec("SELECT count(*) FROM quarantine").scalar() or 0,
            "merge_log_last_id": self._exec("SELECT max(id) FROM merge_log").scalar() or 0,
        }

    def web_assets_held(self, refs: list[str], limit: int = 200) -> list[tuple[int, dict[str, Any], str]]:
        """Assets whose golden `assigned_to` is one of `refs` (a person's e-mails and employee id)."""
        if not refs:
            return []
        marks = ",".join("?" * len(refs))
        rows = self._exec(f"SELECT id, golden, status FROM entities WHERE entity_type='asset' AND status<>'merged' "
                          f"AND {self._gx('assigned_to')} IN ({marks}) ORDER BY id LIMIT ?",
                          (*refs, limit)).fetchall()
        return [(r[0], json.loads(r[1]), r[2]) for r in rows]

    # -- reports ----------------------------------------------------------------------------------
    def report_record_sources(self, entity_type: str) -> Iterator[tuple[int, str, str, bool]]:
        """(entity id, connector, stream, missing) of every source record feeding an entity of this type,
        streamed."""
        # The missing flag sits after the large raw/fields columns: read it through the (connector, missing)
        # index instead of from every row, and read only the leading columns of the table itself.
        connectors = [r[0] for r in self._exec("SELECT DISTINCT connector FROM source_records").fetchall()]
        missing: set[int] = set()
        for c in connectors:
            missing.update(r[0] for r in self._exec("SELECT id FROM source_records WHERE connector=? AND missing=?",
                                                    (c, True)).fetchall())
        result = self._exec("SELECT id, entity_id, connector, stream FROM source_records WHERE entity_type=?",
                            (entity_type,))
        while True:
            rows = result.fetchmany(5000)
            if not rows:
                return
            for i, e, c, s in rows:
                if e is not None:
                    yield e, c, s, i in missing

    def report_values(self, entity_type: str, fields: Sequence[str], batch: int = 5000
                      ) -> Iterator[tuple[int, str, list[Any]]]:
        """(id, status, [the golden entry [value, source, observed_at] or None, per field]) of every entity of a
        type that was not merged away, in id order. The database extracts the fields from the golden JSON:
        much cheaper than decoding every whole golden record in Python."""
        for f in fields:
            if not f.isidentifier():
                raise ValueError(f"not a field name: {f!r}")
        if self.pg:
            sql = ("SELECT id, status, jsonb_build_array(" + ", ".join(f"g->'{f}'" for f in fields) + ")::text "
                   "FROM (SELECT id, status, golden::jsonb AS g FROM entities WHERE entity_type=? AND "
                   "status<>'merged' AND id>? ORDER BY id LIMIT ?) s ORDER BY id")
        else:
            sql = ("SELECT id, status, json_array(" + ", ".join(f"json_extract(golden, '$.{f}')" for f in fields)
                   + ") FROM entities WHERE entity_type=? AND status<>'merged' AND id>? ORDER BY id LIMIT ?")
        loads = json.loads
        last = 0
        while True:
            rows = self._exec(sql, (entity_type, last, batch)).fetchall()
            if not rows:
                return
            for i, st, values in rows:
                yield i, st, loads(values)
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

    # -- publishing: sinks, change events, reminders (issue 8) -------------------------------------------
    def lock_named(self, name: str) -> None:
        """Hold a lock on `name` until the transaction ends, so two workers never publish the same thing at
        once: an advisory lock on PostgreSQL; on SQLite the immediate transaction's write lock already is one."""
        if self.pg:
            self._exec("SELECT pg_advisory_xact_lock(hashtext(?))", (f"itam-sync:{name}",))

    def max_log_id(self) -> int:
        """The newest merge-log id (0 when the log is empty): a push's high-water mark."""
        return int(self._exec("SELECT max(id) FROM merge_log").scalar() or 0)

    def sink_state(self, sink: str) -> tuple[int, list[int]]:
        """(last merge-log id pushed, entity ids to retry) of a sink; (0, []) before its first push."""
        row = self._exec("SELECT last_log_id, retry FROM sink_state WHERE sink=?", (sink,)).fetchone()
        return (0, []) if row is None else (int(row[0]), [int(e) for e in json.loads(row[1] or "[]")])

    def save_sink_state(self, sink: str, last_log_id: int, retry: list[int], run_id: int | None, at: str) -> None:
        self._exec("INSERT INTO sink_state (sink, last_log_id, retry, run_id, updated_at) VALUES (?, ?, ?, ?, ?) "
                   "ON CONFLICT (sink) DO UPDATE SET last_log_id=excluded.last_log_id, retry=excluded.retry, "
                   "run_id=excluded.run_id, updated_at=excluded.updated_at",
                   (sink, last_log_id, dumps(sorted(set(retry))), run_id, at))

    def changed_entity_ids(self, after_id: int, upto_id: int, entity_types: Sequence[str]) -> list[int]:
        """Entities of these types with a merge-log row in (after_id, upto_id], sorted."""
        marks = ",".join("?" * len(entity_types))
        rows = self._exec(f"SELECT DISTINCT entity_id FROM merge_log WHERE id>? AND id<=? AND entity_type IN ({marks})",
                          (after_id, upto_id, *entity_types)).fetchall()
        return sorted(r[0] for r in rows)

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

    # -- leases (issue 9): named leases with expiry, the store's writer lock, run history for `serve` ----------
    def write_lock(self) -> None:
        """Hold the store's writer lock until this transaction ends: one writer at a time on PostgreSQL too.

        SQLite's BEGIN IMMEDIATE already gives that; PostgreSQL takes a transaction-scoped advisory lock, so two
        workers never resolve identities or append to the merge log at the same time (no split entities, one
        hash chain)."""
        if self.pg:
            self._exec("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK_KEY,))

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """PostgreSQL: bulk-insert `rows` with COPY on this transaction's connection (psycopg 3)."""
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def analyze(self, table: str) -> None:
        """PostgreSQL: refresh the planner's statistics of `table` (seeing this transaction's own rows too).

        A first sync inserts most of entity_keys inside one transaction, which autovacuum cannot see: the planner
        keeps believing the table is tiny and answers each identity lookup (`owners`) by scanning every key of
        the entity type, O(n) per batch. Fresh statistics make it probe the primary key instead."""
        if self.pg and table in ("entity_keys", "source_records", "entities"):
            self._exec(f"ANALYZE {table}")

    def record_entities(self, record_ids: Iterable[int]) -> dict[int, int | None]:
        """record id -> its entity now (a run that read its index before taking the writer lock re-reads it)."""
        return {r: e for r, e in self._in("SELECT id, entity_id FROM source_records WHERE id IN ({in})", record_ids)}

    def lease_acquire(self, name: str, holder: str, now: str, expires_at: str) -> bool:
        """Take lease `name` if it is free, expired or already ours; True if `holder` holds it now. Atomic: the
        upsert only overwrites an expired row or our own, and RETURNING says whether it wrote."""
        row = self._exec(
            "INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET holder=excluded.holder, acquired_at=excluded.acquired_at, "
            "expires_at=excluded.expires_at WHERE leases.expires_at < ? OR leases.holder = excluded.holder "
            "RETURNING holder", (name, holder, now, expires_at, now)).fetchone()
        return row is not None and row[0] == holder

    def lease_take_over(self, name: str, dead_holder: str, holder: str, now: str, expires_at: str) -> bool:
        """Take lease `name` from `dead_holder` (a process known to be gone) if it still holds it."""
        return bool(self._exec("UPDATE leases SET holder=?, acquired_at=?, expires_at=? WHERE name=? AND holder=?",
                               (holder, now, expires_at, name, dead_holder)).rowcount == 1)

    def lease_renew(self, name: str, holder: str, expires_at: str) -> bool:
        """Push our lease's expiry out; False if we no longer hold it."""
        return bool(self._exec("UPDATE leases SET expires_at=? WHERE name=? AND holder=?",
                               (expires_at, name, holder)).rowcount == 1)

    def lease_release(self, name: str, holder: str) -> None:
        self._exec("DELETE FROM leases WHERE name=? AND holder=?", (name, holder))

    def lease_get(self, name: str) -> tuple[str, str, str, str] | None:
        """(name, holder, acquired_at, expires_at) of lease `name`, or None when nobody holds it."""
        r = self._exec("SELECT name, holder, acquired_at, expires_at FROM leases WHERE name=?", (name,)).fetchone()
        return (r[0], r[1], r[2], r[3]) if r else None

    def lease_list(self) -> list[tuple[str, str, str, str]]:
        return [(r[0], r[1], r[2], r[3]) for r in self._exec(
            "SELECT name, holder, acquired_at, expires_at FROM leases ORDER BY name").fetchall()]

    def lease_held(self, name: str, holder: str) -> bool:
        """Fence before a commit: does `holder` still hold `name`? PostgreSQL locks the row until the transaction
        ends, so nobody can take the lease between this check and the commit."""
        sql = "SELECT holder FROM leases WHERE name=?" + (" FOR UPDATE" if self.pg else "")
        r = self._exec(sql, (name,)).fetchone()
        return r is not None and r[0] == holder

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

    # -- audit chain ------------------------------------------------------------------------------
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

    # -- time travel ------------------------------------------------------------------------------
    _LOG_COLUMNS = ("SELECT id, run_id, at, entity_type, entity_id, action, field, old_value, new_value, source, "
                    "rule, actor FROM merge_log")

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
        for chunk in _chunks(items):
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

    def entity_row(self, entity_id: int) -> tuple[str, str, int | None, str | None] | None:
        """(entity_type, status, merged_into, created_at) of one entity."""
        r = self._exec("SELECT entity_type, status, merged_into, created_at FROM entities WHERE id=?",
                       (entity_id,)).fetchone()
        return (r[0], r[1], r[2], r[3]) if r else None

    def entity_ids_created(self, entity_type: str, until: str, after_id: int, limit: int) -> list[int]:
        """Ids of entities of a type created at or before `until` (merged-away ones too), in id order."""
        return [r[0] for r in self._exec(
            "SELECT id FROM entities WHERE entity_type=? AND (created_at IS NULL OR created_at<=?) AND id>? "
            "ORDER BY id LIMIT ?", (entity_type, until, after_id, limit)).fetchall()]

