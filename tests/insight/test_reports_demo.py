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
        # Carla's MacBook Air and Ana's iPhone are in the MDM but have no EDR agent.
        ("mdm-without-edr", "FVFXC2ABJ1WK"),
        ("mdm-without-edr", "F17ZK3LMN0D8"),
        # The EDR-only loaner and build server are protected but not managed.
        ("edr-not-managed", "PF3ZZZZZ"),
        ("edr-not-managed", "VMWARE-421D5C3E8A9B7C6D-1E2F3A4B5C6D7E8F"),
        # Ordered, bought, never seen by the MDM or the EDR (the Dell's serial "0" is a placeholder).
        ("procured-never-seen", "PF9NEW001"),
        ("procured-never-seen", "Latitude 5440"),
    ]
    assert rep["rows"][3]["hostname"] == "srv-build-01" and rep["rows"][3]["seen_by"] == ["edr"]
    assert rep["rows"][4]["lifecycle_state"] == "ordered" and rep["rows"][4]["seen_by"] == ["procurement"]
    assert rep["notes"] == []  # every demo connector has a role


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
    rows = _report(synced, "warranty", "--now", "2029-09-01")["rows"]
    assert [(_label(r), r["warranty_end"], r["days_left"], r["window"]) for r in rows] == [
        ("PF3ABCDE", "2029-10-27", 56, 60), ("PF3ZZZZZ", "2029-10-27", 56, 60),
        ("PF9NEW001", "2029-11-19", 79, 90), ("Latitude 5440", "2029-11-20", 80, 90)]
    assert _report(synced, "warranty", "--now", "2026-11-26")["rows"] == []
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


def test_report_formats_list_and_errors(synced, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = synced.cli("report", "offboarding", "--format", "csv").output
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["serial_number"] for r in rows] == ["FVFXC2ABJ1WK"] and rows[0]["purchase_cost"] == "999.0"
    assert out.splitlines()[0].startswith("asset_id,serial_number,hostname,kind,model,assigned_to,holder_id")
    target = tmp_path / "gaps.csv"
    result = synced.cli("report", "coverage-gaps", "--format", "csv", "--output", str(target))
    assert result.exit_code == 0 and len(target.read_text().splitlines()) == 7
    assert "edr, procurement" not in target.read_text() and "edr;procurement" in target.read_text()
    table = synced.cli("report", "kpis").output
    assert "KPIs (4 rows)" in table and "offboarding_recovery_pct" in table
    listed = synced.cli("report", "--list").output
    for name in ("coverage-gaps", "stale-devices", "offboarding", "unowned", "warranty", "renewals", "seats",
                 "spend", "kpis"):
        assert name in listed
    result = synced.cli("report", "nope")
    assert result.exit_code == 2 and "no report 'nope'" in result.output
    result = synced.cli("report", "kpis", "--days", "3")
    assert result.exit_code == 2 and "takes no --days" in result.output
    result = synced.cli("report")
    assert result.exit_code == 2 and "--list" in result.output


@pytest.mark.postgres
def test_reports_on_postgres_match_sqlite(synced, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    names = ("coverage-gaps", "offboarding", "unowned", "spend", "kpis")
    on_sqlite = {n: _report(synced, n, "--now", "2029-09-01")["rows"] for n in (*names, "warranty")}
    synced.config.write_text(synced.config.read_text().replace(f"sqlite:///{synced.db}", postgres_url))
    assert synced.cli("run", "--full", "-q").exit_code == 0
    on_pg = {n: _report(synced, n, "--now", "2029-09-01")["rows"] for n in (*names, "warranty")}

    def without_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in ("asset_id", "holder_id")} for r in rows]

    assert {n: without_ids(r) for n, r in on_pg.items()} == {n: without_ids(r) for n, r in on_sqlite.items()}
    assert len(on_pg["warranty"]) == 4 and on_pg["kpis"][0]["value"] == 85.7
