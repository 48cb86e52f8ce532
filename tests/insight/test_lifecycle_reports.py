"""Depreciation (both methods), refresh planning and lifecycle events on small populations, with exact figures.

Dates are built relative to the pinned clock: the report date A is day 40 of the clock's quarter (always the
second month, day 10 or 11), so whole months and quarters come out the same on any day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from itam_sync import clock
from itam_sync.insight.depreciation import book_value
from itam_sync.insight.periods import add_months, quarter_start
from itam_sync.insight.reports import ReportFilters, run_report
from itam_sync.settings.lifecycle import DepreciationRule
from tests.insight.population import Source, build, rewrite, sync

LIFECYCLE = {"lifecycle": {
    "depreciation": {"laptop": {"method": "declining_balance", "life_years": 4, "salvage": "10%"},
                     "desktop": {"method": "straight_line", "life_years": 3},
                     "default": {"method": "straight_line", "life_years": 5}},
    "refresh_after": {"laptop": 4, "desktop": 5},
    "replacement_cost": {"laptop": 1500},
}}


def _as_of(frozen: clock.Clock) -> date:
    return quarter_start(frozen.today()) + timedelta(days=40)


def _at(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, 12, tzinfo=UTC)


def _asset(key: str, kind: str, cost: float | None, bought: date, **kw: Any) -> dict[str, Any]:
    row = {"key": key, "serial": key, "kind": kind, "cost": cost, "currency": "USD", "bought": bought.isoformat(),
           "state": "deployed"}
    row.update(kw)
    return row


def test_book_value_by_both_methods() -> None:
    bought = date(2024, 1, 15)
    sl, ddb = DepreciationRule(), DepreciationRule(method="declining_balance")  # 3 years, no salvage
    assert [book_value(1200, bought, sl, add_months(bought, m)).book_value for m in (0, 6, 18, 36, 40)] == \
        [1200.0, 1000.0, 600.0, 0.0, 0.0]
    # Double declining (2/3 a year), switching to straight line in year 3 so it ends at 0 after 36 months.
    assert [book_value(1200, bought, ddb, add_months(bought, m)).book_value for m in (6, 12, 18, 24, 30, 36)] == \
        [800.0, 400.0, 266.67, 133.33, 66.67, 0.0]
    rule = DepreciationRule(method="declining_balance", life_years=4, salvage="10%")  # rate 0.5, salvage 200
    got = [book_value(2000, bought, rule, add_months(bought, m)).book_value for m in (12, 24, 36, 42, 48, 60)]
    assert got == [1000.0, 500.0, 250.0, 225.0, 200.0, 200.0]
    bv = book_value(2000, bought, rule, date(2025, 1, 14))  # the 12th month is not complete until the 15th
    assert (bv.months, bv.accumulated, bv.salvage, bv.fully_depreciated_on) == (11, 916.67, 200.0,
                                                                                 date(2028, 1, 15))
    assert book_value(500, bought, sl, date(2023, 12, 1)).book_value == 500.0  # bought after the date


def test_depreciation_report_at_a_fixed_as_of(tmp_path: Path, frozen_clock: clock.Clock) -> None:
    a = _as_of(frozen_clock)
    people = [{"key": "p1", "id": "p1", "email": "sam@x.example", "name": "Sam", "dept": "Sales",
               "status": "active"}]
    assets = [
        _asset("L1", "laptop", 2000, add_months(a, -18), dept="Finance"),
        _asset("L2", "laptop", 1000, add_months(a, -30), user="sam@x.example"),  # department from its holder
        _asset("D1", "desktop", 1200, add_months(a, -18), dept="IT"),
        _asset("D2", "desktop", 900, add_months(a, -40), dept="IT"),
        _asset("D3", "desktop", 720, add_months(a, -35), dept="IT"),  # fully depreciated next month: this quarter
        _asset("D4", "desktop", 360, add_months(a, -34), dept="IT"),  # in two months: next quarter
        _asset("S1", "server", 6000, add_months(a, -12)),  # the default rule: 5 years straight line
        _asset("X1", "laptop", 1500, add_months(a, -6), state="disposed"),  # off the books
        _asset("N1", "laptop", None, add_months(a, -6)),  # no cost
    ]
    store, settings = build(tmp_path, {"hr": Source("person", people, "hr"), "buy": Source("asset", assets,
                                                                                          "procurement")},
                            LIFECYCLE)
    rep = run_report(store, settings, "depreciation", now=_at(a))
    assert rep.params == {"as_of": a.isoformat()}
    got = {r.serial_number: (r.method, r.months_elapsed, r.accumulated, r.book_value, r.department,
                             r.fully_depreciated) for r in rep.rows}
    assert got == {
        "L1": ("declining_balance", 18, 1250.0, 750.0, "Finance", ""),  # 2000 -> 1000 -> 750 (half of 500)
        "L2": ("declining_balance", 30, 812.5, 187.5, "Sales", ""),  # 1000 -> 500 -> 250 -> 187.5
        "D1": ("straight_line", 18, 600.0, 600.0, "IT", ""),
        "D2": ("straight_line", 36, 900.0, 0.0, "IT", "yes"),
        "D3": ("straight_line", 35, 700.0, 20.0, "IT", "this quarter"),
        "D4": ("straight_line", 34, 340.0, 20.0, "IT", "next quarter"),
        "S1": ("straight_line", 12, 1200.0, 4800.0, None, ""),
    }
    assert rep.rows[0].serial_number == "D2"  # sorted by the date each is fully depreciated
    totals = [(t.by, t.group, t.assets, t.cost, t.accumulated, t.book_value, t.fully_depreciated_this_quarter,
               t.fully_depreciated_next_quarter) for t in rep.totals]
    assert totals == [
        ("department", "Finance", 1, 2000.0, 1250.0, 750.0, 0, 0),
        ("department", "IT", 4, 3180.0, 2540.0, 640.0, 1, 1),
        ("department", "Sales", 1, 1000.0, 812.5, 187.5, 0, 0),
        ("department", "(none)", 1, 6000.0, 1200.0, 4800.0, 0, 0),
        ("kind", "server", 1, 6000.0, 1200.0, 4800.0, 0, 0),
        ("kind", "laptop", 2, 3000.0, 2062.5, 937.5, 0, 0),
        ("kind", "desktop", 4, 3180.0, 2540.0, 640.0, 1, 1),
    ]
    # A year later: L1 is 30 months in (500 -> half of 250 off in year 3); L2 reaches its salvage value (100)
    # in its fourth year, half of the way; the desktops are done.
    later = run_report(store, settings, "depreciation", now=_at(add_months(a, 12)))
    assert {r.serial_number: (r.book_value, r.fully_depreciated) for r in later.rows if r.kind != "server"} == {
        "L1": (375.0, ""), "L2": (112.5, ""), "D1": (200.0, ""), "D2": (0.0, "yes"), "D3": (0.0, "yes"),
        "D4": (0.0, "yes")}
    # Filters: a kind, a department (its own or its holder's).
    assert [r.serial_number for r in run_report(store, settings, "depreciation", now=_at(a),
                                                filters=ReportFilters(kind="laptop")).rows] == ["L2", "L1"]
    assert [r.serial_number for r in run_report(store, settings, "depreciation", now=_at(a),
                                                filters=ReportFilters(department="sales")).rows] == ["L2"]


def _quarter(d: date) -> str:
    return f"{d.year}-Q{(d.month - 1) // 3 + 1}"


def test_refresh_by_quarter_with_replacement_costs(tmp_path: Path, frozen_clock: clock.Clock) -> None:
    a = _as_of(frozen_clock)
    people = [{"key": "p1", "id": "p1", "email": "kim@x.example", "name": "Kim Lee", "dept": "Design",
               "status": "active"}]
    assets = [
        # Due for refresh: overdue two months, due in four, due in eleven (a desktop: 5 years).
        _asset("R1", "laptop", 2500, add_months(a, -50), model="MacBookPro18,3", user="kim@x.example"),
        _asset("R2", "laptop", 1400, add_months(a, -44), model="ThinkPad T14 Gen 3", dept="Ops"),
        _asset("R3", "desktop", 900, add_months(a, -49), model="OptiPlex 7090", dept="Ops"),
        # Recent purchases priced the MacBook Pro family: the median of 2400 and 2800; the older one is ignored.
        _asset("P1", "laptop", 2400, a - timedelta(days=100), model="MacBook Pro 14 (2023)"),
        _asset("P2", "laptop", 2800, a - timedelta(days=200), model="Apple MacBook Pro 16\" M3"),
        _asset("P3", "laptop", 2000, a - timedelta(days=900), model="MacBook Pro 14"),
        # Not planned: in stock, or due later than the horizon.
        _asset("S1", "laptop", 1000, add_months(a, -60), model="ThinkPad T14", state="in_stock"),
        _asset("F1", "laptop", 1000, add_months(a, -30), model="ThinkPad T14"),
    ]
    store, settings = build(tmp_path, {"hr": Source("person", people, "hr"), "buy": Source("asset", assets,
                                                                                          "procurement")},
                            LIFECYCLE)
    rep = run_report(store, settings, "refresh", now=_at(a))
    assert rep.params == {"days": 365}
    due = {"R1": add_months(a, -2), "R2": add_months(a, 4), "R3": add_months(a, 11)}
    assert [(r.serial_number, r.model_family, r.due_date, r.quarter, r.status, r.days_left, r.holder_name,
             r.department, r.estimated_cost) for r in rep.rows] == [
        ("R1", "MacBookPro", due["R1"].isoformat(), _quarter(due["R1"]), "overdue", (due["R1"] - a).days,
         "Kim Lee", "Design", 2600.0),
        ("R2", "ThinkPad T14", due["R2"].isoformat(), _quarter(due["R2"]), "due", (due["R2"] - a).days, None,
         "Ops", 1500.0),
        ("R3", "OptiPlex 7090", due["R3"].isoformat(), _quarter(due["R3"]), "due", (due["R3"] - a).days, None,
         "Ops", None),
    ]
    assert rep.rows[0].cost_basis.startswith("median of 2 laptop MacBookPro bought since")
    assert rep.rows[1].cost_basis == "configured price for laptop"
    assert rep.rows[2].cost_basis == "no recent purchase and no configured price"
    assert [(t.quarter, t.status, t.devices, t.estimated_cost, t.without_estimate) for t in rep.totals] == [
        (_quarter(due["R1"]), "overdue", 1, 2600.0, 0), (_quarter(due["R2"]), "due", 1, 1500.0, 0),
        (_quarter(due["R3"]), "due", 1, 0.0, 1)]
    # A shorter horizon keeps the overdue one only.
    assert [r.serial_number for r in run_report(store, settings, "refresh", days=30, now=_at(a)).rows] == ["R1"]


def test_lifecycle_states_and_events(tmp_path: Path, frozen_clock: clock.Clock) -> None:
    today = frozen_clock.today()
    rows = [_asset("A1", "laptop", 1000, today, state="in_stock"),
            _asset("A2", "laptop", 1000, today, state="deployed"),
            _asset("A3", "desktop", 1000, today)]
    rows[2].pop("state")
    store, settings = build(tmp_path, {"buy": Source("asset", rows, "procurement")})
    rows[0]["state"], rows[1]["state"] = "deployed", "in_repair"
    rewrite(tmp_path, "buy", rows)
    sync(store, settings)
    rep = run_report(store, settings, "lifecycle")
    assert rep.params == {"days": 30}
    events = [(r.serial_number, r.from_state, r.to_state, r.event, r.source) for r in rep.rows]
    # Newest first; the first sync's values are events too (from nothing to a state).
    assert events == [("A2", "deployed", "in_repair", "deployed -> in_repair", "buy"),
                      ("A1", "in_stock", "deployed", "in_stock -> deployed", "buy"),
                      ("A2", None, "deployed", "(unknown) -> deployed", "buy"),
                      ("A1", None, "in_stock", "(unknown) -> in_stock", "buy")]
    assert [(t.state, t.assets, t.missing) for t in rep.totals] == [
        ("deployed", 1, 0), ("in_repair", 1, 0), ("(unknown)", 1, 0)]
    assert [r.serial_number for r in run_report(store, settings, "lifecycle",
                                                filters=ReportFilters(kind="laptop")).rows] == ["A2", "A1", "A2",
                                                                                                  "A1"]


@pytest.mark.parametrize("name", ["depreciation", "refresh", "lifecycle", "os-eol"])
def test_new_reports_have_totals_in_json_and_csv(tmp_path: Path, frozen_clock: clock.Clock, name: str) -> None:
    store, settings = build(tmp_path, {"buy": Source("asset", [_asset("A1", "laptop", 1000,
                                                                      add_months(frozen_clock.today(), -60),
                                                                      os="Windows", osv="10.0.19045.3803")],
                                                     "procurement")}, LIFECYCLE)
    rep = run_report(store, settings, name)
    data = rep.to_json()
    assert data["totals_columns"] == rep.totals_columns and len(data["totals"]) == len(rep.totals) >= 1
    assert rep.totals_only().to_csv().splitlines()[0] == ",".join(rep.totals_columns)
