"""`audit verify` and `audit export` on the demo: the chain holds across runs and operator commands, and a
hand-edited, deleted or inserted merge-log row is caught and named; on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from itam_sync.audit.chain import verify_store
from itam_sync.cli.main import main
from itam_sync.store import Store
from itam_sync.store.chain import GENESIS, row_hash


def _audit(demo, sub: str, *args: str):  # type: ignore[no-untyped-def]
    """`itam-sync audit SUB --config <the demo's config> ARGS...`."""
    return CliRunner().invoke(main, ["audit", sub, "--config", str(demo.config), *args], catch_exceptions=False)


def _verify(demo, *args: str):  # type: ignore[no-untyped-def]
    return _audit(demo, "verify", *args)


def _db(demo) -> sqlite3.Connection:  # type: ignore[no-untyped-def]
    return sqlite3.connect(demo.db)


def test_verify_passes_on_a_fresh_demo_sync(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    result = _verify(demo)
    assert result.exit_code == 0, result.output
    with _db(demo) as db:
        n, last_id, last_hash = db.execute("SELECT count(*), max(id), (SELECT row_hash FROM merge_log ORDER BY id "
                                           "DESC LIMIT 1) FROM merge_log").fetchone()
        assert db.execute("SELECT count(*) FROM merge_log WHERE row_hash IS NULL OR prev_hash IS NULL").fetchone() \
            == (0,)
        assert db.execute("SELECT prev_hash FROM merge_log ORDER BY id LIMIT 1").fetchone() == (GENESIS,)
    assert f"chain intact, {n} rows verified" in result.output
    assert f"chain head: {last_id}:{last_hash}" in result.output


def test_verify_catches_a_hand_edited_row(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    with _db(demo) as db:
        # A first sync logs each entity's fields in one create row: change one field's value inside it.
        rid, body = db.execute("SELECT id, new_value FROM merge_log WHERE action='create' AND new_value LIKE "
                               "'%\"assigned_to\"%' ORDER BY id LIMIT 1").fetchone()
        fields = json.loads(body)
        fields["assigned_to"][0] = "mallory@example.com"
        db.execute("UPDATE merge_log SET new_value=? WHERE id=?", (json.dumps(fields), rid))
    result = _verify(demo)
    assert result.exit_code == 1
    assert f"chain broken at row {rid} (altered)" in result.output
    assert "content does not match its row_hash" in result.output


def test_verify_catches_a_deleted_row(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    with _db(demo) as db:
        ids = [r[0] for r in db.execute("SELECT id FROM merge_log ORDER BY id")]
        victim = ids[len(ids) // 2]
        db.execute("DELETE FROM merge_log WHERE id=?", (victim,))
    result = _verify(demo)
    assert result.exit_code == 1
    assert f"chain broken at row {victim + 1} (deleted)" in result.output
    assert f"rows were deleted before it (after row {victim - 1})" in result.output


def test_verify_catches_inserted_rows(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    cols = "run_id, at, entity_type, entity_id, action, field, old_value, new_value, source, rule, actor"
    with _db(demo) as db:
        last = db.execute("SELECT max(id) FROM merge_log").fetchone()[0]
        # A plain INSERT at the end, as someone with database access would do.
        db.execute(f"INSERT INTO merge_log ({cols}) VALUES (NULL, '2026-11-26T00:00:00Z', 'asset', 7, 'set', "
                   "'assigned_to', NULL, '\"mallory@example.com\"', 'mdm', 'precedence:default', NULL)")
    result = _verify(demo)
    assert result.exit_code == 1
    assert f"chain broken at row {last + 1} (inserted)" in result.output


def test_verify_catches_a_forged_row_slipped_into_the_middle(demo) -> None:  # type: ignore[no-untyped-def]
    """Someone who knows the algorithm renumbers the rows after row k and inserts a correctly hashed row."""
    demo.cli("run", "--full", "-q")
    cols = "run_id, at, entity_type, entity_id, action, field, old_value, new_value, source, rule, actor"
    with _db(demo) as db:
        k = db.execute("SELECT max(id) FROM merge_log").fetchone()[0] // 2
        db.execute("UPDATE merge_log SET id = id + 100000 WHERE id > ?", (k,))
        db.execute("UPDATE merge_log SET id = id - 100000 + 1 WHERE id > 100000")
        prev = db.execute("SELECT row_hash FROM merge_log WHERE id=?", (k,)).fetchone()[0]
        content = (None, "2026-11-26T00:00:00Z", "asset", 7, "set", "assigned_to", None,
                   json.dumps("mallory@example.com"), "mdm", "precedence:default", None)
        db.execute(f"INSERT INTO merge_log (id, {cols}, prev_hash, row_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                   "?, ?, ?, ?)", (k + 1, *content, prev, row_hash(prev, content)))
    result = _verify(demo)
    assert result.exit_code == 1
    assert f"chain broken at row {k + 1} (inserted)" in result.output
    assert f"row {k + 2} chains from row {k}" in result.output


def test_chain_holds_across_runs_and_operator_commands(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    lines = (demo.data / "mdm_devices.jsonl").read_text().replace('"osVersion":"14.6.1"', '"osVersion":"15.1"')
    (demo.data / "mdm_devices.jsonl").write_text(lines)
    assert demo.cli("run", "-q").exit_code == 0
    assert demo.cli("override", "C02FK1ABQ6L4", "location", "Lisbon", "--reason", "office move").exit_code == 0
    assert demo.cli("unlink", "edr/hosts/cs-a2", "--reason", "spare").exit_code == 0
    assert demo.cli("link", "edr/hosts/cs-a2", "serial_number:5CG1234XYZ", "--reason", "same laptop").exit_code == 0
    cfg = yaml.safe_load(demo.config.read_text())
    cfg["precedence"]["asset"]["fields"]["model"] = {"order": ["mdm", "procurement"]}
    demo.config.write_text(yaml.safe_dump(cfg))
    assert demo.cli("merge").exit_code == 0
    assert demo.cli("run", "--full", "-q").exit_code == 0
    with _db(demo) as db:
        actions = {r[0] for r in db.execute("SELECT DISTINCT action FROM merge_log")}
        assert {"link", "set", "clear", "unlink", "conflict"} <= actions
        runs = db.execute("SELECT count(DISTINCT coalesce(run_id, -id)) FROM merge_log").fetchone()[0]
        assert runs >= 6
    result = _verify(demo)
    assert result.exit_code == 0, result.output


def test_export_verifies_on_its_own_and_catches_tampering(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    with _db(demo) as db:
        first_at = db.execute("SELECT max(at) FROM merge_log").fetchone()[0]
    time.sleep(1.05)  # the log's times have second precision
    assert demo.cli("override", "C02FK1ABQ6L4", "location", "Lisbon", "--reason", "office move").exit_code == 0
    with _db(demo) as db:
        later = db.execute("SELECT id, prev_hash, row_hash FROM merge_log WHERE at > ? ORDER BY id", (first_at,)
                           ).fetchall()
    out = tmp_path / "evidence.jsonl"
    since = later[0][0]
    # Only the override's rows: a stretch of the chain whose first row does not start at the genesis hash.
    result = _audit(demo, "export", "--since", _after(first_at), "--output", str(out))
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    header, rows, head = lines[0], lines[1:-1], lines[-1]
    assert header["first_id"] == since and header["prev_hash"] == later[0][1] != GENESIS
    assert [r["id"] for r in rows] == [r[0] for r in later]
    assert head == {"kind": "chain-head", "last_id": later[-1][0], "last_hash": later[-1][2], "rows": len(later)}
    assert f"chain head: {later[-1][0]}:{later[-1][2]}" in result.output
    ok = CliRunner().invoke(main, ["audit", "verify", "--file", str(out)])
    assert ok.exit_code == 0, ok.output
    assert f"{len(later)} rows verified" in ok.output

    def tampered(change) -> Any:  # type: ignore[no-untyped-def]
        bad = tmp_path / "bad.jsonl"
        text = out.read_text().splitlines()
        bad.write_text("\n".join(change(text)) + "\n")
        return CliRunner().invoke(main, ["audit", "verify", "--file", str(bad)])

    def edit(text: list[str]) -> list[str]:
        row = json.loads(text[1])
        row["new_value"] = json.dumps("Porto")
        return [text[0], json.dumps(row), *text[2:]]

    res = tampered(edit)
    assert res.exit_code == 1 and f"chain broken at row {since} (altered)" in res.output
    if len(rows) > 2:
        res = tampered(lambda t: [t[0], t[1], *t[3:]])
        assert res.exit_code == 1 and f"chain broken at row {rows[2]['id']} (deleted)" in res.output
    res = tampered(lambda t: t[:-1])
    assert res.exit_code == 1 and "truncated" in res.output
    res = tampered(lambda t: [t[0], *t[1:-2], t[-1]])  # the last row dropped: the head line no longer matches
    assert res.exit_code == 1 and "chain-head line" in res.output
    # The whole log, and the head of that export as an anchor for later checks.
    full = tmp_path / "all.jsonl"
    assert _audit(demo, "export", "--output", str(full)).exit_code == 0
    head = json.loads(full.read_text().splitlines()[-1])
    assert CliRunner().invoke(main, ["audit", "verify", "--file", str(full)]).exit_code == 0
    anchor = f"{head['last_id']}:{head['last_hash']}"
    assert _verify(demo, "--anchor", anchor).exit_code == 0
    with _db(demo) as db:
        db.execute("DELETE FROM merge_log WHERE id >= ?", (head["last_id"],))  # cut the log's tail
    res = _verify(demo, "--anchor", anchor)
    assert res.exit_code == 1 and "(anchor)" in res.output


def _after(at: str) -> str:
    """One second after a log time."""
    from datetime import datetime, timedelta

    t = datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ") + timedelta(seconds=1)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_verify_and_export_errors_are_one_clear_line(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    res = CliRunner().invoke(main, ["audit", "verify", "--file", str(tmp_path / "nope.jsonl")])
    assert res.exit_code == 2 and "cannot read" in res.output
    (tmp_path / "x.jsonl").write_text("hello\n")
    res = CliRunner().invoke(main, ["audit", "verify", "--file", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "not a merge-log export" in res.output
    res = _audit(demo, "export", "--since", "12/05/2026", "--output", str(tmp_path / "e.jsonl"))
    assert res.exit_code == 2 and "not a date or time" in res.output
    res = _verify(demo, "--anchor", "12")
    assert res.exit_code == 2 and "--anchor" in res.output


@pytest.mark.postgres
def test_chain_on_postgres_with_concurrent_writers(demo, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    demo.config.write_text(demo.config.read_text().replace(f"sqlite:///{demo.db}", postgres_url))
    assert demo.cli("run", "--full", "-q").exit_code == 0
    assert demo.cli("override", "C02FK1ABQ6L4", "location", "Lisbon", "--reason", "office move").exit_code == 0
    assert demo.cli("unlink", "edr/hosts/cs-a2", "--reason", "spare").exit_code == 0
    assert demo.cli("run", "-q").exit_code == 0
    assert _verify(demo).exit_code == 0
    # Two writers at once: each reads the head, waits, writes more. The advisory lock serialises them, so the
    # second chains from the first's last row instead of forking the chain.
    store = Store.open(postgres_url)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with store.begin() as repo:
                barrier.wait()
                for batch in range(3):
                    repo.log.insert_log([(None, "2026-11-26T00:00:00Z", "asset", 1, "set", "location", None,
                                      json.dumps(f"w{n}-{batch}-{i}"), "manual", "test", f"writer{n}")
                                     for i in range(5)])
                    time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    res = verify_store(store)
    assert res.ok, res.problem
    with store.begin() as repo:
        actors = [r[11] for r in repo.log.log_chain_batch(0, 100000) if r[11] in ("writer1", "writer2")]
    assert len(actors) == 30 and actors in (["writer1"] * 15 + ["writer2"] * 15, ["writer2"] * 15 + ["writer1"] * 15)
    # A hand edit on PostgreSQL is caught and named too.
    with store.engine.begin() as conn:
        rid = conn.exec_driver_sql("SELECT min(id) FROM merge_log WHERE action IN ('set', 'create')").scalar()
        conn.exec_driver_sql("UPDATE merge_log SET source='okta-users' WHERE id=%s", (rid,))
    store.close()
    result = _verify(demo)
    assert result.exit_code == 1 and f"chain broken at row {rid} (altered)" in result.output
