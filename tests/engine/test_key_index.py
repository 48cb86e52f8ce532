"""The per-run key index (itam_sync/engine/key_index.py) changes nothing but the number of queries: the same
entities, entity_keys, conflicts, ambiguous identifiers, record entities and merge-log rows as without it, over
several runs of small batches with merges, splits, records that change their keys, records marked missing and
operator links and unlinks between runs; its bound holds however small; and every run starts with an empty one.

The runner (owned elsewhere) hands one index per run to every batch's Resolver; these tests do the same by
wrapping `runner.Resolver` with a factory that gives each run id its own index.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from itam_sync import clock
from itam_sync.engine import operations, resolution, runner
from itam_sync.engine.identity import IdentityPolicy
from itam_sync.engine.key_index import KeyIndex
from itam_sync.engine.resolution import RecordToResolve, Resolver
from itam_sync.model.canonical import EntityType
from itam_sync.settings import IdentityConfig
from itam_sync.store import Store
from itam_sync.store.repos.base import dumps
from tests.engine.identity_world import World

SOURCES = ("mdm", "edr", "idp")
DOCK = "64:4b:f0:10:20:30"


class PerRun:
    """Stands in for the runner's `_Staging`: one KeyIndex per run, given to every Resolver of that run."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self.by_run: dict[int | None, KeyIndex] = {}
        self.sizes: list[int] = []  # the index's size after every lookup and write

    def __call__(self, *args: Any, **kwargs: Any) -> Resolver:
        run_id = kwargs["run_id"]
        found = self.by_run.get(run_id)
        if found is None:
            found = self.by_run[run_id] = KeyIndex(self.max_keys)
            assert len(found) == 0
        idx = found
        kwargs.pop("key_index", None)  # the runner's own index: this test's (with its bound) stands in for it
        resolver = Resolver(*args, key_index=idx, **kwargs)
        view = resolver.keys
        sizes = self.sizes

        class Watched:
            def key_entities(self, t: str, keys: Any) -> Any:
                out = view.key_entities(t, keys)
                sizes.append(len(idx))
                return out

            def set_key_pairs(self, t: str, add: Any, remove: Any) -> None:
                view.set_key_pairs(t, add, remove)
                sizes.append(len(idx))

        resolver.keys = Watched()
        return resolver

    def hits(self) -> int:
        return sum(i.stats.hits for i in self.by_run.values())


def without_index(*args: Any, **kwargs: Any) -> Resolver:
    """The runner's Resolver with no key index: what the store alone answers."""
    kwargs.pop("key_index", None)
    return Resolver(*args, **kwargs)


def dump(w: World) -> dict[str, list[tuple[Any, ...]]]:
    """Everything identity writes, exactly (the clock is pinned, so timestamps compare too)."""
    db = sqlite3.connect(w.db)
    try:
        q = {
            "entities": "SELECT id, entity_type, status, merged_into, golden FROM entities ORDER BY id",
            "entity_keys": "SELECT entity_type, key, entity_id FROM entity_keys ORDER BY 1, 2, 3",
            "conflicts": "SELECT * FROM conflicts ORDER BY id",
            "ambiguous": "SELECT * FROM ambiguous_identifiers ORDER BY entity_type, key",
            "records": "SELECT id, connector, source_key, entity_id, missing FROM source_records ORDER BY id",
            "merge_log": "SELECT * FROM merge_log ORDER BY id",
            "manual_links": "SELECT * FROM manual_links ORDER BY id",
        }
        return {name: db.execute(sql).fetchall() for name, sql in q.items()}
    finally:
        db.close()


def _dev(i: str, **kw: Any) -> dict[str, Any]:
    return {"id": i, **kw}


# Each step: (source, devices, people) synced in full, or ("unlink"|"link", record ref, entity-of ref).
MDM_1 = [_dev("m1", serial="SN001A", macs=["a4:00:00:00:00:01"], host="LT-1"),
         _dev("m2", serial="SN002A", macs=["a4:00:00:00:00:02"]),
         _dev("m3", serial="SN003A", macs=[DOCK]),
         _dev("m4", serial="SN004A", macs=[DOCK]),  # the dock on two serials: ambiguous
         _dev("m5", macs=["a4:00:00:00:00:05"]),
         _dev("m6", serial="SN006A", macs=["a4:00:00:00:00:06"]),
         _dev("m7", serial="SN007A"),
         _dev("m8", macs=["a4:00:00:00:00:08"]),  # m7 and m8 are two entities until edr joins them
         _dev("m9", serial="SN009A", macs=["a4:00:00:00:00:09"]),
         _dev("m9b", serial="SN009A", macs=["a4:00:00:00:00:99"]),  # a second enrolment of one machine
         _dev("m22", macs=["a4:00:00:00:00:22"])]
EDR_1 = [_dev("e1", serial="SN001A", macs=["a4:00:00:00:00:01"]),
         _dev("e5", serial="SN005A", macs=["a4:00:00:00:00:05"]),
         _dev("e6", serial="SN006A", macs=["a4:00:00:00:00:06"]),
         _dev("e7", serial="SN007A", macs=["a4:00:00:00:00:08"]),  # merges m7's and m8's entities
         _dev("e9", serial="SN009B", macs=["a4:00:00:00:00:09"]),  # a MAC of SN009A on another serial: conflict
         _dev("e10", serial="SN010A", macs=[DOCK]),
         _dev("e22", serial="SN022A", macs=["a4:00:00:00:00:22"])]  # joins m22 by its MAC
# e22 is re-imaged into another machine: it leaves m22's entity and takes SN022A away from it; e23, later in the
# same run, is the only record with SN022A: a new entity (an index that kept SN022A on m22's entity would join
# it there on the fast path).
EDR_2 = [*[d for d in EDR_1 if d["id"] != "e22"], _dev("e12", serial="SN012A", macs=["a4:00:00:00:00:01"]),
         _dev("e22", serial="SN099A", macs=["a4:00:00:00:00:98"]),
         _dev("e23", serial="SN022A", macs=["a4:00:00:00:00:23"])]
IDP_1 = [_dev("i1", serial="sn001a", entra="0b7c1a52-3f4e-4a7b-9c1d-2e3f4a5b6c7d"),
         _dev("i22", macs=["a4:00:00:00:00:22"]),  # m22's entity has two records: it keeps its id when e22 leaves
         _dev("i2", serial="SN002A"),
         _dev("i11", entra="0b7c1a52-3f4e-4a7b-9c1d-2e3f4a5b6c7d")]
MDM_2 = [d for d in MDM_1 if d["id"] != "m2"]  # m2 is gone: marked missing
MDM_2 = [{**d, "serial": "SN006Z", "macs": ["a4:00:00:00:00:66"]} if d["id"] == "m6" else d
         for d in MDM_2]  # m6 changed its keys: it leaves e6
PEOPLE = [{"id": "p1", "mail": "ann@example.com", "aliases": ["desk@example.com"]},
          {"id": "p2", "mail": "bob@example.com", "aliases": ["desk@example.com"]}]
STEPS: list[tuple[Any, ...]] = [
    ("mdm", MDM_1, PEOPLE),
    ("edr", EDR_1, []),
    ("idp", IDP_1, [{"id": "u1", "mail": "ANN@example.com"}]),
    ("mdm", MDM_2, PEOPLE[:1]),
    ("unlink", "edr/devices/e1", None),  # an operator splits e1 off between runs
    ("link", "edr/devices/e10", "mdm/devices/m4"),  # and pins e10 to m4's entity
    ("edr", EDR_2, []),
    ("mdm", MDM_1, PEOPLE),  # m2 reappears, m6 takes its old keys back
    ("idp", IDP_1[:3], []),
]


def play(w: World, steps: list[tuple[Any, ...]]) -> list[dict[str, list[tuple[Any, ...]]]]:
    """Run the steps; the store's identity state after each."""
    out = []
    for source, a, b in steps:
        if source in ("link", "unlink"):
            store = w.store()
            try:
                if source == "unlink":
                    operations.unlink(store, w.settings, a, "test", actor="tester")
                else:
                    operations.link(store, w.settings, a, str(w.entity_of(b)), "test", actor="tester")
            finally:
                store.close()
        else:
            w.sync(source, devices=a, people=b)
        out.append(dump(w))
    return out


@pytest.fixture
def worlds(tmp_path: Path, frozen_clock: clock.Clock) -> Iterator[tuple[World, World]]:
    (tmp_path / "plain").mkdir()
    (tmp_path / "indexed").mkdir()
    ident = IdentityConfig(hostname_weak_key=True)
    yield (World(tmp_path / "plain", SOURCES, identity=ident, batch_size=1),
           World(tmp_path / "indexed", SOURCES, identity=ident, batch_size=1))


@pytest.mark.parametrize("max_keys", [200_000, 3, 1, 0])
def test_the_index_changes_nothing_but_the_queries(worlds: tuple[World, World], max_keys: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    plain, indexed = worlds
    monkeypatch.setattr(runner, "Resolver", without_index)
    expected = play(plain, STEPS)
    per_run = PerRun(max_keys)
    monkeypatch.setattr(runner, "Resolver", per_run)
    got = play(indexed, STEPS)
    for step, (e, g) in enumerate(zip(expected, got, strict=True)):
        for table in e:
            assert g[table] == e[table], f"step {step} ({STEPS[step][0]}): {table} differs"
    # The story does what it says (else the comparison proves little).
    final = expected[-1]
    assert {r[5] for r in final["merge_log"]} >= {"link", "split", "merge", "ambiguous", "conflict", "unlink"}
    assert any(r[4] for r in expected[3]["records"])  # m2 marked missing
    assert final["manual_links"]
    # Every run had its own index; the bound held after every lookup and write.
    assert len(per_run.by_run) == 6
    assert max(per_run.sizes) <= max_keys
    if max_keys == 3:
        assert max(per_run.sizes) == 3  # the bound was reached, and results did not change
    if max_keys >= 3:
        assert per_run.hits() > 0  # the index answered lookups (not only passed them through)


def test_a_new_run_starts_empty_and_a_kept_index_would_be_stale(worlds: tuple[World, World],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the index must not outlive its run: after an operator's unlink (its own transaction), what a previous
    run's index holds for the record's key is wrong; the next run's fresh index asks the store."""
    _, w = worlds
    per_run = PerRun(200_000)
    monkeypatch.setattr(runner, "Resolver", per_run)
    play(w, STEPS[:3])
    kept = list(per_run.by_run.values())[-1]  # the idp run's index: it looked up serial_number:SN001A
    store = w.store()
    try:
        with store.begin() as repo:
            before = kept.key_entities(repo.identity, "asset", ["serial_number:SN001A"])
            assert before == repo.identity.key_entities("asset", ["serial_number:SN001A"])
        operations.unlink(store, w.settings, "edr/devices/e1", "test", actor="tester")
        with store.begin() as repo:
            now = repo.identity.key_entities("asset", ["serial_number:SN001A"])
            assert kept.key_entities(repo.identity, "asset", ["serial_number:SN001A"]) == before != now
    finally:
        store.close()
    runs_before = set(per_run.by_run)
    w.sync("edr", devices=STEPS[6][1], people=[])  # e12 is new: the run resolves it
    fresh = [i for r, i in per_run.by_run.items() if r not in runs_before]
    assert len(fresh) == 1 and fresh[0] is not kept
    assert fresh[0].stats.misses > 0  # it started empty: its first lookups went to the store


def _resolve(repo: Any, policy: IdentityPolicy, index: KeyIndex | None, next_id: Iterator[int],
             records: list[RecordToResolve]) -> dict[int, int]:
    res = Resolver(repo, policy, lambda _e: next(next_id), run_id=None, at=clock.now_iso(), source="t",
                   key_index=index).resolve(records)
    repo.identity.set_entities_of([(e, rid) for rid, e in res.entity_of.items()])
    return res.entity_of


def test_in_one_transaction_the_index_follows_every_write(tmp_path: Path) -> None:
    """Batches of one transaction through one index: a record that changes its keys and one that bridges two
    entities; after each batch the index answers exactly what the store holds, keys it was asked for before
    included (a stale entry would show here)."""
    store = Store.open(f"sqlite:///{tmp_path / 'one.db'}")
    policy = IdentityPolicy.from_config(IdentityConfig(), {})
    idx = KeyIndex(5)
    keys = ["serial_number:A1", "serial_number:B2", "mac_address:a40000000001", "mac_address:a40000000002",
            "serial_number:C3"]
    try:
        with store.begin(immediate=True) as repo:
            ids = iter(range(1000, 2000))
            rid = iter(range(1, 100))

            def rec(ks: list[str], eid: int | None = None, r: int | None = None, src: str = "s/d") -> RecordToResolve:
                n = next(rid) if r is None else r
                repo.records.insert_records([(n, src.split("/")[0], "d", f"k{n}", "asset", "h", "{}", "{}",
                                              dumps(ks), None, "", None, None)])
                return RecordToResolve(n, EntityType.ASSET, ks, eid, None, f"{src}/k{n}", src)

            def check() -> None:
                truth = repo.identity.key_entities("asset", keys)
                mine = idx.key_entities(repo.identity, "asset", keys)
                assert {k: set(v) for k, v in mine.items()} == truth
                assert len(idx) <= 5

            got = _resolve(repo, policy, idx, ids, [rec(["serial_number:A1", "mac_address:a40000000001"])])
            check()
            got.update(_resolve(repo, policy, idx, ids, [rec(["serial_number:B2", "mac_address:a40000000002"])]))
            check()
            assert got[1] != got[2]
            # A record of another source holding A1 and B2's MAC: it joins one entity, the other key conflicts
            # or joins; whatever identity decides, the index must follow it.
            _resolve(repo, policy, idx, ids, [rec(["serial_number:A1", "mac_address:a40000000002"], src="o/d")])
            check()
            # Record 1 changes its keys: its old ones leave its entity.
            _resolve(repo, policy, idx, ids, [RecordToResolve(1, EntityType.ASSET, ["serial_number:C3"], got[1],
                                                              None, "s/d/k1", "s/d")])
            check()
            assert idx.stats.hits > 0
    finally:
        store.close()


def test_the_index_is_empty_when_made_and_holds_nothing_shared() -> None:
    a, b = KeyIndex(), KeyIndex(2)
    assert len(a) == len(b) == 0 and a.max_keys == 200_000 and b.max_keys == 2
    assert a._types is not b._types and a.stats is not b.stats
    assert (resolution.Resolver.__init__.__kwdefaults__ or {})["key_index"] is None  # no index unless given one
