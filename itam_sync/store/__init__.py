"""The store: tables, migrations, repositories split by aggregate (repos/), leases and the merge-log chain.

Owns all SQL. May import model and settings; never the engine or anything above it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from itam_sync.store.db import open_engine
from itam_sync.store.repos import Repos


class Store:
    """An opened, migrated store. Use `begin()` for a transaction with a Repos."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        return cls(open_engine(url))

    @contextmanager
    def begin(self, immediate: bool = False) -> Iterator[Repos]:
        """A transaction; `immediate` takes the store's write lock up front (sync runs, operator edits): SQLite's
        BEGIN IMMEDIATE, or on PostgreSQL a transaction-scoped advisory lock (`Repos.write_lock`)."""
        with self.engine.connect() as conn:
            if immediate:
                conn = conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                repo = Repos(conn)
                if immediate:
                    repo.db.write_lock()
                yield repo

    @property
    def is_sqlite(self) -> bool:
        """SQLite allows one writer per file; PostgreSQL takes its writer lock only when asked (`write_lock`)."""
        return self.engine.dialect.name == "sqlite"

    def close(self) -> None:
        self.engine.dispose()


__all__ = ["Repos", "Store"]
