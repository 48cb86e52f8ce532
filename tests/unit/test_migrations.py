"""The Alembic migrations build exactly the schema the code declares (tables.py)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from itam_sync.store import Store
from itam_sync.store.tables import metadata


def test_migrated_schema_matches_tables(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    store.close()
    assert diff == []


def test_opening_twice_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    Store.open(url).close()
    store = Store.open(url)
    with store.begin() as repo:
        assert repo.counts()["source_records"] == 0
    store.close()
