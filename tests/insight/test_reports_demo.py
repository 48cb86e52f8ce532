"""`itam-sync report` on the demo data: exact rows for every report, and the JSON / CSV / table outputs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def synced(demo):  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    return demo


def _report(demo, name: str, *args: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    result = demo.cli("report", name, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def _label(r: dict[str, Any]) -> str:
    return str(r["serial_number"] or r["hostname"] or r["model"])


def test_coverage_gaps_on_the_demo(synced) -> None:  # type: ignore[no-untyped-def]
    rep = _report(synced, "coverage-gaps")
    assert [(r["gap"], _label(r)) for r in rep["rows"]] == [
        # Carla's MacBook Air is in the MDM but has no EDR agent (Ana's iPhone neither, but phones run none).
        ("mdm-without-edr", "FVFXC2ABJ1WK"),
        # The EDR-only loaner is protected but not managed (the build server too, but servers are not MDM'd).
        ("edr-not-managed", "PF3ZZZZZ"),
        # Ordered, bought, never seen by the MDM or the EDR (the Dell's serial "0" is a placeholder).
        ("procured-never-seen", "PF9NEW001"),
        ("procured-never-seen", "Latitude 5440"),
    ]
    assert rep["rows"][2]["lifecycle_state"] == "ordered" and rep["rows"][2]["seen_by"] == ["procurement"]
    # Every demo connector has a role; the phone and the server are left out, and the notes say so.
    assert rep["notes"] == ["1 assets of kinds not in reports.coverage.edr_expected are not counted as mdm-without-edr",
                            "1 assets of kinds not in reports.coverage.mdm_expected are not counted as edr-not-managed"]
    # Configured to expect them, they are gaps again.
    synced.config.write_text(synced.config.read_text() + "\nreports:\n  coverage:\n"
                             "    edr_expected: [laptop, desktop, server, mobile]\n"
                             "    mdm_expected: [laptop, desktop, server, mobile]\n")
    assert [(r["gap"], r["hostname"]) for r in _report(synced, "coverage-gaps")["rows"]][:4] == [
        ("mdm-without-edr", "lt-carla-mba"), ("mdm-without-edr", "ph-ana"), ("edr-not-managed", "lt-loaner-07"),
        ("edr-not-managed", "srv-build-01")]


def test_offboarding_unowned_and_stale_on_the_demo(synced) -> None:  # type: ignore[no-untyped-def]
    rows = _report(synced, "offboarding")["rows"]
    # Carla is terminated (HR) and still holds her MacBook Air; Frank is suspended but holds nothing.
    assert [(r["serial_number"], r["assigned_to"], r["holder_name"], r["holder_status"], r["holder_end_date"],
             r["holder_department"], r["purchase_cost"]) for r in rows] == [
        ("FVFXC2ABJ1WK", "carla.diaz@example.com", "Carla Diaz", "terminated", "2026-10-31", "Sales", 999.0)]
    rows = _report(synced, "unowned")["rows"]
    assert [(r["hostname"], r["kind"], r["sources"]) for r in rows] == [("srv-build-01", "server", ["edr"])]
    rep = _report(synced, "stale-devices", "--days", "20", "--now", "2026-11-26T12:00:00Z")
    assert rep["params"] == {"days": 20}
    assert [(r["serial_number"], r["last_seen"], r["days_since_seen"], r["last_seen_source"]) for r in rep["rows"]] \
        == [("FVFXC2ABJ1WK", "2026-10-30T12:00:00Z", 27, "mdm")]
    assert _report(synced, "stale-devices", "--now", "2026-11-26T12:00:00Z")["rows"] == []  # default 30 days


def test_warranty_spend_and_kpis_on_the_demo(synced) -> None:  # type: ignore[no-untyped-def]
    # Today: three laptops in use are out of warranty (issue #15 item 11: they used to show as 0 rows).
    rows = _report(synced, "warranty")["rows"]
    assert [(_label(r), r["warranty_end"], r["days_left"], r["window"], r["status"]) for r in rows] == [
        ("FVFXC2ABJ1WK", "2025-01-09", -686, 0, "expired"), ("C02FK1ABQ6L4", "2026-02-13", -286, 0, "expired"),
        ("5CG1234XYZ", "2026-03-01", -270, 0, "expired")]
    rows = _report(synced, "warranty", "--as-of", "2029-09-01")["rows"]
    assert [(_label(r), r["warranty_end"], r["days_left"], r["window"], r["status"]) for r in rows][3:] == [
        ("PF3ABCDE", "2029-10-27", 56, 60, "ending"), ("PF3ZZZZZ", "2029-10-27", 56, 60, "ending"),
        ("PF9NEW001", "2029-11-19", 79, 90, "ending"), ("Latitude 5440", "2029-11-20", 80, 90, "ending")]
    rows = _report(synced, "spend")["rows"]
    # No demo asset has a department: the holders' (HR) departments are used, the rest is "(none)".
    assert rows == [
        {"department": "Engineering", "currency": "USD", "assets": 3, "spend": 5437.0, "via_holder": 3},
        {"department": "Sales", "currency": "USD", "assets": 1, "spend": 999.0, "via_holder": 1},
        {"department": "(none)", "currency": "USD", "assets": 3, "spend": 4839.0, "via_holder": 0}]
    kpis = {r["kpi"]: (r["value"], r["numerator"], r["denominator"]) for r in _report(synced, "kpis")["rows"]}
    # In use: the 6 MDM devices and the build server (the in-stock loaner and the 2 ordered laptops are not).
    assert kpis == {"assets_with_owner_pct": (85.7, 6, 7), "managed_pct": (85.7, 6, 7),
                    "protected_pct": (71.4, 5, 7), "offboarding_recovery_pct": (0.0, 0, 1)}
    assert _report(synced, "seats")["rows"] == [] and _report(synced, "renewals")["rows"] == []


def test_lifecycle_reports_on_the_demo(synced) -> None:  # type: ignore[no-untyped-def]
    # Carla's 2022 MacBook Air is past its 4-year refresh; Ana's and Bob's laptops come due next quarter.
    rep = _report(synced, "refresh")
    assert [(_label(r), r["due_date"], r["quarter"], r["status"], r["holder_name"], r["estimated_cost"])
            for r in rep["rows"]] == [
        ("FVFXC2ABJ1WK", "2026-01-10", "2026-Q1", "overdue", "Carla Diaz", 1600.0),
        ("C02FK1ABQ6L4", "2027-02-14", "2027-Q1", "due", "Bob Li", 1600.0),
        ("5CG1234XYZ", "2027-03-02", "2027-Q1", "due", "Dev Patel", 1600.0)]
    # Eve's desktop runs Windows 10 22H2, past its end of support (2025-10-14, a fixed date: it stays past).
    rows = _report(synced, "os-eol")["rows"]
    eve = next(r for r in rows if r["hostname"] == "dt-eve-01")
    assert (eve["release"], eve["end_of_support"], eve["status"], eve["extended_support_end"]) == (
        "windows 10 22H2", "2025-10-14", "past", "2028-10-10")
    # Depreciation: laptops over 3 years by declining balance to 10%, as configured in config/demo.yaml; the
    # 2022-2023 laptops are at their salvage value (99.9 + 249.9 + 134.9), the new ones at cost.
    rep = _report(synced, "depreciation")
    got = {_label(r): (r["method"], r["book_value"], r["fully_depreciated"]) for r in rep["rows"]}
    assert got["FVFXC2ABJ1WK"] == ("declining_balance", 99.9, "yes")
    assert got["PF3ABCDE"] == ("declining_balance", 1589.0, "")
    assert {(t["by"], t["group"]): t["book_value"] for t in rep["totals"]}[("kind", "laptop")] == 6912.7
    # Lifecycle: states now, and the first sync's states as events.
    rep = _report(synced, "lifecycle")
    assert {t["state"]: t["assets"] for t in rep["totals"]} == {"ordered": 2, "in_stock": 1, "deployed": 6,
                                                                "(unknown)": 1}
    assert ("FVFXC2ABJ1WK", "(unknown) -> deployed", "procurement") in [
        (r["serial_number"], r["event"], r["source"]) for r in rep["rows"]]
    # Carla left on 2026-10-31 and her Okta account is still active.
    rows = _report(synced, "accounts-offboarding")["rows"]
    assert [(r["email"], r["end_date"], r["hr_source"], r["connector"], r["account_status"]) for r in rows] == [
        ("carla.diaz@example.com", "2026-10-31", "hr", "okta-users", "active")]
    # Filters on the CLI.
    rows = _report(synced, "refresh", "--department", "engineering")["rows"]
    assert [_label(r) for r in rows] == ["C02FK1ABQ6L4", "5CG1234XYZ"]
    assert _report(synced, "os-eol", "--source", "edr")["rows"][0]["hostname"] == "dt-eve-01"
    totals = synced.cli("report", "refresh", "--totals", "--format", "csv").output.splitlines()
    assert totals == ["quarter,status,devices,estimated_cost,currency,without_estimate",
                      "2026-Q1,overdue,1,1600.0,USD,0", "2027-Q1,due,2,3200.0,USD,0"]


def test_report_formats_list_and_errors(synced, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = synced.cli("report", "offboarding", "--format", "csv").output
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["serial_number"] for r in rows] == ["FVFXC2ABJ1WK"] and rows[0]["purchase_cost"] == "999.0"
    assert out.splitlines()[0].startswith("asset_id,serial_number,hostname,kind,model,assigned_to,holder_id")
    target = tmp_path / "gaps.csv"
    result = synced.cli("report", "coverage-gaps", "--format", "csv", "--output", str(target))
    assert result.exit_code == 0 and len(target.read_text().splitlines()) == 5
    assert "edr, procurement" not in target.read_text() and "edr;procurement" in target.read_text()
    table = synced.cli("report", "kpis").output
    assert "KPIs (4 rows)" in table and "offboarding_recovery_pct" in table
    listed = synced.cli("report", "--list").output
    for name in ("coverage-gaps", "stale-devices", "offboarding", "accounts-offboarding", "unowned", "warranty",
                 "renewals", "seats", "spend", "depreciation", "refresh", "os-eol", "lifecycle", "kpis"):
        assert name in listed
    result = synced.cli("report", "nope")
    assert result.exit_code == 2 and "no report 'nope'" in result.output
    result = synced.cli("report", "kpis", "--days", "3")
    assert result.exit_code == 2 and "takes no --days" in result.output
    result = synced.cli("report")
    assert result.exit_code == 2 and "--list" in result.output


@pytest.mark.postgres
def test_reports_on_postgres_match_sqlite(synced, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    names = ("coverage-gaps", "offboarding", "accounts-offboarding", "unowned", "spend", "kpis", "depreciation",
             "refresh", "os-eol")
    on_sqlite = {n: _report(synced, n, "--now", "2029-09-01")["rows"] for n in (*names, "warranty")}
    synced.config.write_text(synced.config.read_text().replace(f"sqlite:///{synced.db}", postgres_url))
    assert synced.cli("run", "--full", "-q").exit_code == 0
    on_pg = {n: _report(synced, n, "--now", "2029-09-01")["rows"] for n in (*names, "warranty")}

    def without_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in ("asset_id", "holder_id", "person_id")} for r in rows]

    assert {n: without_ids(r) for n, r in on_pg.items()} == {n: without_ids(r) for n, r in on_sqlite.items()}
    assert len(on_pg["warranty"]) == 7 and on_pg["kpis"][0]["value"] == 85.7
