"""Reports in the web UI and API: itam_sync.insight.reports computes them; this module runs them for a request
(with a short cache: a report reads every golden record), picks a chart per report and renders the pages.

Charts are horizontal SVG bars rendered on the server (charts.py); a report this module has no chart for
still gets its table.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from itam_sync.settings import Settings
from itam_sync.store import Store
from itam_sync.web.charts import bar_chart
from itam_sync.web.render import int_param, render

log = logging.getLogger(__name__)
CACHE_SECONDS = 300.0


@dataclass
class Chart:
    """A chart of a report: its title and (label, value) bars."""

    title: str
    data: list[tuple[str, float]]
    fmt: Callable[[float], str] | None = None

    def svg(self) -> Markup:
        if self.fmt is None:
            return bar_chart(self.data, self.title)
        return bar_chart(self.data, self.title, fmt=self.fmt)


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


def chart_for(name: str, rows: list[dict[str, Any]]) -> Chart | None:
    """The chart that tells a report's story at a glance, or None."""
    if name == "coverage-gaps":
        return Chart("Assets per coverage gap", _count(rows, "gap"))
    if name == "stale-devices":
        return Chart("Stale devices by time since last seen",
                     _count([{"b": _days_bucket(r.get("days_since_seen"))} for r in rows], "b"))
    if name == "offboarding":
        return Chart("Unrecovered assets per departed holder",
                     _count([{"h": f"{r.get('holder_name') or r.get('assigned_to')} ({r.get('holder_status')})"}
                             for r in rows], "h"))
    if name == "unowned":
        return Chart("Assets without an owner, by kind", _count(rows, "kind"))
    if name == "warranty":
        return Chart("Warranties ending, by window (days)",
                     _count([{"w": f"within {r.get('window')} days"} for r in rows], "w"))
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
    if name == "kpis":
        return Chart("KPIs (%)", [(str(r["kpi"]), float(r["value"])) for r in rows
                                  if isinstance(r.get("value"), int | float)], fmt=_pct)
    return None


@dataclass
class PreparedReport:
    """A report result with its rows as dicts and its chart, ready for a page or the API."""

    result: Any  # itam_sync.insight.reports.ReportResult
    rows: list[dict[str, Any]]
    chart: Markup | None


class ReportRunner:
    """Runs reports for the web and keeps each (name, days) result for CACHE_SECONDS: a report reads every
    golden record, and golden records change at the pace of sync runs. `fresh` recomputes."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._cache: dict[tuple[str, int | None], tuple[float, PreparedReport]] = {}
        self._lock = threading.Lock()

    def infos(self) -> list[Any]:
        from itam_sync.insight.reports import list_reports

        return list_reports()

    def info(self, name: str) -> Any:
        from itam_sync.insight.reports import get_report

        return get_report(name)

    def run(self, name: str, days: int | None, fresh: bool = False) -> PreparedReport:
        """The prepared report `name` (UnknownReport / OperationError for a bad name or days)."""
        from itam_sync.insight.reports import run_report

        key = (name, days)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and not fresh and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        t0 = time.perf_counter()
        result = run_report(self.store, self.settings, name, days=days)
        rows = result.as_dicts()
        chart = chart_for(name, rows)
        prepared = PreparedReport(result, rows, chart.svg() if chart else None)
        log.info("report %s (days=%s): %d rows in %.2fs", name, days, len(rows), time.perf_counter() - t0)
        with self._lock:
            self._cache[key] = (time.monotonic(), prepared)
        return prepared


def add_report_pages(router: APIRouter) -> None:
    """/reports (the menu) and /reports/{name} (a chart and the table; CSV and JSON links)."""
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
        try:
            info = runner.info(name)
            report = runner.run(name, days, fresh=request.query_params.get("fresh") == "1")
        except OperationError as exc:
            if "no report" in str(exc):
                from itam_sync.web.service import NotFound

                raise NotFound(str(exc)) from None
            raise BadInput(str(exc)) from None
        return render(request, "report.html", nav="reports", info=info, result=report.result, rows=report.rows,
                      chart=report.chart, days=days)
