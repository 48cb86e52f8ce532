"""All SQL lives here. Hot paths use executemany with pre-serialised JSON; queries chunk IN lists."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection

from itam_sync.merge.merger import Override, SourceValues
from itam_sync.model.canonical import EntityType

log = logging.getLogger(__name__)
CHUNK = 500


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
                   "ON CONFLICT (record_id, key, other_entity_id) DO NOTHING", rows)

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
        """rows: (run_id, at, entity_type, entity_id, action, field, old, new, source, rule, actor)."""
        self._many("INSERT INTO merge_log (run_id, at, entity_type, entity_id, action, field, old_value, new_value, "
                   "source, rule, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

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
