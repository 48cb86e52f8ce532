"""Licence and money reports: subscription renewals, seats bought vs assigned, purchase spend by department."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from itam_sync.insight.base import (
    FILTER_FIELDS,
    AssetMatcher,
    ReportContext,
    ReportInfo,
    ReportResult,
    as_int,
    as_num,
    days_between,
    fold,
    make_result,
    scan,
    val,
    window_of,
)
from itam_sync.store.repos import Repos

RENEWALS = ReportInfo("renewals", "Subscription renewals", "Subscriptions renewing within 30/60/90 days.", 90,
                      "horizon in days")
SEATS = ReportInfo("seats", "Licence seats", "Seats bought vs assigned: unused seats, unused rate and its cost.",
                   None)
SPEND = ReportInfo("spend", "Spend by department",
                   "Purchase cost by the asset's department, or its holder's when the asset has none.", None,
                   "only assets bought in the last N days (default: all)")


@dataclass
class RenewalRow:
    """A subscription renewing within the horizon."""

    subscription_id: int
    product: str | None
    vendor: str | None
    renewal_date: str
    days_left: int
    window: int
    seats_purchased: int | None
    seats_assigned: int | None
    cost: float | None
    currency: str | None
    billing_period: str | None
    owner: str | None


@dataclass
class SeatRow:
    """Seats bought vs assigned for one subscription; costs when a per-seat cost can be derived."""

    subscription_id: int
    product: str | None
    vendor: str | None
    seats_purchased: int | None
    seats_assigned: int | None
    unused_seats: int | None
    unused_rate: float | None  # unused / purchased, 0..1 (rounded to 4 places)
    cost: float | None  # per billing period, as the source gives it
    currency: str | None
    billing_period: str | None
    cost_per_seat: float | None  # cost / seats_purchased, per billing period
    unused_cost: float | None  # unused_seats * cost_per_seat, per billing period
    unused_cost_per_year: float | None  # x12 for monthly, x1 for annual billing


@dataclass
class SpendRow:
    """Purchase cost of assets charged to one department, in one currency."""

    department: str  # "(none)" when neither the asset nor its holder has one
    currency: str | None
    assets: int
    spend: float
    via_holder: int  # assets counted under their holder's department (the asset itself had none)


def _subscriptions(repo: Repos, ctx: ReportContext | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Active subscriptions that pass the filters: `source` (a connector feeding it) and `department` (its
    owner's); kind and location do not apply to subscriptions."""
    matcher = AssetMatcher(repo, ctx, "subscription") if ctx is not None else None
    for sid, g, st in repo.entities.iter_entities("subscription"):
        if st != "active":
            continue
        if matcher is not None and matcher.filters.active():
            f = matcher.filters
            if not matcher.fed_by_source(sid):
                continue
            if f.department:
                owner = val(g, "owner")
                p = matcher.people.get(fold(owner)) if owner else None
                if p is None or fold(p.department) != fold(f.department):
                    continue
        yield sid, g


def _subscription_notes(ctx: ReportContext) -> list[str]:
    f = ctx.filters
    return ["the kind and location filters apply to assets, not to subscriptions: ignored"] \
        if f.kind or f.location else []


def _seats_assigned(g: dict[str, Any]) -> int | None:
    n = as_int(val(g, "seats_assigned"))
    if n is None and isinstance(val(g, "assignees"), list):
        n = len(val(g, "assignees"))
    return n


def renewals(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Subscriptions renewing within --days (default 90), bucketed by 30/60/90 days."""
    horizon = ctx.days if ctx.days is not None else 90
    today = ctx.today
    lo, hi = today.isoformat(), (today + timedelta(days=horizon)).isoformat()
    rows = []
    for sid, g in _subscriptions(repo, ctx):
        when = val(g, "renewal_date")
        if not isinstance(when, str) or not (lo <= when[:10] <= hi):
            continue
        left = days_between(today, when)
        if left is None:
            continue
        rows.append(RenewalRow(sid, val(g, "product"), val(g, "vendor"), when[:10], left, window_of(left, horizon),
                               as_int(val(g, "seats_purchased")), _seats_assigned(g), as_num(val(g, "cost")),
                               val(g, "currency"), val(g, "billing_period"), val(g, "owner")))
    rows.sort(key=lambda r: (r.days_left, r.subscription_id))
    return make_result(RENEWALS, ctx, RenewalRow, rows, {"days": horizon}, _subscription_notes(ctx))


def seats(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Per subscription: seats bought vs assigned, the unused rate and, when cost per seat is known, its cost."""
    rows = []
    per_year = {"monthly": 12, "annual": 1}
    for sid, g in _subscriptions(repo, ctx):
        bought, used = as_int(val(g, "seats_purchased")), _seats_assigned(g)
        cost, period = as_num(val(g, "cost")), val(g, "billing_period")
        unused = max(bought - used, 0) if bought is not None and used is not None else None
        rate = round(unused / bought, 4) if unused is not None and bought else None
        per_seat = round(cost / bought, 4) if cost is not None and bought else None
        unused_cost = round(per_seat * unused, 2) if per_seat is not None and unused is not None else None
        yearly = round(unused_cost * per_year[period], 2) if unused_cost is not None and period in per_year else None
        rows.append(SeatRow(sid, val(g, "product"), val(g, "vendor"), bought, used, unused, rate, cost,
                            val(g, "currency"), period, per_seat, unused_cost, yearly))
    rows.sort(key=lambda r: (-(r.unused_cost_per_year or 0), -(r.unused_seats or 0), r.subscription_id))
    return make_result(SEATS, ctx, SeatRow, rows, notes=_subscription_notes(ctx))


def spend(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Purchase cost by the asset's department, or its holder's when it has none; --days: bought in the last N
    days only (default: all time)."""
    matcher = AssetMatcher(repo, ctx)
    since = (ctx.today - timedelta(days=ctx.days)).isoformat() if ctx.days is not None else None
    groups: dict[tuple[str, str | None], list[Any]] = {}
    for eid, g in scan(repo, ("purchase_cost", "purchase_date", "currency", *FILTER_FIELDS), ("active", "missing")):
        cost = as_num(val(g, "purchase_cost"))
        if cost is None or not matcher.match(eid, g):
            continue
        if since is not None:
            bought = val(g, "purchase_date")
            if not isinstance(bought, str) or bought[:10] < since:
                continue
        dept_of, from_holder = matcher.department(g)
        dept, via_holder = dept_of, int(from_holder)
        acc = groups.setdefault((dept or "(none)", val(g, "currency")), [0, 0.0, 0])
        acc[0] += 1
        acc[1] += cost
        acc[2] += via_holder
    rows = [SpendRow(d, cur, n, round(total, 2), vh) for (d, cur), (n, total, vh) in groups.items()]
    rows.sort(key=lambda r: (r.department == "(none)", -r.spend, r.department, r.currency or ""))
    return make_result(SPEND, ctx, SpendRow, rows, {"days": ctx.days} if ctx.days is not None else {})

