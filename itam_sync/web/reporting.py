"""Reports in the web UI and API: itam_sync.insight.reports computes them; this module runs them for a request
(with a short cache: a report reads every golden record), picks a chart per report and renders the pages.

Charts are horizontal SVG bars rendered on the server (charts.py); a report this module has no chart for
still gets its table. Report pages take the report's filters (kind, department, source, location) and --days
as query parameters and show their rows a page at a time (`page`, PAGE_SIZE rows).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from itam_sync.insight.base import ReportFilters
from itam_sync.settings import Settings
from itam_sync.store import Store
from itam_sync.web.charts import bar_chart, sparkline
from itam_sync.web.render import int_param, render

log = logging.getLogger(__name__)
CACHE_SECONDS = 300.0
PAGE_SIZE = 100
FILTERS = ("kind", "department", "source", "location")


@dataclass
class Chart:
    """A chart of a report: its title and (label, value) bars; `scale_max` 100 for percentages."""

    title: str
    data: list[tuple[str, float]]
    fmt: Callable[[float], str] | None = None
    scale_max: float | None = None

    def svg(self) -> Markup:
        if self.fmt is None:
            return bar_chart(self.data, self.title, scale_max=self.scale_max)
        return bar_chart(self.data, self.title, fmt=self.fmt, scale_max=self.scale_max)


def _count(rows: list[dict[str, Any]], col: str, empty: str = "(none)") -> list[tuple[str, float]]:
    c = Counter(str(r.get(col) if r.get(col) not in (None, "") else empty) for r in rows)
    return [(k, float(v)) for k, v in c.most_common()]


def _sum(rows: list[dict[str, Any]], label: Callable[[dict[str, Any]], str], col: str) -> list[tuple[str, float]]:
    acc: dict[str, float] = {}
    for r in rows:
        v = r.get(col)
        if isinstance(v, int | float) and not isinstance(v, bool):
            acc[label(r)] = acc.get(label(r), 0.0) + float(v)
    return sorted(acc.items(), key=lambda kv: -kv[1])


def _days_bucket(days: int | None) -> str:
    if days is None:
        return "unknown"
    for limit, label in ((30, "≤ 30 days"), (60, "31–60 days"), (90, "61–90 days"), (180, "91–180 days"),
                         (365, "181–365 days")):
        if days <= limit:
            return label
    return "over a year"


def _pct(v: float) -> str:
    return f"{v:.1f}%"


def chart_for(name: str, rows: list[dict[str, Any]], totals: list[dict[str, Any]] | None = None) -> Chart | None:
    """The chart that tells a report's story at a glance, or None."""
    totals = totals or []
    if name == "coverage-gaps":
        return Chart("Assets per coverage gap", _count(rows, "gap"))
    if name == "stale-devices":
        return Chart("Stale devices by time since last seen",
                     _count([{"b": _days_bucket(r.get("days_since_seen"))} for r in rows], "b"))
    if name == "offboarding":
        return Chart("Unrecovered assets per departed holder",
                     _count([{"h": f"{r.get('holder_name') or r.get('assigned_to')} ({r.get('holder_status')})"}
                             for r in rows], "h"))
    if name == "accounts-offboarding":
        return Chart("Active accounts of people who left, per identity provider", _count(rows, "connector"))
    if name == "unowned":
        return Chart("Assets without an owner, by kind", _count(rows, "kind"))
    if name == "warranty":
        return Chart("Warranties expired or ending, by window",
                     _count([{"w": "expired" if r.get("status") == "expired" else f"within {r.get('window')} days"}
                             for r in rows], "w"))
    if name == "renewals":
        return Chart("Renewals, by window (days)", _count([{"w": f"within {r.get('window')} days"} for r in rows],
                                                           "w"))
    if name == "seats":
        return Chart("Unused seats per subscription",
                     [(str(r.get("product") or r.get("subscription_id")), float(r["unused_seats"]))
                      for r in rows if isinstance(r.get("unused_seats"), int) and r["unused_seats"] > 0])
    if name == "spend":
        return Chart("Purchase spend by department",
                     _sum(rows, lambda r: f"{r.get('department')} ({r.get('currency') or '?'})", "spend"))
    if name == "depreciation":
        return Chart("Book value by department", _sum([t for t in totals if t.get("by") == "department"],
                                                      lambda t: f"{t.get('group')} ({t.get('currency') or '?'})",
                                                      "book_value"))
    if name == "refresh":
        return Chart("Devices due for replacement, per quarter",
                     _count([{"q": f"{r.get('quarter')} ({r.get('status')})"} for r in rows], "q"))
    if name == "os-eol":
        return Chart("Devices per OS release past or near its end of support",
                     _count([{"r": r.get("release") or "not mapped"} for r in rows], "r"))
    if name == "lifecycle":
        return Chart("Assets per lifecycle state", [(str(t["state"]), float(t["assets"])) for t in totals])
    if name == "kpis":
        return Chart("KPIs (%)", [(str(r["kpi"]), float(r["value"])) for r in rows
                                  if isinstance(r.get("value"), int | float)], fmt=_pct, scale_max=100.0)
    return None


@dataclass
class PreparedReport:
    """A report result with its rows as dicts and its chart, ready for a page or the API."""

    result: Any  # itam_sync.insight.reports.ReportResult
    rows: list[dict[str, Any]]
    chart: Markup | None
    totals: list[dict[str, Any]]


def filters_from(request: Request) -> ReportFilters:
    """The report filters of a request's query parameters (empty ones ignored; at most 200 characters)."""
    from itam_sync.web.service import BadInput

    values: dict[str, str | None] = {}
    for key in FILTERS:
        v = (request.query_params.get(key) or "").strip()
        if len(v) > 200:
            raise BadInput(f"{key} is longer than 200 characters")
        values[key] = v or None
    return ReportFilters(**values)


class ReportRunner:
    """Runs reports for the web and keeps each (name, days, filters) result for CACHE_SECONDS: a report reads
    every golden record, and golden records change at the pace of sync runs. `fresh` recomputes."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def infos(self) -> list[Any]:
        from itam_sync.insight.reports import list_reports

        return list_reports()

    def info(self, name: str) -> Any:
        from itam_sync.insight.reports import get_report

        return get_report(name)

    def _cached(self, key: tuple[Any, ...], fresh: bool, make: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and not fresh and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        value = make()
        with self._lock:
            self._cache[key] = (time.monotonic(), value)
        return value

    def run(self, name: str, days: int | None, fresh: bool = False,
            filters: ReportFilters | None = None) -> PreparedReport:
        """The prepared report `name` (UnknownReport / OperationError for a bad name or days)."""
        from itam_sync.insight.reports import run_report

        filters = filters or ReportFilters()

        def make() -> PreparedReport:
            t0 = time.perf_counter()
            result = run_report(self.store, self.settings, name, days=days, filters=filters)
            rows, totals = result.as_dicts(), result.totals_dicts()
            chart = chart_for(name, rows, totals)
            log.info("report %s (days=%s, %s): %d rows in %.2fs", name, days, filters.as_params(), len(rows),
                     time.perf_counter() - t0)
            return PreparedReport(result, rows, chart.svg() if chart else None, totals)

        prepared: PreparedReport = self._cached(("report", name, days, filters), fresh, make)
        return prepared

    def dashboard(self, fresh: bool = False) -> Dashboard | None:
        """The overview's KPI tiles and charts (cached like a report), or None when they cannot be computed
        (the page then shows the store's counts only)."""
        try:
            return dashboard_of(self.run("overview", None, fresh))
        except Exception:  # noqa: BLE001 - the overview page must render without its dashboard
            log.exception("the overview's KPIs could not be computed")
            return None


@dataclass
class Dashboard:
    """The overview's KPI tiles (each with its trend sparkline) and the spend-by-department chart."""

    tiles: list[dict[str, Any]]
    spend_chart: Markup | None
    generated_at: str
    notes: list[str]


def _metric_fmt(unit: str) -> Callable[[float], str]:
    if unit == "%":
        return _pct
    return lambda v: f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"


def dashboard_of(report: PreparedReport) -> Dashboard:
    """Tiles and charts of a prepared `overview` report."""
    tiles = []
    for r in report.rows:
        fmt = _metric_fmt(r["unit"])
        points = [(f"snapshot {i + 1}" if i < len(r["trend"]) - 1 else "now", v) for i, v in enumerate(r["trend"])]
        tiles.append({**r, "shown": "—" if r["value"] is None else fmt(r["value"]),
                      "change_shown": None if r["change"] is None else ("+" if r["change"] > 0 else "")
                      + fmt(r["change"]),
                      "spark": sparkline(points, r["label"], fmt, scale_max=100.0 if r["unit"] == "%" else None)})
    spend = [(f"{t['department']} ({t['currency'] or '?'})", float(t["spend"])) for t in report.totals]
    return Dashboard(tiles, bar_chart(spend, "Purchase spend by department") if spend else None,
                     report.result.generated_at, report.result.notes)


def add_report_pages(router: APIRouter) -> None:
    """/reports (the menu) and /reports/{name} (filters, a chart, the table a page at a time, totals; CSV and
    JSON links)."""
    from itam_sync.web.service import BadInput

    @router.get("/reports")
    def reports_index(request: Request) -> Response:
        runner: ReportRunner = request.app.state.reports
        return render(request, "reports.html", nav="reports", reports=runner.infos())

    @router.get("/reports/{name}")
    def report_page(request: Request, name: str) -> Response:
        from itam_sync.engine.operations import OperationError

        runner: ReportRunner = request.app.state.reports
        days = int_param(request, "days")
        page = int_param(request, "page") or 1
        filters = filters_from(request)
        try:
            info = runner.info(name)
            report = runner.run(name, days, fresh=request.query_params.get("fresh") == "1", filters=filters)
        except OperationError as exc:
            if "no report" in str(exc):
                from itam_sync.web.service import NotFound

                raise NotFound(str(exc)) from None
            raise BadInput(str(exc)) from None
        pages = max(1, -(-len(report.rows) // PAGE_SIZE))
        page = min(max(page, 1), pages)
        shown = report.rows[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
        query = {k: v for k, v in (("days", days), *filters.as_params().items()) if v is not None}
        return render(request, "report.html", nav="reports", info=info, result=report.result, rows=shown,
                      total_rows=len(report.rows), page=page, pages=pages, first_row=(page - 1) * PAGE_SIZE + 1,
                      chart=report.chart, days=days, filters=filters, totals=report.totals, qs=urlencode(query))
