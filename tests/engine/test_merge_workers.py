"""A merge decided in worker processes writes exactly what an inline merge writes, and a worker's error keeps nothing.

The scenario (built relative to the pinned clock): a few hundred assets seen by four sources of three types, with
a default order, a field order with a freshness window, `latest` and `union` fields, operator overrides (one
expired), entities no source sees; then a second merge over the stored goldens after values changed, fields
vanished, records went missing, a missing entity came back and overrides were added. Each merge runs on two
copies of the same store, one with `WorkerPool(1)` (inline) and one with `WorkerPool(2)` and parallel_min=1.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from itam_sync import clock
from itam_sync.engine.merge import apply as apply_module
from itam_sync.engine.merge.apply import MergeStats, apply_merge
from itam_sync.engine.merge.decide import MergeInputError
from itam_sync.engine.merge.rules import Rules
from itam_sync.engine.workers import WorkerPool
from itam_sync.model.jsoncodec import dumps
from itam_sync.settings import EntityPrecedence, FieldRuleConfig, PrecedenceConfig
from itam_sync.store import Store

N = 240
TYPES = {"mdm-a": "mdm", "mdm-b": "mdm", "edr": "edr", "sheet": "csv"}
PRECEDENCE = PrecedenceConfig(default=["mdm", "edr", "sheet"], asset=EntityPrecedence(freshness="60d", fields={
    "assigned_to": FieldRuleConfig(order=["sheet", "mdm"], freshness="30d"),
    "last_seen": FieldRuleConfig(strategy="latest"),
    "model": FieldRuleConfig(order=["sheet", "edr", "mdm"])}))


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _fields(src: str, i: int, version: int) -> dict[str, Any]:
    """What source `src` says about device i (version 1: some values changed, some fields gone)."""
    bump = version if i % 5 == 0 else 0
    f: dict[str, Any] = {"serial_number": f"SN{i:05d}", "hostname": f"{src}-host-{i + bump}",
                         "model": f"{src} model {i % 4}", "os_version": f"14.{(i + bump) % 3}",
                         "assigned_to": f"{src}-user{(i + bump) % 9}@example.com",
                         "mac_addresses": [f"aa:00:00:00:{i % 256:02x}:{len(src):02x}"],
                         "last_seen": _iso(clock.now() - timedelta(hours=i % 13 + len(src)))}
    if src == "edr":
        f["agent_version"] = "7.1" if i % 2 else ""  # empty never beats a value
    if version and i % 7 == 0:  # two fields vanish from every source: two `clear` rows, in a fixed order
        del f["os_version"], f["model"]
    return f


def _observed(src: str, i: int) -> str:
    """Some sources are stale (older than the 30d / 60d windows), so fresher lower sources win some fields."""
    days = {"mdm-a": i % 75, "mdm-b": (i * 7) % 50, "edr": i % 20, "sheet": (i * 3) % 45}[src]
    return _iso(clock.now() - timedelta(days=days, minutes=i % 17))


def _sources_of(i: int) -> list[str]:
    if i % 23 == 0:
        return []  # no live source: merged as missing
    return [s for k, s in enumerate(TYPES) if (i + k) % 3 or s == "mdm-a"]


def _build(db: Path) -> tuple[Store, list[int], dict[tuple[str, int], int]]:
    """A store with N assets and their source records (not merged yet)."""
    store = Store.open(f"sqlite:///{db}")
    at = clock.now_iso()
    records: dict[tuple[str, int], int] = {}
    with store.begin(immediate=True) as repo:
        run = repo.runs.create_run("seed", "jsonl", "full", at, 1, "test")
        ids = repo.db.allocate_ids("entities", N)
        repo.entities.insert_entities([(e, "asset") for e in ids], run, at)
        rows = []
        for i, eid in enumerate(ids):
            srcs = _sources_of(i)
            rids = repo.db.allocate_ids("source_records", len(srcs))
            for src, rid in zip(srcs, rids, strict=True):
                records[(src, i)] = rid
                fields = _fields(src, i, 0)
                rows.append((rid, src, "devices", f"{src}-{i}", "asset", f"h{rid}", "{}", dumps(fields), "[]",
                             _observed(src, i), ",".join(fields), run, eid))
        repo.records.insert_records(rows)
        for i in range(0, N, 17):
            # created_at is old (older than every window): an override beats sources whatever their age
            repo.overrides.add_override(ids[i], "hostname", f"OVR-{i}", "test", "alice",
                                        _iso(clock.now() - timedelta(days=400)), None)
        repo.overrides.add_override(ids[3], "model", "expired model", "test", "bob", at,
                                    _iso(clock.now() - timedelta(days=1)))
    return store, ids, records


def _change(store: Store, ids: list[int], records: dict[tuple[str, int], int]) -> None:
    """Between the two merges: new values, vanished fields, records gone missing, one entity back, overrides."""
    at = clock.now_iso()
    with store.begin(immediate=True) as repo:
        run = repo.runs.create_run("seed", "jsonl", "full", at, 1, "test")
        updates = [("h2", "{}", dumps(_fields(src, i, 1)), "[]", _observed(src, (i + 9) % N), "", run, ids[i], rid)
                   for (src, i), rid in sorted(records.items()) if i % 5 == 0 or i % 7 == 0]
        repo.records.update_records(updates)
        repo.records.mark_missing([rid for (src, i), rid in sorted(records.items()) if i % 11 == 0], at)
        back = repo.db.allocate_ids("source_records", 1)[0]  # device 23 had no source: it is seen again
        repo.records.insert_records([(back, "edr", "devices", "edr-23", "asset", "h", "{}",
                                      dumps(_fields("edr", 23, 1)), "[]", _observed("edr", 23), "", run, ids[23])])
        for i in range(1, N, 19):
            repo.overrides.add_override(ids[i], "assigned_to", f"owner{i}@example.com", "loan", "carol", at,
                                        _iso(clock.now() + timedelta(days=5)))


def _merge(store: Store, ids: list[int], pool: WorkerPool, dry_run: bool = False) -> MergeStats:
    at = clock.now_iso()
    # The rules' instant is not the process clock: workers must decide at the instant they are sent.
    rules = Rules(PRECEDENCE, TYPES, clock.now() + timedelta(days=9))
    with store.begin(immediate=True) as repo:
        run = repo.runs.create_run("(merge)", "merge", "merge", at, 1, "test")
        return apply_merge(repo, ids, rules, run, at, dry_run=dry_run, actor="tester", pool=pool, parallel_min=1)


def _tables(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(db) as con:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in ("entities", "merge_log")}


def _stats(s: MergeStats) -> tuple[Any, ...]:
    return s.as_dict(), list(s.changed_fields.items()), s.examples


@pytest.fixture
def pools() -> Iterator[tuple[WorkerPool, WorkerPool]]:
    with WorkerPool(1) as one, WorkerPool(2) as two:
        yield one, two


@pytest.mark.parametrize("help_while_starting", [False, True], ids=["workers-only", "writer-helps"])
def test_workers_write_what_inline_writes(tmp_path: Path, frozen_clock: clock.Clock, monkeypatch: pytest.MonkeyPatch,
                                          pools: tuple[WorkerPool, WorkerPool], help_while_starting: bool) -> None:
    # workers-only: every batch is decided in a worker. writer-helps (the default): the writer decides batches
    # itself until a worker is up, so which process decides which batch varies, and the rows must not.
    monkeypatch.setattr(apply_module, "WRITER_HELPS", help_while_starting)
    monkeypatch.setattr(apply_module, "BATCH", 30)
    one, two = pools
    (store1, ids, records), (store2, ids2, _) = _build(tmp_path / "one.db"), _build(tmp_path / "two.db")
    assert ids == ids2
    first = _stats(_merge(store1, ids, one)), _stats(_merge(store2, ids, two))
    # workers-only: every batch went to the processes; writer-helps: those the writer did not decide itself
    assert one.sent == 0 and (two.sent <= N // 30 if help_while_starting else two.sent == N // 30)
    assert first[0] == first[1]
    after_first = _tables(tmp_path / "one.db")
    assert after_first == _tables(tmp_path / "two.db")
    assert first[0][0]["entities"] == N and first[0][0]["log_rows"] == len(after_first["merge_log"])

    _change(store1, ids, records)
    _change(store2, ids, records)
    dry = _stats(_merge(store1, ids, one, dry_run=True)), _stats(_merge(store2, ids, two, dry_run=True))
    assert dry[0] == dry[1] and dry[0][2]  # examples too
    assert _tables(tmp_path / "one.db") == after_first  # a dry run writes nothing
    second = _stats(_merge(store1, ids, one)), _stats(_merge(store2, ids, two))
    assert second[0] == second[1]
    stored = _tables(tmp_path / "one.db")
    assert stored == _tables(tmp_path / "two.db")
    store1.close()
    store2.close()

    # The scenario exercised what it claims: every kind of log row, and the rules' decisions.
    log = stored["merge_log"][len(after_first["merge_log"]):]
    actions = {r[5] for r in log}
    assert {"set", "clear", "missing", "restored"} <= actions, actions
    assert {r[5] for r in after_first["merge_log"]} == {"create", "set", "missing"}  # set: an override, no source
    clears = [(r[4], r[6]) for r in log if r[5] == "clear"]
    assert clears[:2] == [(ids[7], "model"), (ids[7], "os_version")]  # the old golden's field order
    rules = {r[10] for r in log}
    assert {"manual", "latest", "freshness:30d", "freshness:60d", "precedence:field"} <= rules, rules
    chain = [(r[-2], r[-1]) for r in stored["merge_log"]]
    assert all(prev == chain[k - 1][1] for k, (prev, _h) in enumerate(chain) if k)


def test_a_worker_error_keeps_nothing(tmp_path: Path, frozen_clock: clock.Clock,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store, ids, records = _build(tmp_path / "s.db")
    with sqlite3.connect(tmp_path / "s.db") as con:
        con.execute("UPDATE source_records SET fields='{\"hostname\": ' WHERE id=?", (records[("edr", 200)],))
    before = _tables(tmp_path / "s.db")
    monkeypatch.setattr(apply_module, "BATCH", 20)  # earlier batches are written before the bad one is decided
    monkeypatch.setattr(apply_module, "WRITER_HELPS", False)  # the bad batch is decided in a worker
    with WorkerPool(2) as pool, pytest.raises(MergeInputError) as err:
        _merge(store, ids, pool)
    assert f"source record {records[('edr', 200)]} of connector 'edr' (entity {ids[200]})" in str(err.value)
    assert "itam-sync run edr --full" in str(err.value)
    assert _tables(tmp_path / "s.db") == before
    with sqlite3.connect(tmp_path / "s.db") as con:
        assert con.execute("SELECT count(*) FROM sync_runs WHERE connector='(merge)'").fetchone() == (0,)
    store.close()
