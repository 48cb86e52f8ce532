"""The overview: headline KPIs with their trend over the last snapshots, and spend by department.

Metrics (each links to the report that lists its items): share of in-use assets with an owner, managed (MDM),
protected (EDR); devices to recover from leavers and accounts of leavers still active; subscriptions renewing
in the next 30 / 60 / 90 days; unused seats and their yearly cost; book value; devices due for refresh (overdue
or due within 90 days); devices on an OS past its end of support; open identity conflicts.

Trends: a snapshot of the metric values is kept per state of the store (the merge log's newest id, so at most
one per sync run that changed something) whenever the overview is computed (`report overview`, the web
overview) or `record_snapshot` is called (e.g. after a run); the last TREND_POINTS snapshots and the current
values make each metric's trend. Snapshots live in the store (store/repos/kpi_history.py), not in memory.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from itam_sync.insight.accounts import still_active_accounts
from itam_sync.insight.base import ReportContext, ReportInfo, ReportResult, make_result, with_totals
from itam_sync.insight.depreciation import book_value_totals
from itam_sync.insight.devices import offboarding
from itam_sync.insight.kpis import kpis
from itam_sync.insight.licences import SpendRow, renewals, seats, spend
from itam_sync.insight.os_eol import unsupported_count
from itam_sync.insight.refresh import refresh_count
from itam_sync.store import Store
from itam_sync.store.repos import Repos

log = logging.getLogger(__name__)
OVERVIEW = ReportInfo(
    "overview", "Overview",
    "The headline KPIs with their trend over the last snapshots (one per sync state), and spend by department.",
    None)
TREND_POINTS = 12
REFRESH_DAYS = 90


@dataclass
class MetricRow:
    """One headline number, its unit, the report behind it and its trend (oldest first, current last)."""

    metric: str
    label: str
    value: float | None
    unit: str  # "%", "devices", "accounts", "subscriptions", "seats", "conflicts" or a currency code
    report: str | None  # the report that lists the items behind it
    previous: float | None  # at the newest earlier snapshot
    change: float | None
    trend: list[float | None] = dc_field(default_factory=list)


def _current(repo: Repos, ctx: ReportContext) -> tuple[list[tuple[str, str, float | None, str, str | None]],
                                                       list[SpendRow]]:
    """(metric, label, value, unit, report) of every metric now, and the spend rows."""
    out: list[tuple[str, str, float | None, str, str | None]] = []
    k = {r.kpi: r for r in kpis(repo, ctx).rows}
    for key, label in (("assets_with_owner_pct", "In-use assets with an owner"),
                       ("managed_pct", "Coverage: managed by an MDM"), ("protected_pct", "Coverage: EDR agent")):
        out.append((key, label, k[key].value, "%", "kpis"))
    recover = offboarding(repo, ctx).rows
    out.append(("devices_to_recover", "Devices to recover from leavers", float(len(recover)), "devices",
                "offboarding"))
    accounts = still_active_accounts(repo, ctx)
    out.append(("accounts_to_close", "Accounts of leavers still active", float(len(accounts)), "accounts",
                "accounts-offboarding"))
    renew = renewals(repo, ReportContext(ctx.settings, ctx.now, 90, ctx.filters)).rows
    for w in (30, 60, 90):
        out.append((f"renewals_{w}d", f"Renewals in the next {w} days", float(sum(r.days_left <= w for r in renew)),
                    "subscriptions", "renewals"))
    seat_rows = seats(repo, ctx).rows
    out.append(("unused_seats", "Unused seats", float(sum(r.unused_seats or 0 for r in seat_rows)), "seats",
                "seats"))
    by_cur: dict[str, float] = defaultdict(float)
    for r in seat_rows:
        if r.unused_cost_per_year:
            by_cur[r.currency or "?"] += r.unused_cost_per_year
    for cur, v in sorted(by_cur.items()):
        out.append((f"unused_seat_cost_{cur}", "Unused seats, cost per year", round(v, 2), cur, "seats"))
    for currency, v in sorted(book_value_totals(repo, ctx).items(), key=lambda kv: kv[0] or ""):
        out.append((f"book_value_{currency or '?'}", "Book value", v, currency or "?", "depreciation"))
    out.append(("refresh_due", f"Devices due for refresh (overdue or within {REFRESH_DAYS} days)",
                float(refresh_count(repo, ctx, REFRESH_DAYS)), "devices", "refresh"))
    out.append(("unsupported_os", "Devices on an OS past its end of support", float(unsupported_count(repo, ctx)),
                "devices", "os-eol"))
    out.append(("open_conflicts", "Open identity conflicts", float(repo.web.web_overview()["open_conflicts"]),
                "conflicts", None))
    return out, spend(repo, ctx).rows


def overview(repo: Repos, ctx: ReportContext) -> ReportResult:
    """The metrics now with their trends, and spend by department (totals)."""
    current, spend_rows = _current(repo, ctx)
    history = [] if ctx.filters.active() else list(reversed(repo.kpi_history.kpi_snapshots(TREND_POINTS)))
    log_id = repo.log.max_log_id()
    if history and history[-1]["log_id"] == log_id:
        history = history[:-1]  # the current state is the last point already
    rows = []
    for metric, label, value, unit, report in current:
        past = [h["values"].get(metric) for h in history]
        previous = next((v for v in reversed(past) if v is not None), None)
        change = round(value - previous, 2) if value is not None and previous is not None else None
        rows.append(MetricRow(metric, label, value, unit, report, previous, change, [*past, value]))
    notes = [f"trend: {len(history)} earlier snapshot(s) and now; a snapshot is kept each time the overview is "
             "computed after the store changed"] if not ctx.filters.active() else [
        "filtered: no trend (snapshots are of the whole store)"]
    result = make_result(OVERVIEW, ctx, MetricRow, rows, {"merge_log_id": log_id}, notes)
    return with_totals(result, "Spend by department", SpendRow, spend_rows)


def snapshot_values(result: ReportResult) -> dict[str, Any]:
    """The metric values of an overview result, as a snapshot keeps them."""
    return {r.metric: r.value for r in result.rows}


def record_snapshot(store: Store, result: ReportResult) -> bool:
    """Keep the values of an (unfiltered) overview result as a snapshot of the store's current state; False
    when one exists for it, the result is filtered, or the store refuses the write (a read-only database)."""
    if result.name != OVERVIEW.name or result.params.keys() - {"merge_log_id"}:
        return False
    try:
        with store.begin() as repo:
            runs = repo.runs.list_runs(limit=1)
            return repo.kpi_history.add_kpi_snapshot(int(result.params["merge_log_id"]), result.generated_at,
                                                      runs[0]["id"] if runs else None, snapshot_values(result))
    except Exception as exc:  # noqa: BLE001 - the overview is shown even when its snapshot cannot be kept
        log.warning("could not keep a KPI snapshot: %s", exc)
        return False

