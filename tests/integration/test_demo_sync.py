"""The bundled demo end to end: five messy sources become one golden record per real asset and person."""

from __future__ import annotations

import json

from tests_helpers import golden_by_key  # type: ignore[import-not-found]


def test_demo_full_sync_builds_golden_records(demo) -> None:  # type: ignore[no-untyped-def]
    result = demo.cli("run", "--full", "--quiet")
    assert result.exit_code == 0, result.output
    store = demo.store()
    with store.begin() as repo:
        counts = repo.entities.counts()
        # 6 MDM devices + the EDR-only loaner and server + 2 procurement-only orders = 10 assets.
        assert counts["entities"] == {"asset:active": 10, "person:active": 6}
        assert counts["open_conflicts"] == 1
        assert counts["quarantined"] == 1
        laptop = golden_by_key(repo, "asset", "serial_number:C02FK1ABQ6L4")
        # Serial in three spellings ("C02FK1ABQ6L4", "c02f k1ab q6l4", "C02FK1ABQ6L4 ") is one laptop.
        assert sorted(r.split("/")[0] for r in repo.entities.source_keys_of([laptop["_id"]])[laptop["_id"]]) == [
            "edr", "mdm", "procurement"]
        # Reassigned: procurement's 2023 hand-out to Ana is older than 90 days, MDM says Bob now.
        assert laptop["assigned_to"] == ["bob.li@example.com", "mdm", "2026-11-25T07:45:00Z"]
        assert laptop["purchase_cost"][:2] == [2499.0, "procurement"]
        assert laptop["mac_addresses"][0] == ["a483e7123456"]
        # The desktop with a junk serial joined its EDR record by MAC (dash vs bare format).
        desktop = golden_by_key(repo, "asset", "mac:001b638445e6")
        assert desktop["hostname"][0] == "dt-eve-01"
        assert desktop["edr_protected"][0] is True and desktop["mdm_managed"][0] is True
        assert "serial_number" not in desktop
        # People: HR wins department and status; Bob's upper-case Okta e-mail joined his HR record.
        carla = golden_by_key(repo, "person", "employee_id:E1003")
        assert carla["status"][:2] == ["terminated", "hr"]
        bob = golden_by_key(repo, "person", "email:bob.li@example.com")
        assert bob["employee_id"][0] == "E1002"
        assert bob["department"][:2] == ["Engineering", "hr"]
    store.close()


def test_demo_shared_dock_mac_is_a_conflict_not_a_merge(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "--quiet")
    result = demo.cli("conflicts", "--json")
    rows = json.loads(result.output)
    assert len(rows) == 1
    assert rows[0]["key"] == "mac:3c18a00b7c11"
    assert rows[0]["source_key"] == "cs-a5"
    assert "different serial_number (PF3ZZZZZ vs PF3ABCDE)" in rows[0]["reason"]
    store = demo.store()
    with store.begin() as repo:
        loaner = golden_by_key(repo, "asset", "serial_number:PF3ZZZZZ")
        dev = golden_by_key(repo, "asset", "serial_number:PF3ABCDE")
        assert loaner["_id"] != dev["_id"]
        # The loaner (procurement + EDR) keeps its own golden record.
        assert loaner["lifecycle_state"][0] == "in_stock"
    store.close()


def test_demo_summary_prints_counts_and_log(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "--quiet")
    out = demo.cli("summary").output
    assert "assets" in out and "10" in out
    assert "open conflicts" in out
    assert "freshness:90d" in out  # the reassigned laptop's holder, decided by the freshness window
