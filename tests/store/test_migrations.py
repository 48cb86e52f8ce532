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
        assert repo.entities.counts()["source_records"] == 0
    store.close()


def test_migration_files_read_in_revision_order_with_one_head() -> None:
    """Files are named <step>_<revision id>_<what>.py: sorted by name they follow the down_revision chain."""
    import re

    versions = Path(__file__).resolve().parents[2] / "itam_sync" / "store" / "migrations" / "versions"
    files = sorted(versions.glob("[0-9]*.py"))
    chain: list[tuple[str, str | None]] = []
    for f in files:
        text = f.read_text()
        rev = re.search(r'^revision = "([^"]+)"', text, re.M)
        down = re.search(r'^down_revision = (?:"([^"]+)"|None)', text, re.M)
        assert rev and down, f"{f.name}: no revision/down_revision"
        assert f.name.split("_")[1] == rev.group(1), f"{f.name}: the file name must carry revision {rev.group(1)}"
        chain.append((rev.group(1), down.group(1)))
    assert chain[0][1] is None
    for (prev_rev, _), (rev, down) in zip(chain, chain[1:], strict=False):
        assert down == prev_rev, f"revision {rev} follows {down}, but the file before it is {prev_rev}"
    heads = {r for r, _ in chain} - {d for _, d in chain if d}
    assert heads == {chain[-1][0]}
