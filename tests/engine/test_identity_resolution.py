"""Identity resolution: match keys, junk values, byte-swapped UUIDs, over-merge guard, entity merges."""

from __future__ import annotations

from collections.abc import Iterable

from itam_sync.engine.identity import IdentityPolicy, RecordToResolve, resolve
from itam_sync.model.canonical import EntityType
from itam_sync.settings import IdentityConfig

A = EntityType.ASSET


class MemoryIndex:
    """An in-memory KeyIndex that applies resolutions, standing in for the repository."""

    def __init__(self) -> None:
        self.owner: dict[str, int] = {}
        self.next_id = 1

    def owners(self, entity: EntityType, keys: Iterable[str]) -> dict[str, int]:
        return {k: self.owner[k] for k in keys if k in self.owner}

    def keys_of(self, entity_ids: Iterable[int]) -> dict[int, set[str]]:
        ids = set(entity_ids)
        out: dict[int, set[str]] = {}
        for k, e in self.owner.items():
            if e in ids:
                out.setdefault(e, set()).add(k)
        return out

    def new_id(self, _e: EntityType) -> int:
        self.next_id += 1
        return self.next_id - 1

    def run(self, recs: list[RecordToResolve]):  # type: ignore[no-untyped-def]
        res = resolve(recs, self, self.new_id)
        for _, key, eid in res.new_keys:
            self.owner.setdefault(key, eid)
        for frm, into, _, _ in res.merges:
            for k, e in list(self.owner.items()):
                if e == frm:
                    self.owner[k] = into
        return res


POLICY = IdentityPolicy.from_config(IdentityConfig(junk_serials=["PF0000000"], non_matching_macs=["3c:18:a0"]))


def keys(**fields: object) -> list[str]:
    return POLICY.match_keys(A, dict(fields))


def test_match_keys_are_strongest_first_and_skip_junk() -> None:
    assert keys(serial_number="C02FK1ABQ6L4", mac_addresses=["a483e7123456"], instance_id="i-0abc") == [
        "instance_id:i-0abc", "serial_number:C02FK1ABQ6L4", "mac:a483e7123456"]
    assert keys(serial_number="DEFAULTSTRING") == []  # normalised "Default string"
    assert keys(serial_number="PF0000000") == []  # a site-specific placeholder from config
    assert keys(mac_addresses=["3c18a00b7c11"]) == []  # configured dock prefix
    assert keys(mac_addresses=["020000000001"]) == []  # locally administered (randomised) MAC
    assert keys(mac_addresses=["005056aabbcc"]) == []  # VMware virtual NIC


def test_byte_swapped_smbios_uuid_matches() -> None:
    a = keys(hardware_uuid="00112233-4455-6677-8899-aabbccddeeff")
    b = keys(hardware_uuid="33221100-5544-7766-8899-aabbccddeeff")
    assert a == b and a


def test_records_join_on_shared_strong_key_and_junk_serial_joins_by_mac() -> None:
    idx = MemoryIndex()
    r1 = idx.run([RecordToResolve(1, A, keys(serial_number="C02FK1ABQ6L4", mac_addresses=["a483e7123456"]), None)])
    assert r1.new_entities == [(1, "asset")]
    r2 = idx.run([RecordToResolve(2, A, keys(serial_number="C02FK1ABQ6L4"), None),
                  RecordToResolve(3, A, keys(serial_number="To Be Filled By O.E.M.", mac_addresses=["a483e7123456"]),
                                  None)])
    assert [(rid, eid) for rid, eid, _, _ in r2.links] == [(2, 1), (3, 1)]
    assert [why for *_, why in r2.links] == ["matched serial_number:C02FK1ABQ6L4", "matched mac:a483e7123456"]


def test_shared_mac_with_different_serials_is_refused_as_conflict() -> None:
    idx = MemoryIndex()
    idx.run([RecordToResolve(1, A, keys(serial_number="PF3ABCDE", mac_addresses=["a0cec8112233"]), None)])
    res = idx.run([RecordToResolve(2, A, keys(serial_number="PF3ZZZZZ", mac_addresses=["a0cec8112233"]), None)])
    assert res.links[0][1] == 2  # a new entity of its own
    reason = "mac:a0cec8112233 is shared with entity 1: different serial_number (PF3ZZZZZ vs PF3ABCDE)"
    assert res.conflicts == [(2, "mac:a0cec8112233", None, 1, reason)]


def test_record_bridging_two_entities_merges_them() -> None:
    idx = MemoryIndex()
    idx.run([RecordToResolve(1, A, keys(serial_number="SN1"), None),
             RecordToResolve(2, A, keys(mac_addresses=["a4b1c2d3e4f5"]), None)])
    res = idx.run([RecordToResolve(3, A, keys(serial_number="SN1", mac_addresses=["a4b1c2d3e4f5"]), None)])
    assert res.merges == [(2, 1, "mac:a4b1c2d3e4f5", "asset")]
    assert idx.owner["mac:a4b1c2d3e4f5"] == 1


def test_records_without_keys_become_entities_of_their_own() -> None:
    idx = MemoryIndex()
    res = idx.run([RecordToResolve(1, A, [], None), RecordToResolve(2, A, [], None)])
    assert [e for _, e, _, _ in res.links] == [1, 2]
    assert all(why == "new entity (record has no match key)" for *_, why in res.links)


def test_hostname_is_a_weak_key_only_when_enabled_and_never_over_a_strong_key() -> None:
    weak = IdentityPolicy.from_config(IdentityConfig(hostname_weak_key=True))
    idx = MemoryIndex()
    idx.run([RecordToResolve(1, A, weak.match_keys(A, {"serial_number": "SN1", "hostname": "lt-ana"}), None)])
    res = idx.run([RecordToResolve(2, A, weak.match_keys(A, {"hostname": "lt-ana"}), None)])
    assert res.links[0][1] == 1  # joined on the weak key: no strong key says otherwise
    res = idx.run([RecordToResolve(3, A, weak.match_keys(A, {"serial_number": "SN2", "hostname": "lt-ana"}), None)])
    assert res.links[0][1] != 1  # a different serial: a new entity, not a join on the host name
    assert POLICY.match_keys(A, {"hostname": "lt-ana"}) == []


def test_operator_pin_wins_over_keys() -> None:
    idx = MemoryIndex()
    idx.run([RecordToResolve(1, A, keys(serial_number="SN1"), None)])
    res = idx.run([RecordToResolve(2, A, keys(serial_number="SN1"), None, pinned_to=7)])
    assert res.links == [(2, 7, None, "manual link")]
