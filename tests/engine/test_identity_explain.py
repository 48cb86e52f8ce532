"""`explain` both ways: for each source record the key that joined it, and the identifiers it holds that were not
used and why; stale registrations; and the `identifiers` and `suggestions` commands on the demo."""

from __future__ import annotations

import json
from pathlib import Path

from itam_sync.audit.explain import explain
from tests.engine.identity_world import World
from tests.engine.test_identity_store import DOCK, M1, WHY, B, X


def _identity(w: World, ref: str) -> dict[str, dict[str, object]]:
    ex = explain(w.store(), w.settings, str(w.entity_of(ref)))
    return {ri.record: {"joined_by": ri.joined_by, "how": ri.how, "unused": ri.unused, "stale": ri.stale}
            for ri in ex.identity}


def test_explain_says_which_key_joined_each_record_and_why_the_others_were_not_used(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.sync("mdm", devices=[{**M1, "host": "LT-ANNA"}])
    w.sync("edr", devices=[X, B, {"id": "m1-agent", "serial": "s1aaaa", "macs": ["A4-83-E7-00-00-01"]}])
    laptop = _identity(w, "mdm/devices/m1")
    assert laptop == {
        "edr/devices/m1-agent": {"joined_by": "serial_number:S1AAAA", "how": "joined on serial_number:S1AAAA",
                                 "unused": [], "stale": None},
        "mdm/devices/m1": {
            "joined_by": "serial_number:S1AAAA", "how": "joined on serial_number:S1AAAA", "stale": None,
            "unused": [{"value": "mac:644bf0102030", "reason": "ambiguous", "detail": WHY},
                       {"value": "mac:644bf0102030", "reason": "conflicting",
                        "detail": f"mac:644bf0102030 is shared with entity {w.entity_of('edr/devices/b')}: different "
                                  "serial_number (S1AAAA vs S2BBBB)"},
                       {"value": "hostname:lt-anna", "reason": "weak",
                        "detail": "host names are not match keys (identity.hostname_weak_key is off)"}]}}
    placeholder = _identity(w, "edr/devices/x")
    assert placeholder == {"edr/devices/x": {
        "joined_by": None, "how": "the entity's only record", "stale": None,
        "unused": [{"value": "mac:644bf0102030", "reason": "ambiguous", "detail": WHY},
                   {"value": "serial_number:To Be Filled By O.E.M.", "reason": "placeholder",
                    "detail": "a firmware placeholder, not a real serial"}]}}
    assert DOCK  # (the shared dock of these laptops)


def test_a_stale_enrolment_is_shown_as_stale_not_as_a_second_device(tmp_path: Path) -> None:
    w = World(tmp_path, sources=("intune",))
    old = {"id": "enrol-1", "serial": "5CG1234XYZ", "entra": "11111111-2222-3333-4444-555555555555",
           "seen": "2026-01-05T10:00:00Z"}
    new = {**old, "id": "enrol-2", "entra": "99999999-8888-7777-6666-555555555555", "seen": "2026-03-01T10:00:00Z"}
    w.sync("intune", devices=[old, new])
    ids = _identity(w, "intune/devices/enrol-1")
    assert ids["intune/devices/enrol-1"]["stale"] == (
        "stale registration of this hardware (last seen 2026-01-05T10:00:00Z); intune/devices/enrol-2 is the newest "
        "from intune/devices")
    assert ids["intune/devices/enrol-2"]["stale"] is None
    assert ids["intune/devices/enrol-2"]["how"] == "joined on serial_number:5CG1234XYZ"


def test_demo_identifiers_explain_and_suggestions(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    listed = json.loads(demo.cli("identifiers", "--json").output)
    assert [(r["value"], r["kind"], r["scope"], r["status"], r["origin"], r["records"], r["entities"])
            for r in listed] == [("mac:3c18a00b7c11", "mac", "network", "ambiguous", "conflict", 3, 2)]
    assert listed[0]["why"] == ("held by records that cannot be one thing: different serial_number "
                                "(PF3ABCDE vs PF3ZZZZZ)")
    text = demo.cli("explain", "PF3ZZZZZ").output
    assert "identity (why each record is here; identifiers not used and why):" in text
    assert "not used: mac:3c18a00b7c11 (ambiguous: held by records that cannot be one thing" in text
    table = demo.cli("identifiers").output
    assert "mac:3c18a00b7c11" in table and "conflict" not in table.split("mac:3c18a00b7c11")[0]
    blocked = demo.cli("identifiers", "block", "serial_number:PF3ZZZZZ", "--reason", "loaner pool label")
    assert blocked.exit_code == 0, blocked.output
    assert "serial_number:PF3ZZZZZ (asset) blocked" in blocked.output
    rows = json.loads(demo.cli("identifiers", "--json").output)
    assert [(r["value"], r["origin"]) for r in rows] == [("mac:3c18a00b7c11", "conflict"),
                                                        ("serial_number:PF3ZZZZZ", "operator")]
    bad = demo.cli("identifiers", "block", "To Be Filled", "--reason", "x")
    assert bad.exit_code == 2 and "say which kind it is" in bad.output
    sugg = json.loads(demo.cli("suggestions", "--json").output)
    assert isinstance(sugg, list)


def test_an_ambiguous_value_names_no_entity(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    result = demo.cli("explain", "mac:3c18a00b7c11")
    assert result.exit_code == 2
    assert ("mac:3c18a00b7c11 identifies no one asset: it is ambiguous (held by records that cannot be one thing: "
            "different serial_number (PF3ABCDE vs PF3ZZZZZ); held by 2 entities") in result.output
