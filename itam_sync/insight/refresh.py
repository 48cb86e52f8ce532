"""Refresh planning: in-use devices due or overdue for replacement, by quarter, with what replacing them costs.

A device is due `lifecycle.refresh_after[kind]` years (else `default`) after its purchase date. The estimated
replacement cost is the median purchase cost of devices of the same kind and model family bought in the last
two years (in the currency most of them were bought in); with none, the configured price
`lifecycle.replacement_cost["kind/family"]`, else `["kind"]`; else unknown.

The model family drops what changes between generations of one line: bracketed text, Apple model numbers
("MacBookPro18,3" -> "MacBookPro"), the maker's name, "Gen 4", "G8", chip names (M1, M2 Pro), years and screen
sizes after a Mac name ("MacBook Pro 14" -> "MacBook Pro"). Families compare without case and spaces, so
"MacBookPro" (an MDM's model id) and "MacBook Pro" (a purchase line) are one family.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from itam_sync.insight.base import (
    FILTER_FIELDS,
    AssetMatcher,
    ReportContext,
    ReportInfo,
    ReportResult,
    as_num,
    in_use,
    load_full,
    make_result,
    val,
    with_totals,
)
from itam_sync.insight.periods import add_months, parse_date, quarter_label
from itam_sync.settings import Settings
from itam_sync.store.repos import Repos

REFRESH = ReportInfo(
    "refresh", "Refresh planning",
    "In-use devices due or overdue for replacement (lifecycle.refresh_after), by quarter, with holder, "
    "department and the estimated replacement cost.", 365, "due within the next N days (overdue ones always)")
RECENT_DAYS = 730  # "bought in the last two years"

_APPLE_ID = re.compile(r"^([A-Za-z]+)\d+,\d+$")
_DROP = re.compile(r"^(gen\s*\d+|g\d+|m\d+|(19|20)\d\d|\d+(\.\d+)?[\"”]|\d+-inch|inch)$", re.IGNORECASE)
_MAKER = re.compile(r"^(apple|dell|hp|hewlett[- ]packard|lenovo|microsoft|samsung|google|asus|acer)\s+",
                    re.IGNORECASE)
_MAC = re.compile(r"^(macbook( pro| air)?|imac|mac( mini| studio| pro)?)\b", re.IGNORECASE)


def family_key(family: str | None) -> str:
    """A model family compared loosely: case and spaces ignored ("MacBookPro" = "MacBook Pro")."""
    return "".join((family or "").split()).casefold()


def model_family(model: str | None) -> str | None:
    """The model line of a model name (see the module docstring); None for no model."""
    if not model:
        return None
    text = re.sub(r"\([^)]*\)", " ", str(model)).strip()
    text = _MAKER.sub("", text)
    m = _APPLE_ID.match(text)
    if m:
        return m.group(1)
    text = re.sub(r"\bgen(eration)?\s*(\d+)", r"gen\2", text, flags=re.IGNORECASE)
    words = text.split()
    while len(words) > 1 and (_DROP.match(words[-1]) or words[-1].lower() in ("pro", "max", "ultra")
                              and len(words) > 2 and _DROP.match(words[-2])):
        words.pop()
    mac = _MAC.match(" ".join(words))
    if mac:
        return " ".join(mac.group(0).split())  # "MacBook Pro 14" -> "MacBook Pro"
    return " ".join(words) or None


@dataclass
class RefreshRow:
    """A device due (or overdue) for replacement."""

    asset_id: int
    serial_number: str | None
    hostname: str | None
    kind: str | None
    model: str | None
    model_family: str | None
    assigned_to: str | None
    holder_name: str | None
    department: str | None  # the asset's, else its holder's
    purchase_date: str
    age_years: float
    refresh_after_years: float
    due_date: str
    quarter: str  # "2026-Q4": the quarter it is due in
    status: str  # "overdue" or "due"
    days_left: int  # negative: overdue by that many days
    estimated_cost: float | None
    currency: str | None
    cost_basis: str  # how the estimate was made


@dataclass
class RefreshTotalRow:
    """Devices due in one quarter and what replacing them is estimated to cost (per currency)."""

    quarter: str
    status: str  # "overdue" for quarters already begun or passed with overdue devices, else "due"
    devices: int
    estimated_cost: float
    currency: str | None
    without_estimate: int


@dataclass
class _Price:
    cost: float | None
    currency: str | None
    basis: str


class Prices:
    """Replacement cost estimates from recent purchases and the configured prices."""

    def __init__(self, settings: Settings, today: date) -> None:
        self.cfg = settings.lifecycle.replacement_cost
        self.since = (today - timedelta(days=RECENT_DAYS)).isoformat()
        self.today = today.isoformat()
        self.bought: dict[tuple[str, str], list[tuple[float, str | None]]] = defaultdict(list)
        self._cache: dict[tuple[str, str], _Price] = {}

    def add(self, golden: dict[str, Any]) -> None:
        """Count a purchase (any asset with kind, model, cost and a purchase date in the last two years)."""
        cost, bought, kind = as_num(val(golden, "purchase_cost")), val(golden, "purchase_date"), val(golden, "kind")
        family = model_family(val(golden, "model"))
        if cost is None or not kind or not family or not isinstance(bought, str):
            return
        if self.since <= bought[:10] <= self.today:
            self.bought[(str(kind), family_key(family))].append((cost, val(golden, "currency")))

    def estimate(self, kind: str | None, family: str | None) -> _Price:
        """The estimated replacement cost of a device of this kind and model family."""
        key = (kind or "", family_key(family))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        found = self.bought.get(key, [])
        if found:
            currency = Counter(c for _, c in found).most_common(1)[0][0]
            costs = [v for v, c in found if c == currency]
            price = _Price(round(statistics.median(costs), 2), currency,
                           f"median of {len(costs)} {kind} {family} bought since {self.since}")
        elif family and f"{kind}/{family}" in self.cfg:
            price = _Price(self.cfg[f"{kind}/{family}"], None, f"configured price for {kind}/{family}")
        elif kind and kind in self.cfg:
            price = _Price(self.cfg[kind], None, f"configured price for {kind}")
        else:
            price = _Price(None, None, "no recent purchase and no configured price")
        self._cache[key] = price
        return price


_FIELDS = ("purchase_cost", "purchase_date", "currency", "model", "lifecycle_state", *FILTER_FIELDS)


def _due(repo: Repos, ctx: ReportContext, horizon_days: int, matcher: AssetMatcher, prices: Prices | None
         ) -> tuple[dict[int, tuple[date, float]], int]:
    """(asset id -> (due date, refresh years)) of in-use devices due within `horizon_days` or overdue, and how
    many planned devices have no purchase date; every purchase is counted into `prices` on the way."""
    cfg = ctx.settings.lifecycle
    until = ctx.today + timedelta(days=horizon_days)
    due: dict[int, tuple[date, float]] = {}
    no_date = 0
    for eid, st, entries in repo.reports.report_values("asset", _FIELDS):
        g = dict(zip(_FIELDS, entries, strict=True))
        if prices is not None:
            prices.add(g)
        years = cfg.refresh_years(val(g, "kind"))
        if years is None or not in_use(st, g) or not matcher.match(eid, g):
            continue
        bought = parse_date(val(g, "purchase_date"))
        if bought is None:
            no_date += 1
            continue
        when = add_months(bought, round(years * 12))
        if when <= until:
            due[eid] = (when, years)
    return due, no_date


def refresh_count(repo: Repos, ctx: ReportContext, horizon_days: int) -> int:
    """In-use devices overdue or due within `horizon_days` (the overview's number; no whole records loaded)."""
    return len(_due(repo, ctx, horizon_days, AssetMatcher(repo, ctx), None)[0])


def refresh_rows(repo: Repos, ctx: ReportContext, horizon_days: int) -> tuple[list[RefreshRow], list[str]]:
    """Devices due within `horizon_days` (and every overdue one), and notes."""
    cfg = ctx.settings.lifecycle
    today = ctx.today
    prices = Prices(ctx.settings, today)
    matcher = AssetMatcher(repo, ctx)
    due, no_date = _due(repo, ctx, horizon_days, matcher, prices)
    rows = []
    for eid, g in load_full(repo, list(due)).items():
        when, years = due[eid]
        bought = parse_date(val(g, "purchase_date"))
        assert bought is not None  # checked in the scan
        family = model_family(val(g, "model"))
        price = prices.estimate(val(g, "kind"), family)
        holder = matcher.holder(g)
        left = (when - today).days
        rows.append(RefreshRow(
            eid, val(g, "serial_number"), val(g, "hostname"), val(g, "kind"), val(g, "model"), family,
            val(g, "assigned_to"), holder.name if holder else None, matcher.department(g)[0], bought.isoformat(),
            round((today - bought).days / 365.25, 1), years, when.isoformat(), quarter_label(when),
            "overdue" if left < 0 else "due", left, price.cost, price.currency or val(g, "currency"), price.basis))
    rows.sort(key=lambda r: (r.due_date, r.asset_id))
    notes = []
    if not cfg.refresh_after:
        notes.append("no lifecycle.refresh_after configured: set the replacement age per kind, e.g. "
                     "{laptop: 4, desktop: 5, mobile: 3}")
    if no_date:
        notes.append(f"{no_date} in-use devices of a planned kind have no purchase_date and cannot be planned")
    return rows, notes


def totals_of(rows: list[RefreshRow]) -> list[RefreshTotalRow]:
    """Per quarter (and currency): devices and their estimated cost; overdue ones in their own rows."""
    acc: dict[tuple[str, str, str | None], list[Any]] = {}
    for r in rows:
        a = acc.setdefault((r.quarter, r.status, r.currency), [0, 0.0, 0])
        a[0] += 1
        if r.estimated_cost is None:
            a[2] += 1
        else:
            a[1] += r.estimated_cost
    out = [RefreshTotalRow(q, st, a[0], round(a[1], 2), cur, a[2]) for (q, st, cur), a in acc.items()]
    out.sort(key=lambda t: (t.quarter, t.status != "overdue", t.currency or ""))
    return out


def refresh(repo: Repos, ctx: ReportContext) -> ReportResult:
    """In-use devices due for replacement within --days (default 365) and every overdue one, by quarter."""
    horizon = ctx.days if ctx.days is not None else 365
    rows, notes = refresh_rows(repo, ctx, horizon)
    result = make_result(REFRESH, ctx, RefreshRow, rows, {"days": horizon}, notes)
    return with_totals(result, "Devices due per quarter", RefreshTotalRow, totals_of(rows))
