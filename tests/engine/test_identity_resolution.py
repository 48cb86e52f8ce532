"""Identity resolution, the pure parts: match keys, the scope table, clustering and the ambiguity rules."""

from __future__ import annotations

import itertools
import random

import pytest

from itam_sync.engine.ambiguity import AmbiguityRules, Decision, Holder, PatternError, parse_identifier
from itam_sync.engine.identity import IdentityPolicy, Member, Signatures, cluster
from itam_sync.model.canonical import EntityType
from itam_sync.model.keys import BUILT_IN, KeyKind, KeyKindError, KeyKinds, KeyScope
from itam_sync.settings import IdentityConfig

A = EntityType.ASSET
P = EntityType.PERSON
POLICY = IdentityPolicy.from_config(IdentityConfig(junk_serials=["PF0000000"], non_matching_macs=["3c:18:a0"]))
KINDS = KeyKinds()


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


def test_unused_values_say_why() -> None:
    weak = POLICY.unused_values(A, {"serial_number": "PF0000000", "mac_addresses": ["005056aabbcc", "a483e7123456"],
                                    "hostname": "lt-ana"})
    assert [(u.field, u.value, u.reason) for u in weak] == [
        ("serial_number", "PF0000000", "placeholder"), ("mac_addresses", "005056aabbcc", "non-matching"),
        ("hostname", "lt-ana", "weak")]


def test_byte_swapped_smbios_uuid_matches() -> None:
    a = keys(hardware_uuid="00112233-4455-6677-8899-aabbccddeeff")
    b = keys(hardware_uuid="33221100-5544-7766-8899-aabbccddeeff")
    assert a == b and a


# -- the scope table ----------------------------------------------------------------------------------------
def test_scope_table_names_hardware_and_registration() -> None:
    scope = {k.name: k.scope for k in BUILT_IN if k.entity is A}
    assert scope == {"instance_id": KeyScope.INSTANCE, "serial_number": KeyScope.HARDWARE,
                     "hardware_uuid": KeyScope.HARDWARE, "udid": KeyScope.HARDWARE, "imei": KeyScope.HARDWARE,
                     "entra_device_id": KeyScope.REGISTRATION, "mac": KeyScope.NETWORK, "hostname": KeyScope.WEAK}
    # Only hardware, instance and identity keys refuse a link.
    assert {k.name for k in BUILT_IN if k.single_valued} == {"instance_id", "serial_number", "hardware_uuid",
                                                            "udid", "imei", "employee_id", "sku_id"}
    assert KINDS.scope(A, "~hostname:lt-1") is KeyScope.WEAK
    assert KINDS.scope(P, "email:a@b.c") is KeyScope.ADDRESS


def test_a_connector_adds_a_kind_with_its_scope() -> None:
    tag = KeyKind("asset_tag", A, KeyScope.HARDWARE, ("asset_tag",), "The label on the device.")
    policy = IdentityPolicy.from_config(IdentityConfig(), [tag])
    assert policy.match_keys(A, {"asset_tag": "IT-0042", "serial_number": "SN1"})[-1] == "asset_tag:IT-0042"
    assert policy.kinds.get(A, "asset_tag") == tag
    with pytest.raises(KeyKindError, match="reads 'nope', which is not a canonical asset field"):
        KeyKinds([KeyKind("x", A, KeyScope.HARDWARE, ("nope",))])
    with pytest.raises(KeyKindError, match="declared twice"):
        KeyKinds([tag, KeyKind("asset_tag", A, KeyScope.WEAK, ("asset_tag",))])


# -- clustering ---------------------------------------------------------------------------------------------
def _members(recs: list[tuple[str, list[str]]]) -> list[Member]:
    single = tuple(f"{k.name}:" for k in BUILT_IN if k.single_valued)
    return [Member(i, ref, ref.rsplit("/", 1)[0], tuple(ks), None, sv=frozenset(k for k in ks if k.startswith(single)))
            for i, (ref, ks) in enumerate(recs)]


def _partition(recs: list[tuple[str, list[str]]], blocked: frozenset[str] = frozenset()) -> set[frozenset[str]]:
    ms = _members(recs)
    result = cluster(A, ms, blocked, Signatures(KINDS, A))
    return {frozenset(ms[i].ref for i in c) for c in result.clusters}


def test_records_sharing_a_strong_key_are_one_thing_and_a_junk_serial_joins_by_mac() -> None:
    recs = [("mdm/d/1", ["serial_number:C02", "mac:a483e7123456"]), ("edr/h/1", ["serial_number:C02"]),
            ("edr/h/2", ["mac:a483e7123456"]), ("edr/h/3", ["serial_number:OTHER"])]
    assert _partition(recs) == {frozenset({"mdm/d/1", "edr/h/1", "edr/h/2"}), frozenset({"edr/h/3"})}


def test_an_ambiguous_value_joins_nothing() -> None:
    recs = [("mdm/d/1", ["serial_number:S1", "mac:d0c0"]), ("edr/h/9", ["mac:d0c0"])]
    assert _partition(recs, frozenset({"mac:d0c0"})) == {frozenset({"mdm/d/1"}), frozenset({"edr/h/9"})}


def test_a_chain_that_contradicts_itself_is_split_and_the_link_refused() -> None:
    # S1 -- M -- U -- S2: no single value is held by records with two serials, but the chain would be.
    recs = [("a/x/1", ["serial_number:S1", "mac:m1"]), ("b/x/2", ["mac:m1", "hardware_uuid:u1"]),
            ("c/x/3", ["hardware_uuid:u1", "serial_number:S2"])]
    ms = _members(recs)
    result = cluster(A, ms, frozenset(), Signatures(KINDS, A))
    parts = {frozenset(ms[i].ref for i in c) for c in result.clusters}
    # Keys strongest first: the UUID (hardware) joins b and c before the MAC (network) could join a and b.
    assert parts == {frozenset({"a/x/1"}), frozenset({"b/x/2", "c/x/3"})}
    [(who, key, _, why)] = result.refused
    assert (ms[who].ref, key, why) == ("b/x/2", "mac:m1", "different serial_number (S2 vs S1)")


def test_a_value_held_beside_a_serial_decides_before_a_dock_seen_only_by_serial_less_records() -> None:
    # A placeholder-serial Mac's EDR record holds its own NIC (which Jamf reports with the Mac's serial) and the
    # dock's MAC (which Defender reports for a Dell whose serial only Intune knows, through the Entra device id).
    recs = [("jamf/c/1", ["serial_number:C02MAC", "mac:a4aaaa"]), ("cs/h/9", ["mac:a4aaaa", "mac:d0c0"]),
            ("defender/m/5", ["entra_device_id:e5", "mac:3cbbbb", "mac:d0c0"]),
            ("intune/m/5", ["serial_number:053K270", "entra_device_id:e5", "mac:3ccccc"])]
    ms = _members(recs)
    result = cluster(A, ms, frozenset(), Signatures(KINDS, A))
    assert {frozenset(ms[i].ref for i in c) for c in result.clusters} == {
        frozenset({"jamf/c/1", "cs/h/9"}), frozenset({"defender/m/5", "intune/m/5"})}
    [(who, key, _, why)] = result.refused
    assert (ms[who].ref, key, why) == ("defender/m/5", "mac:d0c0", "different serial_number (053K270 vs C02MAC)")


def test_a_weak_key_joins_only_records_without_strong_keys_and_never_two_entities() -> None:
    one = [("mdm/d/1", ["serial_number:S1", "~hostname:lt-1"]), ("okta/d/1", ["~hostname:lt-1"])]
    assert _partition(one) == {frozenset({"mdm/d/1", "okta/d/1"})}
    two = one + [("mdm/d/2", ["serial_number:S2", "~hostname:lt-1"])]
    assert _partition(two) == {frozenset({"mdm/d/1"}), frozenset({"mdm/d/2"}), frozenset({"okta/d/1"})}


def test_a_weak_key_joins_a_record_no_strong_key_matched() -> None:
    # An Entra device whose id no other source reports (Intune sent the all-zero id) joins by its host name.
    recs = [("entra/d/1", ["entra_device_id:e1", "~hostname:lt-7"]),
            ("intune/m/1", ["serial_number:S7", "mac:a1", "~hostname:lt-7"]), ("cs/h/1", ["serial_number:S7"])]
    assert _partition(recs) == {frozenset({"entra/d/1", "intune/m/1", "cs/h/1"})}
    # Two such records that contradict each other stay apart, and apart from the cluster.
    recs += [("okta/d/1", ["serial_number:S8", "~hostname:lt-7"])]
    assert _partition(recs) == {frozenset({"entra/d/1"}), frozenset({"okta/d/1"}),
                                frozenset({"intune/m/1", "cs/h/1"})}


def test_a_host_name_on_two_registrations_of_one_source_is_ambiguous() -> None:
    assert judge("~hostname:desktop-setup", ("entra/d/1", ["entra_device_id:e1", "~hostname:desktop-setup"]),
                 ("entra/d/2", ["entra_device_id:e2", "~hostname:desktop-setup"])) == (
        "source: entra/d reports it on two different records (1, 2)")


def test_the_partition_does_not_depend_on_member_order() -> None:
    recs = [("a/x/1", ["serial_number:S1", "mac:m1"]), ("b/x/2", ["mac:m1", "hardware_uuid:u1"]),
            ("c/x/3", ["hardware_uuid:u1", "serial_number:S2"]), ("d/x/4", ["mac:m2"]),
            ("e/x/5", ["mac:m2", "serial_number:S3", "~hostname:h"]), ("f/x/6", ["~hostname:h"])]
    expected = _partition(recs)
    for perm in itertools.permutations(recs):
        assert _partition(list(perm)) == expected


# -- ambiguity ----------------------------------------------------------------------------------------------
RULES = AmbiguityRules(KINDS)


def judge(key: str, *holders: tuple[str, list[str]], rules: AmbiguityRules = RULES) -> str | None:
    hs = [Holder(ref, ref.rsplit("/", 1)[0], tuple(ks)) for ref, ks in holders]
    random.Random(7).shuffle(hs)  # the verdict never depends on the order
    v = rules.judge(A, key, hs)
    return None if v is None else f"{v.origin}: {v.reason}"


def test_a_dock_mac_on_two_serials_is_ambiguous() -> None:
    assert judge("mac:d0c0", ("mdm/d/1", ["serial_number:PF3ABCDE", "mac:d0c0"]),
                 ("edr/h/2", ["serial_number:PF3ZZZZZ", "mac:d0c0"]), ("edr/h/3", ["mac:d0c0"])) == (
        "conflict: held by records that cannot be one thing: different serial_number (PF3ABCDE vs PF3ZZZZZ)")


def test_one_source_reporting_a_value_on_two_different_machines_makes_it_ambiguous() -> None:
    # A placeholder-serial laptop and a laptop with a real serial behind one dock: each has its own NIC too.
    assert judge("mac:d0c0", ("edr/h/1", ["serial_number:S1", "mac:aa01", "mac:d0c0"]),
                 ("edr/h/2", ["mac:bb02", "mac:d0c0"])) == "source: edr/h reports it on two different records (1, 2)"
    # Cloned VMs: one SMBIOS UUID, no MAC in common.
    assert judge("hardware_uuid:u1", ("edr/h/1", ["hardware_uuid:u1", "mac:aa01"]),
                 ("edr/h/2", ["hardware_uuid:u1", "mac:bb02"])) == (
        "source: edr/h reports it on two different records (1, 2)")


def test_a_machine_seen_twice_by_one_source_is_not_ambiguous() -> None:
    # A re-imaged placeholder-serial desktop: old and new agent, the same NIC.
    assert judge("mac:aa01", ("edr/h/old", ["mac:aa01"]), ("edr/h/new", ["mac:aa01"])) is None
    # Defender's stale and new machine for a re-enrolled laptop: new Entra device id, the same NICs.
    assert judge("mac:aa01", ("def/m/old", ["entra_device_id:e1", "mac:aa01"]),
                 ("def/m/new", ["entra_device_id:e2", "mac:aa01"])) is None
    # Intune's stale and new enrolment: one serial, two registrations.
    assert judge("serial_number:S1", ("intune/m/old", ["serial_number:S1", "entra_device_id:e1"]),
                 ("intune/m/new", ["serial_number:S1", "entra_device_id:e2"])) is None
    # A docked and an undocked report of one laptop share its own NIC.
    assert judge("serial_number:S1", ("edr/h/a", ["serial_number:S1", "mac:aa01", "mac:d0c0"]),
                 ("edr/h/b", ["serial_number:S1", "mac:aa01"])) is None


def test_two_registrations_never_contradict_a_match() -> None:
    assert judge("serial_number:S1", ("intune/m/1", ["serial_number:S1", "entra_device_id:e1"]),
                 ("defender/m/1", ["serial_number:S1", "entra_device_id:e2"])) is None


def test_configured_and_operator_values() -> None:
    rules = AmbiguityRules(KINDS, ["3c:18:a0", "~hostname:loaner-*", "serial_number:1234567"],
                           {("asset", "mac:0a0b0c0d0e0f"): Decision("block", "shared USB adapter", "ops", "t"),
                            ("asset", "mac:3c18a0000001"): Decision("allow", "a real NIC", "ops", "t")})
    one = ("mdm/d/1", ["mac:x"])
    assert judge("mac:3c18a0123456", one, rules=rules) == "config: identity.ambiguous_values: 3c:18:a0"
    assert judge("~hostname:loaner-07", one, rules=rules) == "config: identity.ambiguous_values: ~hostname:loaner-*"
    assert judge("serial_number:1234567", one, rules=rules) == (
        "config: identity.ambiguous_values: serial_number:1234567")
    assert judge("mac:0a0b0c0d0e0f", one, rules=rules) == "operator: blocked by ops: shared USB adapter"
    assert judge("mac:3c18a0000001", ("mdm/d/1", ["serial_number:S1", "mac:3c18a0000001"]),
                 ("edr/h/1", ["serial_number:S2", "mac:3c18a0000001"]), rules=rules) is None  # allowed


def test_identifiers_are_read_in_any_spelling() -> None:
    assert parse_identifier("3C-18-A0-0B-7C-11", KINDS) == ("mac:3c18a00b7c11", False)
    assert parse_identifier("mac:3C:18:A0:0B:7C:11", KINDS) == ("mac:3c18a00b7c11", False)
    assert parse_identifier("3c:18:a0", KINDS) == ("mac:3c18a0", True)
    assert parse_identifier("serial_number:c02 fk1", KINDS) == ("serial_number:C02FK1", False)
    assert parse_identifier("hostname:Loaner-*", KINDS) == ("~hostname:loaner-", True)
    assert parse_identifier("IT@Example.com", KINDS) == ("email:it@example.com", False)
    with pytest.raises(PatternError, match="say which kind it is"):
        parse_identifier("To Be Filled", KINDS)


def test_a_config_value_that_names_no_kind_is_refused_at_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from itam_sync.settings import ConfigError, load_settings

    cfg = tmp_path / "itam-sync.yaml"
    cfg.write_text("store:\n  url: sqlite:///x.db\nidentity:\n  ambiguous_values:\n    - 3c:18:a0\n"
                   "    - To Be Filled\nconnectors: []\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    problem = " ".join(info.value.problems)
    assert "itam-sync.yaml" in problem and "say which kind it is" in problem
