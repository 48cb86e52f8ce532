"""Issue #15 items 9-11 on a small population: accounts of leavers still active in the identity providers,
the filters every report takes (kind, department, source, location), coverage gaps per kind, and warranties
that already expired on devices still in use."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from itam_sync import clock
from itam_sync.insight.reports import ReportFilters, run_report
from tests.insight.population import Source, build

IDP_PERSON = {"email": {"from": "email", "transforms": ["email"]}, "status": "status",
              "idp_user_id": "id", "last_login": {"from": "login", "transforms": ["datetime"]}}


def test_accounts_of_leavers_still_active(tmp_path: Path, frozen_clock: clock.Clock) -> None:
    today = frozen_clock.today()
    left = (today - timedelta(days=20)).isoformat()
    hr = [{"key": "E1", "id": "E1", "email": "ann@x.example", "name": "Ann", "dept": "Sales", "status": "terminated",
           "end": left},
          {"key": "E2", "id": "E2", "email": "ben@x.example", "name": "Ben", "dept": "Ops", "status": "terminated",
           "end": left},
          {"key": "E3", "id": "E3", "email": "cat@x.example", "name": "Cat", "dept": "Ops", "status": "active"},
          # Leaves in ten days: not yet offboarded, not reported.
          {"key": "E4", "id": "E4", "email": "dan@x.example", "name": "Dan", "dept": "Ops", "status": "active",
           "end": (today + timedelta(days=10)).isoformat()}]
    okta = [{"key": "o1", "id": "00u1", "email": "ann@x.example", "status": "active", "login": "2026-01-02T10:00:00Z"},
            {"key": "o2", "id": "00u2", "email": "ben@x.example", "status": "suspended"},
            {"key": "o3", "id": "00u3", "email": "cat@x.example", "status": "active"},
            {"key": "o4", "id": "00u4", "email": "dan@x.example", "status": "active"}]
    entra = [{"key": "e1", "id": "aad-1", "email": "ann@x.example", "status": "active"},
             {"key": "e2", "id": "aad-2", "email": "ben@x.example", "status": "active"}]
    google = [{"key": "g1", "id": "g-1", "email": "ann@x.example", "status": "terminated"}]  # archived
    store, settings = build(tmp_path, {
        "hr": Source("person", hr, "hr"), "okta": Source("person", okta, "idp", IDP_PERSON),
        "entra": Source("person", entra, "idp", IDP_PERSON), "google": Source("person", google, "idp", IDP_PERSON)},
        precedence=["hr", "okta", "entra", "google"])
    rep = run_report(store, settings, "accounts-offboarding")
    assert [(r.email, r.connector, r.account, r.days_since_end, r.hr_source, r.department) for r in rep.rows] == [
        ("ann@x.example", "entra", "ann@x.example", 20, "hr", "Sales"),
        ("ann@x.example", "okta", "ann@x.example", 20, "hr", "Sales"),
        ("ben@x.example", "entra", "ben@x.example", 20, "hr", "Ops"),  # Okta suspended him already
    ]
    assert rep.rows[1].last_login == "2026-01-02T10:00:00Z"
    got = run_report(store, settings, "accounts-offboarding", filters=ReportFilters(department="ops")).rows
    assert [(r.email, r.connector) for r in got] == [("ben@x.example", "entra")]
    got = run_report(store, settings, "accounts-offboarding", filters=ReportFilters(source="okta")).rows
    assert [(r.email, r.connector) for r in got] == [("ann@x.example", "okta")]


def _device(key: str, kind: str | None, **kw: object) -> dict[str, object]:
    return {"key": key, "serial": key, "kind": kind, "state": "deployed", **kw}


def test_filters_coverage_kinds_and_expired_warranties(tmp_path: Path, frozen_clock: clock.Clock) -> None:
    today = frozen_clock.today()
    past, soon = (today - timedelta(days=40)).isoformat(), (today + timedelta(days=20)).isoformat()
    mdm = [_device("L1", "laptop", mdm=True, site="Paris", dept="Sales", warranty=past, cost=1000, currency="EUR"),
           _device("P1", "mobile", mdm=True, os="iOS", site="Paris", dept="Sales", warranty=past),
           _device("P2", None, mdm=True, os="Android", site="Oslo", dept="Ops"),  # no kind: a phone by its OS
           _device("L2", "laptop", mdm=True, site="Oslo", dept="Ops", warranty=soon, cost=1500, currency="EUR"),
           _device("L3", "laptop", mdm=True, site="Oslo", dept="Ops", warranty=past, state="retired")]
    edr = [{"key": "S1", "serial": "S1", "kind": "server", "edr": True},
           {"key": "V1", "serial": "V1", "kind": "cloud_instance", "edr": True},
           {"key": "D1", "serial": "D1", "kind": "desktop", "edr": True},
           {"key": "L2", "serial": "L2", "edr": True}]
    store, settings = build(tmp_path, {"mdm": Source("asset", mdm, "mdm"), "edr": Source("asset", edr, "edr")})
    gaps = run_report(store, settings, "coverage-gaps").rows
    # The phones (one by its kind, one by its OS) need no EDR agent, the server and the cloud instance no MDM.
    assert [(r.gap, r.serial_number) for r in gaps] == [("mdm-without-edr", "L1"), ("mdm-without-edr", "L3"),
                                                        ("edr-not-managed", "D1")]
    rep = run_report(store, settings, "coverage-gaps")
    assert rep.notes == ["2 assets of kinds not in reports.coverage.edr_expected are not counted as mdm-without-edr",
                         "2 assets of kinds not in reports.coverage.mdm_expected are not counted as edr-not-managed"]
    # Filters: kind, location, department, source (a connector feeding the asset).
    def serials(name: str, **f: str) -> list[str]:
        return [r.serial_number for r in run_report(store, settings, name, filters=ReportFilters(**f)).rows]

    assert serials("coverage-gaps", kind="desktop") == ["D1"]
    assert serials("coverage-gaps", location="paris") == ["L1"]
    assert sorted(serials("unowned", source="edr")) == ["D1", "L2", "S1", "V1"]
    assert serials("unowned", department="Ops", source="edr") == ["L2"]
    # Warranty: L1 and P1 are out of warranty and in use (expired), L2's ends soon; L3 is retired.
    rows = run_report(store, settings, "warranty").rows
    assert [(r.serial_number, r.status, r.window, r.days_left) for r in rows] == [
        ("L1", "expired", 0, -40), ("P1", "expired", 0, -40), ("L2", "ending", 30, 20)]
    assert serials("warranty", kind="laptop") == ["L1", "L2"]
    spend = run_report(store, settings, "spend", filters=ReportFilters(location="Oslo")).rows
    assert [(r.department, r.assets, r.spend) for r in spend] == [("Ops", 1, 1500.0)]  # L3 has no cost
    kpis = {r.kpi: (r.numerator, r.denominator)
            for r in run_report(store, settings, "kpis", filters=ReportFilters(kind="laptop")).rows}
    assert kpis["managed_pct"] == (2, 2) and kpis["protected_pct"] == (1, 2)  # L1, L2 in use; L3 retired
