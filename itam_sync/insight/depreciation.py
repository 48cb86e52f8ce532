"""Depreciation: the book value of every asset with a purchase date and cost, at the report's date.

Rules come from `lifecycle.depreciation` per asset kind (else its `default`; with no rule configured at all,
straight-line over 3 years to 0). Depreciation runs in whole months from the purchase date (a month counts once
its day is reached) over the useful life L = round(life_years x 12) months:

- straight line: accumulated = (cost - salvage) x months / L;
- declining balance: each year of the asset's life takes rate x the book value at the start of that year
  (rate default 2 / life_years), switching to straight line over the remaining life as soon as that takes
  more, so the asset reaches its salvage value exactly at the end of its life; within a year the year's
  amount accrues evenly by month.

Either way an asset is fully depreciated on purchase date + L months. Disposed assets are off the books and
left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from itam_sync.insight.base import (
    FILTER_FIELDS,
    AssetMatcher,
    ReportContext,
    ReportInfo,
    ReportResult,
    as_num,
    load_full,
    make_result,
    scan,
    val,
    with_totals,
)
from itam_sync.insight.periods import add_months, months_between, next_quarter_start, parse_date, quarter_start
from itam_sync.settings.lifecycle import DepreciationRule
from itam_sync.store.repos import Repos

DEPRECIATION = ReportInfo(
    "depreciation", "Depreciation and book value",
    "Per asset with a purchase date and cost: accumulated depreciation and book value at the report's date "
    "(--as-of), and when it is fully depreciated; totals per department and per kind.", None)
DEFAULT_RULE = DepreciationRule()  # straight line, 3 years, no salvage


@dataclass(frozen=True)
class BookValue:
    """An asset's depreciation at one date."""

    months: int  # whole months since purchase, capped at the useful life
    life_months: int
    salvage: float
    accumulated: float
    book_value: float
    fully_depreciated_on: date


def book_value(cost: float, purchased: date, rule: DepreciationRule, as_of: date) -> BookValue:
    """The depreciation of an asset bought on `purchased` for `cost`, at `as_of` (see the module docstring)."""
    life = max(1, round(rule.life_years * 12))
    salvage = rule.salvage_of(cost)
    months = min(months_between(purchased, as_of), life) if as_of >= purchased else 0
    if rule.method == "straight_line":
        accumulated = (cost - salvage) * months / life
    else:
        accumulated = _declining(cost, salvage, life, rule.yearly_rate(), months)
    accumulated = round(min(max(accumulated, 0.0), cost - salvage), 2)
    return BookValue(months, life, salvage, accumulated, round(cost - accumulated, 2), add_months(purchased, life))


def _declining(cost: float, salvage: float, life: int, rate: float, months: int) -> float:
    value, left, start = cost, months, 0
    while start < life and left > 0:
        in_year = min(12, life - start)
        remaining = life - start
        declining = value * rate * in_year / 12
        straight = (value - salvage) * in_year / remaining
        year = min(max(declining, straight), value - salvage)
        take = min(left, in_year)
        value -= year * take / in_year
        left -= take
        start += in_year
    return cost - value


@dataclass
class DepreciationRow:
    """One asset's cost, accumulated depreciation and book value at the report's date."""

    asset_id: int
    serial_number: str | None
    hostname: str | None
    kind: str | None
    model: str | None
    department: str | None  # the asset's, else its holder's
    assigned_to: str | None
    purchase_date: str
    cost: float
    currency: str | None
    method: str
    life_years: float
    salvage: float
    months_elapsed: int
    accumulated: float
    book_value: float
    fully_depreciated_on: str
    fully_depreciated: str  # "yes", "this quarter", "next quarter" or "" (later)


@dataclass
class DepreciationTotalRow:
    """Totals of one department or one kind, in one currency."""

    by: str  # "department" or "kind"
    group: str  # the department or kind; "(none)" when unknown
    currency: str | None
    assets: int
    cost: float
    accumulated: float
    book_value: float
    fully_depreciated_this_quarter: int
    fully_depreciated_next_quarter: int


def _when(done_on: date, as_of: date) -> str:
    this_q, next_q = quarter_start(as_of), next_quarter_start(as_of)
    if done_on <= as_of:
        return "yes"
    if done_on < next_q and done_on >= this_q:
        return "this quarter"
    if done_on < next_quarter_start(next_q):
        return "next quarter"
    return ""


_FIELDS = ("purchase_cost", "purchase_date", "currency", "lifecycle_state", *FILTER_FIELDS)


def _on_books(repo: Repos, ctx: ReportContext, matcher: AssetMatcher, no_rule: dict[str, int]
              ) -> Iterator[tuple[int, dict[str, Any], float, date, DepreciationRule]]:
    """(id, scanned fields, cost, purchase date, rule) of every asset depreciated (not disposed, with a cost,
    a purchase date and a rule); kinds with no rule are counted in `no_rule`."""
    cfg = ctx.settings.lifecycle
    for eid, g in scan(repo, _FIELDS, ("active", "missing")):
        cost, bought = as_num(val(g, "purchase_cost")), parse_date(val(g, "purchase_date"))
        if val(g, "lifecycle_state") == "disposed" or cost is None or bought is None or not matcher.match(eid, g):
            continue
        rule = cfg.depreciation_rule(val(g, "kind")) if cfg.depreciation else DEFAULT_RULE
        if rule is None:
            no_rule[str(val(g, "kind") or "(no kind)")] += 1
            continue
        yield eid, g, cost, bought, rule


def book_value_totals(repo: Repos, ctx: ReportContext) -> dict[str | None, float]:
    """Book value per currency at ctx.today (the overview's number; no whole records loaded)."""
    out: dict[str | None, float] = defaultdict(float)
    for _eid, g, cost, bought, rule in _on_books(repo, ctx, AssetMatcher(repo, ctx), defaultdict(int)):
        out[val(g, "currency")] += book_value(cost, bought, rule, ctx.today).book_value
    return {cur: round(v, 2) for cur, v in out.items()}


def depreciation_rows(repo: Repos, ctx: ReportContext) -> tuple[list[DepreciationRow], list[str]]:
    """The per-asset rows at ctx.today, and notes on what was left out."""
    cfg = ctx.settings.lifecycle
    as_of = ctx.today
    matcher = AssetMatcher(repo, ctx)
    no_rule: dict[str, int] = defaultdict(int)
    kept = [eid for eid, *_ in _on_books(repo, ctx, matcher, no_rule)]
    rows = []
    for eid, g in sorted(load_full(repo, kept).items()):
        cost, bought = as_num(val(g, "purchase_cost")), parse_date(val(g, "purchase_date"))
        if cost is None or bought is None:
            continue
        rule = cfg.depreciation_rule(val(g, "kind")) or DEFAULT_RULE
        bv = book_value(cost, bought, rule, as_of)
        rows.append(DepreciationRow(
            eid, val(g, "serial_number"), val(g, "hostname"), val(g, "kind"), val(g, "model"),
            matcher.department(g)[0], val(g, "assigned_to"), bought.isoformat(), cost, val(g, "currency"),
            rule.method, rule.life_years, bv.salvage, bv.months, bv.accumulated, bv.book_value,
            bv.fully_depreciated_on.isoformat(), _when(bv.fully_depreciated_on, as_of)))
    notes = []
    if not cfg.depreciation:
        notes.append("no lifecycle.depreciation configured: straight line over 3 years to 0 for every kind")
    if no_rule:
        notes.append("assets of kinds with no depreciation rule (and no `default`), left out: "
                     + ", ".join(f"{k} {n}" for k, n in sorted(no_rule.items())))
    return rows, notes


def totals_of(rows: list[DepreciationRow]) -> list[DepreciationTotalRow]:
    """Totals per department, then per kind (each per currency)."""
    out = []
    for by in ("department", "kind"):
        acc: dict[tuple[str, str | None], list[Any]] = {}
        for r in rows:
            key = (getattr(r, by) or "(none)", r.currency)
            a = acc.setdefault(key, [0, 0.0, 0.0, 0.0, 0, 0])
            a[0] += 1
            a[1] += r.cost
            a[2] += r.accumulated
            a[3] += r.book_value
            a[4] += r.fully_depreciated == "this quarter"
            a[5] += r.fully_depreciated == "next quarter"
        group = [DepreciationTotalRow(by, g, cur, a[0], round(a[1], 2), round(a[2], 2), round(a[3], 2), a[4], a[5])
                 for (g, cur), a in acc.items()]
        group.sort(key=lambda t: (t.group == "(none)", -t.book_value, t.group, t.currency or ""))
        out += group
    return out


def depreciation(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Per asset: cost, accumulated depreciation and book value at the report's date; totals per department
    and kind; what becomes fully depreciated this quarter and next."""
    rows, notes = depreciation_rows(repo, ctx)
    rows.sort(key=lambda r: (r.fully_depreciated_on, r.asset_id))
    result = make_result(DEPRECIATION, ctx, DepreciationRow, rows, {"as_of": ctx.today.isoformat()}, notes)
    return with_totals(result, "Totals per department and kind", DepreciationTotalRow, totals_of(rows))
