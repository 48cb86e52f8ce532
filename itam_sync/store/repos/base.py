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
        for chunk in chunks(items):
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
            for row in rows:
                copy.write_row(row)

    def analyze(self, table: str) -> None:
        """PostgreSQL: refresh the planner's statistics of `table` (seeing this transaction's own rows too).

        A first sync inserts most of entity_keys inside one transaction, which autovacuum cannot see: the planner
        keeps believing the table is tiny and answers each identity lookup (`owners`) by scanning every key of
        the entity type, O(n) per batch. Fresh statistics make it probe the primary key instead."""
        if self.pg and table in ("entity_keys", "source_records", "entities"):
            self._exec(f"ANALYZE {table}")


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
