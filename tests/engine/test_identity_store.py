"""Identity through the real runner and store: ambiguous values, splits, releases, registrations, operator
blocks and allows, configured values, with the exact merge-log rows each writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from itam_sync.engine.identifiers import decide, list_identifiers, recheck
from itam_sync.engine.operations import OperationError
from itam_sync.settings import IdentityConfig
from tests.engine.identity_world import World

DOCK = "64:4b:f0:10:20:30"  # a USB-C dock's Ethernet adapter (an OUI no built-in list knows)
D = "mac:644bf0102030"
M1 = {"id": "m1", "serial": "S1AAAA", "macs": ["a4:83:e7:00:00:01", DOCK]}
X = {"id": "x", "serial": "To Be Filled By O.E.M.", "macs": ["a4:83:e7:00:00:0a", DOCK]}
B = {"id": "b", "serial": "S2BBBB", "macs": ["a4:83:e7:00:00:0b", DOCK]}
WHY = "held by records that cannot be one thing: different serial_number (S1AAAA vs S2BBBB)"


def test_a_placeholder_laptop_behind_a_shared_dock_is_split_off_when_the_dock_turns_out_shared(tmp_path: Path) -> None:
    _dock_story(World(tmp_path), tmp_path)


@pytest.mark.postgres
def test_the_dock_story_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    _dock_story(World(tmp_path, url=postgres_url), None)


def _dock_story(w: World, tmp_path: Path | None) -> None:
    w.sync("mdm", devices=[M1])
    e1 = w.entity_of("mdm/devices/m1")
    assert w.log() == [(e1, "link", None, {"record": "mdm/devices/m1", "entity": e1}, "mdm", "new entity")]
    # Nothing says yet that the dock is shared: the placeholder-serial laptop joins on it.
    w.sync("edr", devices=[X])
    assert w.log() == [(e1, "link", None, {"record": "edr/devices/x", "entity": e1}, "edr",
                        "matched mac:644bf0102030")]
    # A second laptop with a real serial reports it: the MAC is ambiguous, the placeholder laptop splits off.
    w.sync("edr", devices=[X, B])
    ex, eb = w.entity_of("edr/devices/x"), w.entity_of("edr/devices/b")
    assert len({e1, ex, eb}) == 3
    amb = {"identifier": D, "origin": "conflict", "records": 3}
    assert w.log() == [
        *[(e, "ambiguous", None, amb, "edr", f"{D} is ambiguous: {WHY}") for e in sorted((e1, ex, eb))],
        (eb, "link", None, {"record": "edr/devices/b", "entity": eb}, "edr", "new entity"),
        (e1, "split", e1, {"record": "edr/devices/x", "entity": ex}, "edr", f"mac:644bf0102030 is ambiguous: {WHY}"),
        (ex, "link", e1, {"record": "edr/devices/x", "entity": ex}, "edr",
         f"split from entity {e1}: mac:644bf0102030 is ambiguous: {WHY}"),
        # The link refused: the laptop with the other serial, against the entity holding the value first by
        # record reference (edr/devices/b).
        (eb, "conflict", None, {"record": "mdm/devices/m1", "key": D}, "edr",
         f"link refused: {D} is shared with entity {eb}: different serial_number (S1AAAA vs S2BBBB)")]
    store = w.store()
    with store.begin() as repo:
        [row] = repo.identity.list_ambiguous("asset")
        assert (row["key"], row["origin"], row["records"], row["entities"], row["reason"]) == (D, "conflict", 3, 3,
                                                                                              WHY)
        assert repo.entities.entity_by_key("asset", D) is None  # an ambiguous value identifies no one asset
        assert repo.entities.goldens([e1])[e1][1]["mac_addresses"][0] == ["a483e7000001", "644bf0102030"]
    store.close()
    if tmp_path is None:
        return
    # The same records in another order, one per batch: the same partition.
    (tmp_path / "other").mkdir()
    other = World(tmp_path / "other", batch_size=1)
    other.sync("edr", devices=[B, X])
    other.sync("mdm", devices=[M1])
    assert other.partition() == w.partition() == {frozenset({"mdm/devices/m1"}), frozenset({"edr/devices/x"}),
                                                  frozenset({"edr/devices/b"})}


def test_a_value_is_usable_again_when_its_evidence_goes(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.sync("mdm", devices=[M1])
    w.sync("edr", devices=[X, B])
    e1, ex, eb = (w.entity_of(f"{s}/devices/{i}") for s, i in (("mdm", "m1"), ("edr", "x"), ("edr", "b")))
    # The laptop with the other serial stops reporting the dock: the placeholder laptop joins the first again.
    w.sync("edr", devices=[X, {**B, "macs": ["a4:83:e7:00:00:0b"]}])
    assert w.log() == [
        (e1, "unambiguous", {"identifier": D}, None, "edr",
         f"{D} is usable again: no longer held by records that cannot be one thing"),
        (e1, "link", ex, {"record": "edr/devices/x", "entity": e1}, "edr", "matched mac:644bf0102030"),
        (e1, "merge", ex, e1, "edr", "joined on mac:644bf0102030")]
    assert w.partition() == {frozenset({"mdm/devices/m1", "edr/devices/x"}), frozenset({"edr/devices/b"})}
    assert w.entity_of("edr/devices/b") == eb
    store = w.store()
    with store.begin() as repo:
        assert repo.identity.list_ambiguous() == []
        assert repo.conflicts.list_conflicts() == []  # the refused link is resolved
    store.close()


def test_a_reimaged_laptop_keeps_one_asset_with_a_stale_registration(tmp_path: Path) -> None:
    w = World(tmp_path, sources=("intune", "defender"))
    old = {"id": "enrol-1", "serial": "5CG1234XYZ", "entra": "11111111-2222-3333-4444-555555555555",
           "macs": ["a4:b1:c2:00:00:01"]}
    new = {**old, "id": "enrol-2", "entra": "99999999-8888-7777-6666-555555555555"}
    w.sync("intune", devices=[old])
    w.sync("defender", devices=[{"id": "m-new", "entra": new["entra"], "macs": ["a4:b1:c2:00:00:01"]}])
    w.sync("intune", devices=[old, new])  # re-imaged: a new Entra device id, the stale enrolment stays
    [one] = w.partition()
    assert one == {"intune/devices/enrol-1", "intune/devices/enrol-2", "defender/devices/m-new"}
    assert w.log() == [(w.entity_of("intune/devices/enrol-1"), "link", None,
                        {"record": "intune/devices/enrol-2", "entity": w.entity_of("intune/devices/enrol-1")},
                        "intune", "matched serial_number:5CG1234XYZ")]
    store = w.store()
    with store.begin() as repo:
        assert repo.identity.list_ambiguous() == [] and repo.conflicts.list_conflicts() == []
    store.close()


def test_cloned_vms_with_one_smbios_uuid_stay_two_assets(tmp_path: Path) -> None:
    w = World(tmp_path)
    uuid = "4211aaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    w.sync("edr", devices=[{"id": "vm-a", "uuid": uuid, "macs": ["00:0c:29:11:22:01"], "instance": "vm-101"},
                           {"id": "vm-b", "uuid": uuid, "macs": ["00:0c:29:11:22:02"], "instance": "vm-102"}])
    assert w.partition() == {frozenset({"edr/devices/vm-a"}), frozenset({"edr/devices/vm-b"})}
    store = w.store()
    with store.begin() as repo:
        [row] = repo.identity.list_ambiguous()
    store.close()
    assert (row["key"], row["origin"]) == (f"hardware_uuid:{uuid}", "conflict")
    assert row["reason"] == "held by records that cannot be one thing: different instance_id (vm-101 vs vm-102)"


def test_a_shared_mailbox_joins_nobody(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.sync("okta", people=[{"id": "u1", "mail": "anna@example.com", "aliases": ["it-desk@example.com"]},
                           {"id": "u2", "mail": "bob@example.com", "aliases": ["it-desk@example.com"]}])
    w.sync("hr", people=[{"id": "E1", "emp": "E1", "mail": "anna@example.com"},
                         {"id": "E2", "emp": "E2", "mail": "bob@example.com"}])
    assert w.partition("person") == {frozenset({"okta/people/u1", "hr/people/E1"}),
                                     frozenset({"okta/people/u2", "hr/people/E2"})}
    store = w.store()
    with store.begin() as repo:
        [row] = repo.identity.list_ambiguous("person")
    store.close()
    assert (row["key"], row["origin"], row["reason"]) == (
        "email:it-desk@example.com", "source", "okta/people reports it on two different records (u1, u2)")


def test_an_operator_blocks_and_allows_a_value(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.sync("mdm", devices=[M1])
    w.sync("edr", devices=[X])
    e1 = w.entity_of("mdm/devices/m1")
    settings = w.settings
    change = decide(w.store(), settings, "64-4B-F0-10-20-30", "block", "the meeting-room dock", actor="ops")
    assert (change.key, change.ambiguous, change.split) == (D, 1, 1)
    ex = w.entity_of("edr/devices/x")
    why = "blocked by ops: the meeting-room dock"
    manual = [r for r in w.log(run="all") if r[4] == "manual"]
    assert manual == [
        *[(e, "ambiguous", None, {"identifier": D, "origin": "operator", "records": 2}, "manual",
           f"{D} is ambiguous: {why}") for e in sorted((e1, ex))],
        (e1, "split", e1, {"record": "edr/devices/x", "entity": ex}, "manual", f"{D} is ambiguous: {why}"),
        (ex, "link", e1, {"record": "edr/devices/x", "entity": ex}, "manual",
         f"split from entity {e1}: {D} is ambiguous: {why}")]
    # Held across runs.
    w.sync("edr", devices=[{**X, "host": "changed"}])
    assert w.entity_of("edr/devices/x") == ex
    [row] = list_identifiers(w.store(), settings)
    assert (row["value"], row["status"], row["origin"], row["scope"], row["records"]) == (
        D, "ambiguous", "operator", "network", 2)
    decide(w.store(), settings, D, "allow", "one laptop's own dock after all", actor="ops")
    assert w.entity_of("edr/devices/x") == e1
    assert [(r[1], r[5]) for r in w.log(run="all") if r[4] == "manual"][-3:] == [
        ("unambiguous", f"{D} is usable again: allowed: one laptop's own dock after all"),
        ("link", "matched mac:644bf0102030"), ("merge", "joined on mac:644bf0102030")]
    [row] = list_identifiers(w.store(), settings)
    assert (row["status"], row["why"]) == ("allowed", "allowed by ops: one laptop's own dock after all")
    with pytest.raises(OperationError, match="needs --reason"):
        decide(w.store(), settings, D, "block", " ")
    with pytest.raises(OperationError, match="is a prefix"):
        decide(w.store(), settings, "64:4b:f0", "block", "all of them")


def test_configured_values_join_nothing_and_are_listed(tmp_path: Path) -> None:
    w = World(tmp_path, identity=IdentityConfig(ambiguous_values=["64:4b:f0"]))
    w.sync("mdm", devices=[M1])
    w.sync("edr", devices=[X])
    assert w.partition() == {frozenset({"mdm/devices/m1"}), frozenset({"edr/devices/x"})}
    [row] = list_identifiers(w.store(), w.settings)
    assert (row["value"], row["origin"], row["why"], row["records"], row["entities"]) == (
        D, "config", "identity.ambiguous_values: 64:4b:f0", 2, 2)
    # Dropping it from the config makes it usable at the next run (the records did not change).
    w.identity = IdentityConfig()
    w.sync("edr", devices=[X, {"id": "y", "serial": "S9", "macs": ["a4:83:e7:00:00:99"]}])
    assert frozenset({"mdm/devices/m1", "edr/devices/x"}) in w.partition()


def test_recheck_repairs_a_partition_decided_by_an_older_version(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.sync("mdm", devices=[M1])
    w.sync("edr", devices=[X, B])
    e1, ex = w.entity_of("mdm/devices/m1"), w.entity_of("edr/devices/x")
    # What the first-come-first-served engine left behind: the placeholder laptop in the first laptop's asset,
    # the dock's MAC usable, its key rows pointing at one entity.
    store = w.store()
    with store.begin() as repo:
        repo.db._exec("UPDATE source_records SET entity_id=? WHERE entity_id=?", (e1, ex))
        repo.db._exec("UPDATE entities SET status='merged', merged_into=? WHERE id=?", (e1, ex))
        repo.db._exec("DELETE FROM entity_keys WHERE entity_id=?", (ex,))
        repo.db._exec("INSERT INTO entity_keys (entity_type, key, entity_id) VALUES ('asset', ?, ?) "
                      "ON CONFLICT DO NOTHING", ("mac:a483e700000a", e1))
        repo.db._exec("DELETE FROM ambiguous_identifiers")
    store.close()
    assert frozenset({"mdm/devices/m1", "edr/devices/x"}) in w.partition()
    change = recheck(w.store(), w.settings, actor="ops")
    assert (change.ambiguous, change.split) == (1, 1)
    assert w.partition() == {frozenset({"mdm/devices/m1"}), frozenset({"edr/devices/x"}),
                             frozenset({"edr/devices/b"})}
    assert recheck(w.store(), w.settings).entities_touched == 0  # nothing left to repair


def test_a_connector_adds_a_key_kind_with_its_scope(tmp_path: Path) -> None:
    w = World(tmp_path, types={"edr": "tagged"})
    w.sync("mdm", devices=[{"id": "m1", "serial": "S1AAAA", "tag": "IT-0042"}])
    # The tagged source knows the tag only: it joins on it; a second tag on one serial is a contradiction.
    w.sync("edr", devices=[{"id": "t1", "tag": "IT-0042"}, {"id": "t2", "tag": "IT-0099", "serial": "S1AAAA"}])
    assert w.partition() == {frozenset({"mdm/devices/m1", "edr/devices/t1"}), frozenset({"edr/devices/t2"})}
    assert ("link", "matched asset_tag:IT-0042") in [(r[1], r[5]) for r in w.log()]
    store = w.store()
    with store.begin() as repo:
        [row] = repo.identity.list_ambiguous()
    store.close()
    assert (row["key"], row["reason"]) == ("serial_number:S1AAAA", "held by records that cannot be one thing: "
                                                                  "different asset_tag (IT-0042 vs IT-0099)")


def test_a_host_name_join_is_undone_when_a_strong_match_arrives(tmp_path: Path) -> None:
    # An MDM record whose serial nobody else reports yet joins an EDR + Defender pair by its host name only;
    # an IdP device with the same serial then gives it a strong match: the host name joins nothing any more
    # (two clusters with strong keys), whatever order the records came in.
    def run(order: tuple[str, ...], where: Path) -> set[frozenset[str]]:
        where.mkdir()
        w = World(where, sources=("edr", "idp", "mdm", "okta"), identity=IdentityConfig(hostname_weak_key=True))
        data = {"edr": [{"id": "c1", "macs": ["18:c0:4d:02:6c:d3"], "host": "WS-5346"}],
                "idp": [{"id": "d1", "entra": "d3cb0f9f-9667-421c-affd-d4e597dea72b", "macs": ["18c04d026cd3"],
                         "host": "ws-5346"}],
                "mdm": [{"id": "m1", "serial": "04M80F7", "host": "WS-5346"}],
                "okta": [{"id": "o1", "serial": "04m80f7"}]}
        for s in order:
            w.sync(s, devices=data[s])
        return w.partition()

    expected = {frozenset({"edr/devices/c1", "idp/devices/d1"}), frozenset({"mdm/devices/m1", "okta/devices/o1"})}
    assert run(("edr", "idp", "mdm", "okta"), tmp_path / "a") == expected
    assert run(("okta", "mdm", "idp", "edr"), tmp_path / "b") == expected
