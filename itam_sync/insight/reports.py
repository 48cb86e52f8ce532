"""ITAM reports over the golden records: the registry and the entry points the CLI, the web UI and API and the
reminders use.

Every report is a plain function `(repo, ctx) -> ReportResult`: typed dataclass rows plus a `columns` list,
usable as a table, JSON (`ReportResult.to_json()`) or CSV (`ReportResult.write_csv()`). The reports live by
topic: devices.py (coverage gaps, stale, offboarding, unowned, warranty), accounts.py (accounts of leavers),
licences.py (renewals, seats, spend), depreciation.py, refresh.py, os_eol.py (+ os_catalog.py, os_eol.yaml),
lifecycle.py, kpis.py, dashboard.py (the overview); what they share (roles, result types, filters, scanning
helpers) is in base.py. Callers use:

    list_reports() -> list[ReportInfo]
    get_report(name) -> ReportInfo
    run_report(store, settings, name, days=None, now=None, filters=None) -> ReportResult

The report functions, row types and helpers stay importable from this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from itam_sync import clock
from itam_sync.engine.operations import OperationError
from itam_sync.insight.accounts import ACCOUNTS_OFFBOARDING, AccountRow, accounts_offboarding
from itam_sync.insight.base import (
    DEVICE_ROLES,
    INVENTORY_ROLES,
    NOT_IN_USE,
    PROCUREMENT_STREAMS,
    RECOVERED,
    ROLE_BY_TYPE,
    ROLE_BY_TYPE_STREAM,
    ROLES,
    WINDOWS,
    ReportContext,
    ReportFilters,
    ReportInfo,
    ReportResult,
    UnknownReport,
    role_of,
)
from itam_sync.insight.dashboard import OVERVIEW, MetricRow, overview, record_snapshot
from itam_sync.insight.depreciation import DEPRECIATION, DepreciationRow, DepreciationTotalRow, depreciation
from itam_sync.insight.devices import (
    COVERAGE_GAPS,
    OFFBOARDING,
    STALE_DEVICES,
    UNOWNED,
    WARRANTY,
    CoverageGapRow,
    RecoveryRow,
    StaleRow,
    UnownedRow,
    WarrantyRow,
    coverage_gaps,
    offboarding,
    stale_devices,
    unowned,
    warranty,
)
from itam_sync.insight.kpis import KPIS, KpiRow, kpis
from itam_sync.insight.licences import (
    RENEWALS,
    SEATS,
    SPEND,
    RenewalRow,
    SeatRow,
    SpendRow,
    renewals,
    seats,
    spend,
)
from itam_sync.insight.lifecycle import LIFECYCLE, LifecycleEventRow, LifecycleStateRow, lifecycle
from itam_sync.insight.os_eol import OS_EOL, OsEolRow, OsEolTotalRow, os_eol
from itam_sync.insight.refresh import REFRESH, RefreshRow, RefreshTotalRow, refresh
from itam_sync.settings import Settings
from itam_sync.store import Store
from itam_sync.store.repos import Repos

__all__ = [
    "ACCOUNTS_OFFBOARDING", "AccountRow", "accounts_offboarding", "OVERVIEW", "MetricRow", "overview",
    "DEPRECIATION", "LIFECYCLE", "OS_EOL", "REFRESH", "DepreciationRow", "DepreciationTotalRow", "LifecycleEventRow",
    "LifecycleStateRow", "OsEolRow", "OsEolTotalRow", "RefreshRow", "RefreshTotalRow", "ReportFilters",
    "depreciation", "lifecycle", "os_eol", "refresh",
    "DEVICE_ROLES", "INVENTORY_ROLES", "NOT_IN_USE", "PROCUREMENT_STREAMS", "RECOVERED", "REPORTS", "ROLES",
    "ROLE_BY_TYPE", "ROLE_BY_TYPE_STREAM", "WINDOWS", "CoverageGapRow", "KpiRow", "RecoveryRow", "RenewalRow",
    "ReportContext", "ReportInfo", "ReportResult", "SeatRow", "SpendRow", "StaleRow", "UnknownReport", "UnownedRow",
    "WarrantyRow", "coverage_gaps", "get_report", "kpis", "list_reports", "offboarding", "renewals", "role_of",
    "run_report", "seats", "spend", "stale_devices", "unowned", "warranty",
]


@dataclass(frozen=True)
class _Spec:
    info: ReportInfo
    fn: Callable[[Repos, ReportContext], ReportResult]
    after: Callable[[Store, ReportResult], object] | None = None  # run after the read transaction


# Menu order.
REPORTS: dict[str, _Spec] = {s.info.name: s for s in (
    _Spec(OVERVIEW, overview, record_snapshot),
    _Spec(COVERAGE_GAPS, coverage_gaps),
    _Spec(STALE_DEVICES, stale_devices),
    _Spec(OFFBOARDING, offboarding),
    _Spec(ACCOUNTS_OFFBOARDING, accounts_offboarding),
    _Spec(UNOWNED, unowned),
    _Spec(WARRANTY, warranty),
    _Spec(RENEWALS, renewals),
    _Spec(SEATS, seats),
    _Spec(SPEND, spend),
    _Spec(DEPRECIATION, depreciation),
    _Spec(REFRESH, refresh),
    _Spec(OS_EOL, os_eol),
    _Spec(LIFECYCLE, lifecycle),
    _Spec(KPIS, kpis),
)}


def list_reports() -> list[ReportInfo]:
    """Every report, in menu order."""
    return [s.info for s in REPORTS.values()]


def get_report(name: str) -> ReportInfo:
    """A report's description; UnknownReport when there is none by that name."""
    spec = REPORTS.get(name)
    if spec is None:
        raise UnknownReport(f"no report {name!r}; reports: {', '.join(REPORTS)}")
    return spec.info


MAX_DAYS = 36500


def run_report(store: Store, settings: Settings, name: str, days: int | None = None,
               now: datetime | None = None, filters: ReportFilters | None = None) -> ReportResult:
    """Run report `name` in one read transaction. `days` overrides the report's default window; `now` fixes
    the time the report is evaluated at (default: the clock; `--as-of`); `filters` narrow it to a kind,
    department, source connector or location."""
    info = get_report(name)
    if days is not None and not info.takes_days:
        raise OperationError(f"report {name!r} takes no --days")
    if days is not None and not 0 <= days <= MAX_DAYS:
        raise OperationError(f"--days out of range: it must be from 0 to {MAX_DAYS} (100 years), not {days}")
    ctx = ReportContext(settings, (now or clock.now()).astimezone(UTC), days, filters or ReportFilters())
    spec = REPORTS[name]
    with store.begin() as repo:
        result = spec.fn(repo, ctx)
    if spec.after is not None and now is None:  # the overview keeps a KPI snapshot of the store as it is now
        spec.after(store, result)
    return result


def keep_kpi_snapshot(store: Store, settings: Settings) -> bool:
    """After a sync that changed golden records: compute the overview, which keeps a KPI snapshot (the
    dashboard's trend). Never fails the sync: a problem is one warning line."""
    try:
        run_report(store, settings, OVERVIEW.name)
    except Exception as exc:  # noqa: BLE001 - the trend misses one point; the sync itself succeeded
        logging.getLogger(__name__).warning("could not keep a KPI snapshot: %s", exc)
        return False
    return True
