"""Every report on a small data set built for it, with exact rows and numbers.

Six file sources: HR people, an MDM, an EDR, an IdP device list, procurement ("buy": a jsonl connector with no
`role:`, recognised by its `purchases` stream) and licences. Two syncs, so the merge log records two
reassignments (one after the holder's end date, one before). Reports are evaluated at NOW.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from itam_sync.engine.runner import merge_pending, run_connector
from itam_sync.insight.reports import ReportResult, role_of, run_report
from itam_sync.settings import Settings, load_settings
from itam_sync.store import Store

NOW = datetime(2026, 1, 1, tzinfo=UTC)

MAPPINGS = {
    "hr": {"people": {"entity": "person", "key": "id", "fields": {
        "employee_id": "id", "email": {"from": "email", "transforms": ["email"]}, "display_name": "name",
        "department": "dept", "status": "status", "end_date": {"from": "end", "transforms": ["date"]}}}},
    "mdm": {"devices": {"entity": "asset", "key": "id", "fields": {
        "serial_number": {"from": "serial", "transforms": ["serial"]},
        "assigned_to": {"from": "user", "transforms": ["email"]},
        "last_seen": {"from": "seen", "transforms": ["datetime"]}, "mdm_managed": {"value": True}}}},
    "edr": {"hosts": {"entity": "asset", "key": "id", "fields": {
        "serial_number": {"from": "serial", "transforms": ["serial"]},
        "last_seen": {"from": "seen", "transforms": ["datetime"]}, "edr_protected": {"value": True}}}},
    "idp": {"devices": {"entity": "asset", "key": "id", "fields": {
        "serial_number": {"from": "serial", "transforms": ["serial"]},
        "assigned_to": {"from": "user", "transforms": ["email"]},
        "last_seen": {"from": "seen", "transforms": ["datetime"]}}}},
    "buy": {"purchases": {"entity": "asset", "key": "line", "fields": {
        "serial_number": {"from": "serial", "transforms": ["serial"]},
        "purchase_cost": {"from": "cost", "transforms": ["number"]}, "currency": "currency",
        "department": "dept", "purchase_date": {"from": "bought", "transforms": ["date"]},
        "warranty_end": {"from": "warranty", "transforms": ["date"]}, "lifecycle_state": "state",
        "assigned_to": {"from": "user", "transforms": ["email"]}}}},
    "subs": {"licences": {"entity": "subscription", "key": "sku", "fields": {
        "sku_id": "sku", "product": "product", "vendor": "vendor",
        "seats_purchased": {"from": "bought", "transforms": ["int"]},
        "seats_assigned": {"from": "used", "transforms": ["int"]}, "assignees": "assignees",
        "cost": {"from": "cost", "transforms": ["number"]}, "currency": "currency", "billing_period": "period",
        "renewal_date": {"from": "renews", "transforms": ["date"]}, "owner": "owner"}}},
}

PEOPLE = [
    {"id": "P1", "email": "alice@x.example", "name": "Alice", "dept": "Engineering", "status": "active"},
    {"id": "P2", "email": "tom@x.example", "name": "Tom", "dept": "Sales", "status": "terminated", "end": "2020-01-31"},
    {"id": "P3", "email": "sue@x.example", "name": "Sue", "dept": "Ops", "status": "suspended"},
    # Terminated with an end date still to come: a reassignment away from him is not an offboarding recovery.
    {"id": "P4", "email": "ted@x.example", "name": "Ted", "dept": "Sales", "status": "terminated", "end": "2999-12-31"},
]
SEEN = "2025-12-30T00:00:00Z"


def mdm(version: int) -> list[dict[str, Any]]:
    return [
        {"id": "m1", "serial": "SER-A1", "user": "alice@x.example", "seen": "2025-12-30T00:00:00Z"},
        {"id": "m2", "serial": "SER-A2", "user": "tom@x.example", "seen": "2025-11-01T00:00:00Z"},
        {"id": "m6", "serial": "SER-A6", "user": "tom@x.example", "seen": SEEN},
        {"id": "m7", "serial": "SER-A7", "user": "tom@x.example" if version == 1 else "alice@x.example", "seen": SEEN},
        {"id": "m8", "serial": "SER-A8", "user": "sue@x.example", "seen": SEEN},
        {"id": "m9", "serial": "SER-A9", "user": "ted@x.example" if version == 1 else "alice@x.example", "seen": SEEN},
    ]


EDR = [{"id": "e1", "serial": "SER-A1", "seen": "2025-12-31T00:00:00Z"},
       {"id": "e3", "serial": "SER-A3", "seen": SEEN},
       {"id": "e7", "serial": "SER-A7", "seen": SEEN},
       {"id": "e8", "serial": "SER-A8", "seen": SEEN}]
IDP = [{"id": "i4", "serial": "SER-A4", "user": "alice@x.example", "seen": SEEN}]
BUY = [
    {"line": "L1", "serial": "SER-A1", "cost": "1000", "currency": "USD", "dept": "Finance", "bought": "2025-06-01",
     "warranty": "2026-01-20", "state": "deployed"},
    {"line": "L2", "serial": "SER-A2", "cost": "2000", "currency": "USD", "bought": "2025-09-01",
     "warranty": "2026-02-15", "state": "deployed"},
    {"line": "L5", "serial": "SER-A5", "cost": "500", "currency": "EUR", "bought": "2025-12-01",
     "warranty": "2026-03-25", "state": "ordered"},
    {"line": "L6", "serial": "SER-A6", "cost": "700", "currency": "USD", "bought": "2024-01-01",
     "warranty": "2026-05-01", "state": "in_stock", "user": "tom@x.example"},
    {"line": "L10", "serial": "SER-A10", "cost": "300", "currency": "USD", "dept": "Finance", "bought": "2020-01-01",
     "warranty": "2026-01-10", "state": "retired"},
]
SUBS = [
    {"sku": "slack", "product": "Slack", "vendor": "Salesforce", "bought": 100, "used": 80, "cost": 800,
     "currency": "USD", "period": "monthly", "renews": "2026-01-15", "owner": "alice@x.example"},
    {"sku": "zoom", "product": "Zoom", "vendor": "Zoom", "bought": 50, "used": 50, "cost": 5000, "currency": "USD",
     "period": "annual", "renews": "2026-03-01"},
    {"sku": "figma", "product": "Figma", "vendor": "Figma", "bought": 10,
     "assignees": ["a@x.example", "b@x.example", "c@x.example", "d@x.example"], "currency": "USD",
     "period": "annual", "renews": "2026-06-01"},
    {"sku": "jira", "product": "Jira", "vendor": "Atlassian", "bought": 20, "used": 25, "cost": 2400,
     "currency": "USD", "period": "annual", "renews": "2026-03-31"},
]


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Settings]:
    d = tmp_path_factory.mktemp("reports")
    streams = {name: next(iter(m)) for name, m in MAPPINGS.items()}
    connectors = []
    for name, mapping in MAPPINGS.items():
        (d / f"{name}.yaml").write_text(yaml.safe_dump({"streams": mapping}))
        conn: dict[str, Any] = {"name": name, "type": "jsonl", "mapping": str(d / f"{name}.yaml"),
                                "settings": {"path": str(d / f"{name}.jsonl"), "stream": streams[name]}}
        if name in ("hr", "mdm", "edr", "idp"):
            conn["role"] = name
        connectors.append(conn)
    config = {"store": {"url": f"sqlite:///{d / 'r.db'}"}, "connectors": connectors,
              "precedence": {"default": ["mdm", "edr", "idp", "buy", "hr", "subs"],
                             "asset": {"fields": {"last_seen": {"strategy": "latest"},
                                                  "lifecycle_state": {"order": ["buy", "mdm"]}}}}}
    (d / "c.yaml").write_text(yaml.safe_dump(config))
    settings = load_settings(d / "c.yaml").settings
    for name, rows in (("hr", PEOPLE), ("mdm", mdm(1)), ("edr", EDR), ("idp", IDP), ("buy", BUY), ("subs", SUBS)):
        _write(d / f"{name}.jsonl", rows)
    store = Store.open(settings.store.url)

    def sync() -> None:
        for c in settings.connectors:
            assert run_connector(settings, c.name, full=True, store=store, merge=False).status == "success"
        merge_pending(settings, store)

    sync()
    _write(d / "mdm.jsonl", mdm(2))  # A7 moves from Tom (terminated) to Alice, A9 from Ted to Alice
    sync()
    return store, settings


def _run(dataset: tuple[Store, Settings], name: str, days: int | None = None) -> ReportResult:
    store, settings = dataset
    return run_report(store, settings, name, days=days, now=NOW)


def _serials(dataset: tuple[Store, Settings]) -> dict[int, str]:
    store, _ = dataset
    with store.begin() as repo:
        return {eid: g["serial_number"][0] for eid, g, _s in repo.entities.iter_entities("asset")}


def test_roles_from_config_type_and_stream(dataset: tuple[Store, Settings]) -> None:
    _, settings = dataset
    assert role_of(settings, "mdm", "devices") == "mdm"
    assert role_of(settings, "buy", "purchases") == "procurement"  # a file connector with a purchases stream
    assert role_of(settings, "subs", "licences") == "other"
    assert role_of(settings, "gone", "x") == "other"


def test_coverage_gaps(dataset: tuple[Store, Settings]) -> None:
    serial = _serials(dataset)
    rep = _run(dataset, "coverage-gaps")
    assert [(r.gap, serial[r.asset_id]) for r in rep.rows] == [
        ("mdm-without-edr", "SER-A2"), ("mdm-without-edr", "SER-A6"), ("mdm-without-edr", "SER-A9"),
        ("edr-not-managed", "SER-A3"),
        ("idp-or-cloud-not-in-inventory", "SER-A4"),
        ("procured-never-seen", "SER-A5"),  # SER-A10 is retired: not lost
    ]
    assert rep.notes == []  # "subs" has no role, but it feeds no asset


def test_stale_offboarding_and_unowned(dataset: tuple[Store, Settings]) -> None:
    serial = _serials(dataset)
    rows = _run(dataset, "stale-devices").rows
    assert [(serial[r.asset_id], r.days_since_seen, r.last_seen_source) for r in rows] == [("SER-A2", 61, "mdm")]
    assert [serial[r.asset_id] for r in _run(dataset, "stale-devices", days=61).rows] == []
    rows = _run(dataset, "offboarding").rows
    # A6 (in_stock) is back; A7 and A9 were reassigned; A2 (terminated holder) and A8 (suspended) are not.
    assert [(serial[r.asset_id], r.assigned_to, r.holder_status, r.holder_department) for r in rows] == [
        ("SER-A2", "tom@x.example", "terminated", "Sales"), ("SER-A8", "sue@x.example", "suspended", "Ops")]
    rows = _run(dataset, "unowned").rows
    assert [(serial[r.asset_id], r.sources) for r in rows] == [("SER-A3", ["edr"])]


def test_warranty_windows(dataset: tuple[Store, Settings]) -> None:
    serial = _serials(dataset)
    rep = _run(dataset, "warranty")
    assert rep.params == {"days": 90}
    # A10's warranty ends in 9 days but it is retired; A6's ends in 120 days, past the default horizon.
    assert [(serial[r.asset_id], r.warranty_end, r.days_left, r.window) for r in rep.rows] == [
        ("SER-A1", "2026-01-20", 19, 30), ("SER-A2", "2026-02-15", 45, 60), ("SER-A5", "2026-03-25", 83, 90)]
    rows = _run(dataset, "warranty", days=120).rows
    assert [(serial[r.asset_id], r.window) for r in rows][-1] == ("SER-A6", 120)
    assert [serial[r.asset_id] for r in _run(dataset, "warranty", days=30).rows] == ["SER-A1"]


def test_renewals_and_seats(dataset: tuple[Store, Settings]) -> None:
    rows = _run(dataset, "renewals").rows
    assert [(r.product, r.renewal_date, r.days_left, r.window, r.seats_purchased, r.seats_assigned, r.cost)
            for r in rows] == [("Slack", "2026-01-15", 14, 30, 100, 80, 800.0),
                               ("Zoom", "2026-03-01", 59, 60, 50, 50, 5000.0),
                               ("Jira", "2026-03-31", 89, 90, 20, 25, 2400.0)]
    rows = _run(dataset, "seats").rows
    assert [(r.product, r.seats_purchased, r.seats_assigned, r.unused_seats, r.unused_rate, r.cost_per_seat,
             r.unused_cost, r.unused_cost_per_year) for r in rows] == [
        ("Slack", 100, 80, 20, 0.2, 8.0, 160.0, 1920.0),  # monthly: 20 unused x $8 x 12
        ("Figma", 10, 4, 6, 0.6, None, None, None),  # seats assigned counted from the assignees; no cost known
        ("Zoom", 50, 50, 0, 0.0, 100.0, 0.0, 0.0),
        ("Jira", 20, 25, 0, 0.0, 120.0, 0.0, 0.0),  # over-assigned: nothing unused
    ]


def test_spend_by_department(dataset: tuple[Store, Settings]) -> None:
    rows = [(r.department, r.currency, r.assets, r.spend, r.via_holder) for r in _run(dataset, "spend").rows]
    # A2 and A6 have no department: they are charged to their holder Tom's (Sales); A5 has neither.
    assert rows == [("Sales", "USD", 2, 2700.0, 2), ("Finance", "USD", 2, 1300.0, 0), ("(none)", "EUR", 1, 500.0, 0)]
    rows = [(r.department, r.assets, r.spend) for r in _run(dataset, "spend", days=200).rows]
    assert rows == [("Sales", 1, 2000.0), ("(none)", 1, 500.0)]  # bought since 2025-06-15


def test_kpis(dataset: tuple[Store, Settings]) -> None:
    rows = {r.kpi: (r.value, r.numerator, r.denominator) for r in _run(dataset, "kpis").rows}
    # In use: A1 A2 A3 A4 A7 A8 A9 (A5 ordered, A6 in stock, A10 retired).
    assert rows == {
        "assets_with_owner_pct": (85.7, 6, 7),  # all but A3
        "managed_pct": (71.4, 5, 7),  # A1 A2 A7 A8 A9
        "protected_pct": (57.1, 4, 7),  # A1 A3 A7 A8
        # Tom's: A6 back in stock and A7 reassigned after his end date, of A2 A6 A7 (A9 left Ted before his
        # end date: not an offboarding recovery).
        "offboarding_recovery_pct": (66.7, 2, 3),
    }


def test_report_results_are_json_and_csv_ready(dataset: tuple[Store, Settings]) -> None:
    rep = _run(dataset, "seats")
    data = json.loads(json.dumps(rep.to_json()))
    assert data["columns"] == rep.columns and data["rows"][0]["product"] == "Slack"
    assert data["generated_at"] == "2026-01-01T00:00:00Z"
    lines = rep.to_csv().splitlines()
    assert lines[0] == ",".join(rep.columns) and lines[2].startswith(f"{rep.rows[1].subscription_id},Figma,Figma,10,4")
