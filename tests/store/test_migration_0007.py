"""Migration 0007 collapses the quarantine's repeated rows into one per record and fills `filled`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from itam_sync.store import Store
from itam_sync.store.db import MIGRATIONS, _alembic_config


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_repeated_quarantine_rows_collapse_and_filled_is_derived(tmp_path: Path, dialect: str,
                                                                 request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}" if dialect == "sqlite" else request.getfixturevalue("postgres_url")
    source = next((MIGRATIONS / "versions").glob("*_0007_*.py")).read_text()
    before = re.search(r'^down_revision = "([^"]+)"', source, re.M).group(1)  # type: ignore[union-attr]
    engine = create_engine(url)
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, before)
        for run in (1, 2, 3):  # one broken record, quarantined by three runs; and a keyless line twice
            conn.execute(text("INSERT INTO quarantine (run_id, connector, stream, source_key, reason, raw, created_at) "
                              "VALUES (:r, 'okta', 'users', '00u1', :why, '{}', :at)"),
                         {"r": run, "why": f"bad date (run {run})", "at": f"2026-11-0{run}T00:00:00Z"})
        for run in (1, 2):
            conn.execute(text("INSERT INTO quarantine (run_id, connector, stream, source_key, reason, created_at) "
                              "VALUES (:r, 'hr', 'people', NULL, 'no source key', '2026-11-01T00:00:00Z')"),
                         {"r": run})
        conn.execute(text("INSERT INTO source_records (id, connector, stream, source_key, entity_type, content_hash, "
                          "raw, fields, match_keys, missing) VALUES (1, 'hr', 'people', 'E1', 'person', 'h', '{}', "
                          "'{\"email\":\"a@b.c\",\"status\":\"active\"}', '[]', false)"))
    engine.dispose()

    store = Store.open(url)  # migrates to the head
    with store.begin() as repo:
        rows = repo.quarantine.list_quarantine()
        assert sorted(repo.records.source_index("hr")[("people", "E1")][4].split(",")) == ["email", "status"]
    store.close()
    okta = [r for r in rows if r[2] == "okta"]
    assert len(okta) == 1
    (_id, run_id, _c, _s, key, reason, _pos, count, status, first_at, _last) = okta[0]
    assert (run_id, key, reason, count, status, first_at) == (3, "00u1", "bad date (run 3)", 3, "open",
                                                                "2026-11-01T00:00:00Z")
    assert len([r for r in rows if r[2] == "hr"]) == 2  # keyless rows were never tied to one record
