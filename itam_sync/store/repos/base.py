"""Plumbing shared by the repositories of one transaction: SQL dialect, id allocation, locks."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection

# The record path's JSON codec (orjson with stdlib fallbacks), re-exported for the repositories and engine.
from itam_sync.model.jsoncodec import dumps as dumps
from itam_sync.model.jsoncodec import dumps_bytes as dumps_bytes
from itam_sync.model.jsoncodec import encode_value as encode_value
from itam_sync.model.jsoncodec import loads as loads

log = logging.getLogger(__name__)
CHUNK = 500
PG_CHUNK = 20_000  # ids per `= ANY(array)` parameter on PostgreSQL
ANALYZE_MIN = 2000  # PostgreSQL: rows a transaction writes to a never-analyzed table before it ANALYZEs it (`grew`)
# PostgreSQL: the tables `analyze` refreshes during a large write, and the columns their queries filter and join
# on (analyzing source_records' wide JSON text columns too costs three times as much and steers no plan).
ANALYZED = {"entity_keys": ("entity_type", "key", "entity_id"),
            "source_records": ("id", "connector", "stream", "entity_id", "missing"),
            "entities": ()}  # all: the web's expression indexes on golden get statistics only from a full ANALYZE
ANALYZE_TARGET = 10  # PostgreSQL: statistics target of those mid-load ANALYZEs (`analyze`)
WRITE_LOCK_KEY = 7_193_004_211  # PostgreSQL advisory lock id of the store's writer lock (any fixed bigint)


def chunks(items: Sequence[Any], n: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class Db:
    """One store connection inside the caller's transaction: SQL dialect, ids, locks, bulk copy."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self._next_id: dict[str, int] = {}
        self._sequence: dict[str, str] = {}  # PostgreSQL: table -> its id sequence's name
        self._written: dict[str, int] = {}  # PostgreSQL: rows this transaction bulk-wrote, per table (`grew`)
        self._analyze_at: dict[str, int] = {}
        self._known: dict[str, int] = {}  # PostgreSQL: the planner's row count of a table when this transaction began

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    def _exec(self, sql: str, params: Any = ()) -> Any:
        return self.conn.exec_driver_sql(self._sql(sql), params)

    def _many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.conn.exec_driver_sql(self._sql(sql), rows)

    def _in(self, sql: str, ids: Iterable[Any], prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """Run `sql` (with one `IN ({in})`) over chunks of `ids`; the chunk's parameters follow `prefix`."""
        yield from self.in_chunks(sql, ids, prefix, ())

    def in_chunks(self, sql: str, ids: Iterable[Any], prefix: tuple[Any, ...],
                  suffix: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        """Run `sql` (with one `IN ({in})`) over `ids`, parameters (*prefix, *chunk, *suffix).

        SQLite: chunks of CHUNK `?` marks (its parameter limit). PostgreSQL: `= ANY(array)`, one parameter for
        up to PG_CHUNK ids: one round trip, and one short statement text psycopg parses once, not hundreds of
        placeholders re-parsed per call."""
        items = list(ids)
        if self.pg:
            sql = sql.replace("IN ({in})", "= ANY({in})").format(**{"in": "?"})
            for chunk in chunks(items, PG_CHUNK):
                yield from self._exec(sql, (*prefix, list(chunk), *suffix)).fetchall()
            return
        for chunk in chunks(items):
            marks = ",".join("?" * len(chunk))
            yield from self._exec(sql.format(**{"in": marks}), (*prefix, *chunk, *suffix)).fetchall()

    def allocate_ids(self, table: str, n: int) -> list[int]:
        """Reserve `n` primary keys (the run holds the write lock on SQLite; PostgreSQL uses the sequence)."""
        if n == 0:
            return []
        if self.pg:
            # The sequence's name is looked up once: pg_get_serial_sequence() inside the query would run per row
            # (10 ms for 5,000 ids instead of 1.5 ms).
            if table not in self._sequence:
                name = self._exec("SELECT pg_get_serial_sequence(?, 'id')", (table,)).scalar()
                self._sequence[table] = name.replace("'", "''")
            rows = self._exec(f"SELECT nextval('{self._sequence[table]}') FROM generate_series(1, ?)", (n,))
            return [r[0] for r in rows.fetchall()]
        if table not in self._next_id:
            self._next_id[table] = (self._exec(f"SELECT max(id) FROM {table}").scalar() or 0) + 1
        start = self._next_id[table]
        self._next_id[table] = start + n
        return list(range(start, start + n))

    def write_lock(self) -> None:
        """Hold the store's writer lock until this transaction ends: one writer at a time on PostgreSQL too.

        SQLite's BEGIN IMMEDIATE already gives that; PostgreSQL takes a transaction-scoped advisory lock, so two
        workers never resolve identities or append to the merge log at the same time (no split entities, one
        hash chain)."""
        if self.pg:
            self._exec("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK_KEY,))

    def lock_named(self, name: str) -> None:
        """Hold a lock on `name` until the transaction ends, so two workers never publish the same thing at
        once: an advisory lock on PostgreSQL; on SQLite the immediate transaction's write lock already is one."""
        if self.pg:
            self._exec("SELECT pg_advisory_xact_lock(hashtext(?))", (f"itam-sync:{name}",))

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """PostgreSQL: bulk-insert `rows` with COPY on this transaction's connection (psycopg 3)."""
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            write = copy.write_row
            for row in rows:
                write(row)

    def _staged(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
        """PostgreSQL: COPY `rows` into a new temporary table shaped like `table`'s `columns`; returns its name.
        The caller drops it when done (ON COMMIT DROP covers an aborted transaction)."""
        tmp = f"_bulk_{table}"
        self._exec(f"CREATE TEMP TABLE {tmp} ON COMMIT DROP AS SELECT {', '.join(columns)} FROM {table} WITH NO DATA")
        self.copy_rows(tmp, columns, rows)
        return tmp

    def copy_insert_ignore(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                           conflict: str) -> None:
        """PostgreSQL: INSERT ... ON CONFLICT (`conflict`) DO NOTHING of many rows: COPY into a temp table, then
        one INSERT ... SELECT (COPY itself cannot skip conflicting rows). conflict="": any unique index."""
        if not rows:
            return
        cols = ", ".join(columns)
        tmp = self._staged(table, columns, rows)
        target = f"({conflict}) " if conflict else ""
        # One round trip: without parameters psycopg sends several statements at once.
        self._exec(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {tmp} ON CONFLICT {target}DO NOTHING; "
                   f"DROP TABLE {tmp}")

    def copy_delete(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """PostgreSQL: `DELETE FROM table WHERE column=value AND ...` for many rows, through a temp table (analyzed,
        so the planner probes `table`'s index per row instead of hashing all of it)."""
        if not rows:
            return
        tmp = self._staged(table, columns, rows)
        match = " AND ".join(f"t.{c}=s.{c}" for c in columns)
        self._exec(f"ANALYZE {tmp}; DELETE FROM {table} AS t USING {tmp} AS s WHERE {match}; DROP TABLE {tmp}")

    def copy_update(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                    also: str = "") -> None:
        """PostgreSQL: `UPDATE table SET column=value, ... [also] WHERE id=...` for many rows: COPY them (the
        last column is `id`) into a temp table, then one UPDATE ... FROM. `also` adds constant assignments.

        The temp table is analyzed and the join bounded by the batch's id range: otherwise the planner guesses
        thousands of rows for the fresh temp table and hash-joins it against a full scan of `table`, once per
        batch (a merge's batches of ids are contiguous, so the range alone leaves few rows to look at)."""
        if not rows:
            return
        ids = [int(r[-1]) for r in rows]
        tmp = self._staged(table, columns, rows)
        sets = ", ".join(f"{c}=s.{c}" for c in columns if c != "id")
        self._exec(f"ANALYZE {tmp}; UPDATE {table} AS t SET {sets}{also} FROM {tmp} AS s WHERE t.id=s.id "
                   f"AND t.id BETWEEN {min(ids)} AND {max(ids)}; DROP TABLE {tmp}")

    def analyze(self, table: str) -> None:
        """PostgreSQL: refresh the planner's statistics of `table` (seeing this transaction's own rows too).

        A first sync inserts most of entity_keys inside one transaction, which autovacuum cannot see: the planner
        keeps believing the table is tiny and answers each identity lookup (`owners`) by scanning every key of
        the entity type, O(n) per batch. Fresh statistics make it probe the primary key instead.

        A small sample (statistics target ANALYZE_TARGET: 3,000 rows instead of 30,000, 8x cheaper) is enough to
        steer those plans while a load runs; the load's rows count as changes, so autovacuum analyzes the table
        in full after it commits."""
        if self.pg and table in ANALYZED:
            columns = ANALYZED[table]
            self._exec(f"SET LOCAL default_statistics_target = {ANALYZE_TARGET}; "
                       f"ANALYZE {table}" + (f" ({', '.join(columns)})" if columns else "") +
                       "; SET LOCAL default_statistics_target TO DEFAULT")

    def grew(self, table: str, n: int) -> None:
        """PostgreSQL: note `n` rows this transaction wrote to `table`; ANALYZE it once they are a tenth of what
        the planner knew of the table (at least ANALYZE_MIN rows), then when they double or pass that size.

        A first load writes and commits rows no statistics describe yet (autovacuum comes later). Without them
        the planner takes a connector whose rows are all new for an empty one and reads "records of these
        entities from this connector" by scanning the connector's records (0.1-0.3 s per batch), and reads the
        merge's "records of these entities" by scanning every live record (0.3 s per 1,000 entities at 100,000
        records). A few ANALYZEs of the columns queries filter on (ANALYZED) fix both plans; a small run into a
        large table analyzes nothing."""
        if not self.pg or not n:
            return
        written = self._written[table] = self._written.get(table, 0) + n
        if table not in self._analyze_at:
            known = int(self._exec("SELECT reltuples FROM pg_class WHERE oid=?::regclass", (table,)).scalar() or 0)
            self._known[table] = max(known, 0)
            self._analyze_at[table] = max(ANALYZE_MIN, known // 10)
        if written >= self._analyze_at[table]:
            self.analyze(table)
            self._analyze_at[table] = max(2 * written, self._known[table])


class RepoBase:
    """Base of the aggregate repositories: SQL helpers over the shared `Db` of one transaction."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.conn = db.conn
        self.pg = db.pg

    def _sql(self, sql: str) -> str:
        return self.db._sql(sql)

    def _exec(self, sql: str, params: Any = ()) -> Any:
        return self.db._exec(sql, params)

    def _many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.db._many(sql, rows)

    def _in(self, sql: str, ids: Iterable[Any], prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        return self.db._in(sql, ids, prefix)

    def allocate_ids(self, table: str, n: int) -> list[int]:
        return self.db.allocate_ids(table, n)
