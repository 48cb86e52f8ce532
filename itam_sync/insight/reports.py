"""ITAM reports over the golden records: coverage gaps, stale devices, offboarding recovery, ownership,
warranty and renewal windows, licence seats, spend by department and the headline KPIs.

Every report is a plain function `(repo, ctx) -> ReportResult`: typed dataclass rows plus a `columns` list,
usable as a table, JSON (`ReportResult.to_json()`) or CSV (`ReportResult.write_csv()`). Callers (the CLI, the
web UI and API) use the stable entry points:

    list_reports() -> list[ReportInfo]
    run_report(store, settings, name, days=None, now=None) -> ReportResult

Golden records are JSON documents ({field: [value, source, observed_at]}); reports stream them in id-ordered
batches and filter in Python (see README "Audit, time travel and reports" for the definitions and timings).

Definitions shared by several reports (documented in the README):
- an asset is *in use* when its entity is active (some live source sees it) and its lifecycle_state is not
  planned, ordered, in_stock, returned, retired or disposed (an unknown state counts as in use);
- a *recovered* lifecycle state is returned, in_stock, retired or disposed;
- a connector's *role* (mdm, edr, idp, cloud, hr, procurement, warranty, other) comes from its `role:` in the
  config, else from ROLE_BY_TYPE / ROLE_BY_TYPE_STREAM below, else (csv/jsonl files) from its stream name.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from dataclasses import field as dc_field
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any

from itam_sync.engine.operations import OperationError
from itam_sync.settings import Settings
from itam_sync.store import Store
from itam_sync.store.repos import Repos

log = logging.getLogger(__name__)

# -- connector roles ---------------------------------------------------------------------------------------
ROLES = ("mdm", "edr", "idp", "cloud", "hr", "procurement", "warranty", "other")
ROLE_BY_TYPE: dict[str, str] = {
    "intune": "mdm", "jamf": "mdm", "kandji": "mdm",
    "crowdstrike": "edr", "sentinelone": "edr", "defender": "edr",
    "okta": "idp", "entra": "idp", "google_workspace": "idp",
    "workday": "hr", "bamboohr": "hr",
    "procurement": "procurement", "apple_business_manager": "procurement",
    "dell_warranty": "warranty", "lenovo_warranty": "warranty",
    "aws": "cloud", "azure": "cloud", "gcp": "cloud",
}
# Streams whose role differs from their connector type's (Google Workspace manages devices too).
ROLE_BY_TYPE_STREAM: dict[tuple[str, str], str] = {
    ("google_workspace", "chromeos_devices"): "mdm",
    ("google_workspace", "mobile_devices"): "mdm",
}
# File connectors (csv, jsonl) carry no role of their own: a procurement-like stream name makes them one.
PROCUREMENT_STREAMS = frozenset({"orders", "purchases", "purchase_orders", "procurement", "po_lines", "invoices"})
INVENTORY_ROLES = frozenset({"mdm", "edr", "procurement"})  # systems that are meant to list every asset
DEVICE_ROLES = frozenset({"mdm", "edr", "idp", "cloud"})  # systems that see a device working

NOT_IN_USE = frozenset({"planned", "ordered", "in_stock", "returned", "retired", "disposed"})
RECOVERED = frozenset({"returned", "in_stock", "retired", "disposed"})
WINDOWS = (30, 60, 90)


def role_of(settings: Settings, connector: str, stream: str) -> str:
    """The role of a connector instance's stream (see the module docstring for the order of rules)."""
    for c in settings.connectors:
        if c.name == connector:
            if c.role:
                return c.role
            by_stream = ROLE_BY_TYPE_STREAM.get((c.type, stream))
            if by_stream:
                return by_stream
            if c.type in ROLE_BY_TYPE:
                return ROLE_BY_TYPE[c.type]
            return "procurement" if stream in PROCUREMENT_STREAMS else "other"
    return "other"  # a connector no longer configured


# -- results -----------------------------------------------------------------------------------------------
class UnknownReport(OperationError):
    """No report has that name."""


@dataclass(frozen=True)
class ReportInfo:
    """What a report is, for `report --list`, the web UI's menu and the API's index."""

    name: str
    title: str
    description: str
    days_default: int | None  # the --days used when none is given (None: no window unless given)
    days_help: str = ""  # what --days means for this report; empty: the report takes no --days

    @property
    def takes_days(self) -> bool:
        return bool(self.days_help)


@dataclass
class ReportResult:
    """A report's rows (dataclass instances, all of one type) and their `columns`, ready for table/JSON/CSV."""

    name: str
    title: str
    columns: list[str]
    rows: list[Any]
    generated_at: str
    params: dict[str, Any] = dc_field(default_factory=dict)
    notes: list[str] = dc_field(default_factory=list)

    def as_dicts(self) -> list[dict[str, Any]]:
        """Rows as plain dicts (column -> value), in column order."""
        return [asdict(r) for r in self.rows]

    def to_json(self) -> dict[str, Any]:
        """The whole report as a JSON-ready dict."""
        return {"name": self.name, "title": self.title, "generated_at": self.generated_at, "params": self.params,
                "columns": self.columns, "rows": self.as_dicts(), "notes": self.notes}

    def write_csv(self, fh: IO[str]) -> None:
        """A header line with the columns, then one line per row (lists joined with ';')."""
        writer = csv.writer(fh)
        writer.writerow(self.columns)
        for r in self.as_dicts():
            writer.writerow([_csv_cell(r[c]) for c in self.columns])

    def to_csv(self) -> str:
        buf = io.StringIO()
        self.write_csv(buf)
        return buf.getvalue()


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, list):
        return ";".join(map(str, v))
    return v


@dataclass
class ReportContext:
    """What every report is evaluated against: the config (connector roles), the time and the --days value."""

    settings: Settings
    now: datetime
    days: int | None

    @property
    def now_iso(self) -> str:
        return self.now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def today(self) -> date:
        return self.now.astimezone(UTC).date()


# -- row types ---------------------------------------------------------------------------------------------
@dataclass
class CoverageGapRow:
    """An asset missing from a system that should know it."""

    gap: str  # mdm-without-edr | edr-not-managed | idp-or-cloud-not-in-inventory | procured-never-seen
    asset_id: int
    serial_number: str | None
    hostname: str | None
    kind: str | None
    model: str | None
    assigned_to: str | None
    lifecycle_state: str | None
    last_seen: str | None
    seen_by: list[str]  # roles of the live source records feeding it


@dataclass
class StaleRow:
    """An asset whose last_seen is older than the report's --days."""

    asset_id: int
    serial_number: str | None
    hostname: str | None
    kind: str | None
    assigned_to: str | None
    last_seen: str
    last_seen_source: str | None
    days_since_seen: int
    lifecycle_state: str | None


@dataclass
class RecoveryRow:
    """An asset still held by a terminated or suspended person (the offboarding recovery list)."""

    asset_id: int
    serial_number: str | None
    hostname: str | None
    kind: str | None
    model: str | None
    assigned_to: str
    holder_id: int
    holder_name: str | None
    holder_status: str
    holder_end_date: str | None
    holder_department: str | None
    lifecycle_state: str | None
    last_seen: str | None
    purchase_cost: float | None
    currency: str | None


@dataclass
class UnownedRow:
    """An in-use asset with no assigned_to."""

    asset_id: int
    serial_number: str | None
    hostname: str | None
    kind: str | None
    model: str | None
    lifecycle_state: str | None
    department: str | None
    last_seen: str | None
    sources: list[str]  # connectors feeding it


@dataclass
class WarrantyRow:
    """An asset whose warranty ends within the horizon."""

    asset_id: int
    serial_number: str | None
    hostname: str | None
    kind: str | None
    model: str | None
    assigned_to: str | None
    warranty_end: str
    days_left: int
    window: int  # the smallest of 30/60/90 (or the --days horizon) that contains days_left


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


@dataclass
class KpiRow:
    """One headline number with its numerator, denominator and definition."""

    kpi: str
    value: float | None  # a percentage, 0..100 (rounded to 1 place); None when the denominator is 0
    numerator: int
    denominator: int
    definition: str


# -- helpers -----------------------------------------------------------------------------------------------
def _v(golden: dict[str, Any], name: str) -> Any:
    entry = golden.get(name)
    return entry[0] if entry is not None else None


def _scan(repo: Repos, fields: tuple[str, ...], status: tuple[str, ...] = ("active",),
          entity_type: str = "asset") -> Iterator[tuple[int, dict[str, Any]]]:
    """(id, {field: golden entry or None}) of the entities in `status`, with only `fields` extracted (by the
    database): reports filter on a few fields, then load whole records for the rows they keep (_full)."""
    for eid, st, entries in repo.reports.report_values(entity_type, fields):
        if st in status:
            yield eid, dict(zip(fields, entries, strict=True))


def _full(repo: Repos, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Whole golden records of the kept rows."""
    return {i: g for i, (_t, g, _s) in repo.entities.goldens(ids).items()}


def _in_use(status: str, golden: dict[str, Any]) -> bool:
    return status == "active" and _v(golden, "lifecycle_state") not in NOT_IN_USE


def _days_between(a: date, iso_date: str) -> int | None:
    try:
        return (date.fromisoformat(iso_date[:10]) - a).days
    except ValueError:
        return None


def _window(days_left: int, horizon: int) -> int:
    for w in (*WINDOWS, horizon):
        if days_left <= w:
            return w
    return horizon


def _result(name: str, ctx: ReportContext, row_type: type, rows: list[Any], params: dict[str, Any] | None = None,
            notes: list[str] | None = None) -> ReportResult:
    return ReportResult(name, REPORTS[name].info.title, [f.name for f in fields(row_type)], rows, ctx.now_iso,
                        params or {}, notes or [])


@dataclass
class _Person:
    id: int
    name: str | None
    status: str | None
    end_date: str | None
    department: str | None


def _people_by_ref(repo: Repos) -> dict[str, _Person]:
    """Every person under each reference an asset's assigned_to may hold: e-mail, aliases, employee id."""
    out: dict[str, _Person] = {}
    for pid, g in _scan(repo, ("display_name", "status", "end_date", "department", "email", "employee_id",
                               "email_aliases"), ("active", "missing"), "person"):
        p = _Person(pid, _v(g, "display_name"), _v(g, "status"), _v(g, "end_date"), _v(g, "department"))
        refs = [_v(g, "email"), _v(g, "employee_id"), *(_v(g, "email_aliases") or [])]
        for ref in refs:
            if ref:
                out.setdefault(str(ref).strip().lower(), p)
    return out


def _roles_of_assets(repo: Repos, settings: Settings
                     ) -> tuple[dict[int, int], dict[int, int], set[str]]:
    """(entity -> bitmask of roles of its live records, entity -> bitmask of roles of any record ever,
    connectors whose role is unknown)."""
    bit = {r: 1 << i for i, r in enumerate(ROLES)}
    cache: dict[tuple[str, str], int] = {}
    live: dict[int, int] = defaultdict(int)
    ever: dict[int, int] = defaultdict(int)
    unknown: set[str] = set()
    for eid, connector, stream, missing in repo.reports.report_record_sources("asset"):
        key = (connector, stream)
        b = cache.get(key)
        if b is None:
            role = role_of(settings, connector, stream)
            b = cache[key] = bit[role]
            if role == "other":
                unknown.add(connector)
        ever[eid] |= b
        if not missing:
            live[eid] |= b
    return live, ever, unknown


def _mask(roles: frozenset[str]) -> int:
    return sum(1 << ROLES.index(r) for r in roles)


def _role_names(mask: int) -> list[str]:
    return [r for i, r in enumerate(ROLES) if mask & (1 << i)]


# -- reports -----------------------------------------------------------------------------------------------
def coverage_gaps(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Assets missing from a system that should know them (active assets only)."""
    live, ever, unknown = _roles_of_assets(repo, ctx.settings)
    inventory, device = _mask(INVENTORY_ROLES), _mask(DEVICE_ROLES)
    idp_cloud = _mask(frozenset({"idp", "cloud"}))
    procurement = _mask(frozenset({"procurement"}))
    found: list[tuple[str, int, int]] = []
    for eid, g in _scan(repo, ("mdm_managed", "edr_protected", "lifecycle_state")):
        mdm, edr = _v(g, "mdm_managed") is True, _v(g, "edr_protected") is True
        roles = live.get(eid, 0)
        gaps = []
        if mdm and not edr:
            gaps.append("mdm-without-edr")
        if edr and not mdm:
            gaps.append("edr-not-managed")
        if roles & idp_cloud and not roles & inventory:
            gaps.append("idp-or-cloud-not-in-inventory")
        if (ever.get(eid, 0) & procurement and not ever.get(eid, 0) & device
                and _v(g, "lifecycle_state") not in ("retired", "disposed")):
            gaps.append("procured-never-seen")
        found += [(gap, eid, roles) for gap in gaps]
    full = _full(repo, sorted({eid for _, eid, _ in found}))
    rows = []
    for gap, eid, roles in found:
        g = full[eid]
        rows.append(CoverageGapRow(gap, eid, _v(g, "serial_number"), _v(g, "hostname"), _v(g, "kind"),
                                   _v(g, "model"), _v(g, "assigned_to"), _v(g, "lifecycle_state"),
                                   _v(g, "last_seen"), _role_names(roles)))
    order = {g: i for i, g in enumerate(("mdm-without-edr", "edr-not-managed", "idp-or-cloud-not-in-inventory",
                                         "procured-never-seen"))}
    rows.sort(key=lambda r: (order[r.gap], r.asset_id))
    notes = [f"asset sources with no known role, counted as neither inventory nor device sources (set `role:` "
             f"in the config): {', '.join(sorted(unknown))}"] if unknown else []
    return _result("coverage-gaps", ctx, CoverageGapRow, rows, notes=notes)


def stale_devices(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Active assets not seen for more than --days (default 30) days."""
    days = ctx.days if ctx.days is not None else 30
    cutoff = (ctx.now - timedelta(days=days)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    kept = []
    for eid, g in _scan(repo, ("last_seen", "lifecycle_state")):
        seen = g["last_seen"]
        if seen is None or not isinstance(seen[0], str) or seen[0] >= cutoff:
            continue
        if _v(g, "lifecycle_state") not in ("retired", "disposed"):
            kept.append(eid)
    rows = []
    for eid, g in _full(repo, kept).items():
        seen = g["last_seen"]
        try:
            then = datetime.strptime(seen[0][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            continue
        rows.append(StaleRow(eid, _v(g, "serial_number"), _v(g, "hostname"), _v(g, "kind"), _v(g, "assigned_to"),
                             seen[0], seen[1], int((ctx.now - then).total_seconds() // 86400),
                             _v(g, "lifecycle_state")))
    rows.sort(key=lambda r: (r.last_seen, r.asset_id))
    return _result("stale-devices", ctx, StaleRow, rows, {"days": days})


def offboarding(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Assets still held by terminated or suspended people and not yet recovered."""
    people = _people_by_ref(repo)
    kept: dict[int, _Person] = {}
    for eid, g in _scan(repo, ("assigned_to", "lifecycle_state"), ("active", "missing")):
        holder = _v(g, "assigned_to")
        if not holder or _v(g, "lifecycle_state") in RECOVERED:
            continue
        p = people.get(str(holder).strip().lower())
        if p is not None and p.status in ("terminated", "suspended"):
            kept[eid] = p
    rows = []
    for eid, g in _full(repo, list(kept)).items():
        p, holder = kept[eid], _v(g, "assigned_to")
        rows.append(RecoveryRow(eid, _v(g, "serial_number"), _v(g, "hostname"), _v(g, "kind"), _v(g, "model"),
                                holder, p.id, p.name, p.status or "", p.end_date, p.department,
                                _v(g, "lifecycle_state"), _v(g, "last_seen"), _v(g, "purchase_cost"),
                                _v(g, "currency")))
    rows.sort(key=lambda r: (r.holder_status != "terminated", r.assigned_to, r.asset_id))
    return _result("offboarding", ctx, RecoveryRow, rows)


def unowned(repo: Repos, ctx: ReportContext) -> ReportResult:
    """In-use assets without an owner (assigned_to empty)."""
    rows = []
    kept = [eid for eid, g in _scan(repo, ("assigned_to", "lifecycle_state"))
            if _in_use("active", g) and not _v(g, "assigned_to")]
    sources = repo.entities.source_keys_of(kept)
    for eid, g in sorted(_full(repo, kept).items()):
        conns = sorted({s.split("/", 1)[0] for s in sources.get(eid, [])})
        rows.append(UnownedRow(eid, _v(g, "serial_number"), _v(g, "hostname"), _v(g, "kind"), _v(g, "model"),
                               _v(g, "lifecycle_state"), _v(g, "department"), _v(g, "last_seen"), conns))
    return _result("unowned", ctx, UnownedRow, rows)


def warranty(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Assets whose warranty ends within --days (default 90), bucketed by 30/60/90 days."""
    horizon = ctx.days if ctx.days is not None else 90
    today = ctx.today
    lo, hi = today.isoformat(), (today + timedelta(days=horizon)).isoformat()
    kept = []
    for eid, g in _scan(repo, ("warranty_end", "lifecycle_state"), ("active", "missing")):
        end = _v(g, "warranty_end")
        if isinstance(end, str) and lo <= end[:10] <= hi and _v(g, "lifecycle_state") not in ("retired", "disposed"):
            kept.append(eid)
    rows = []
    for eid, g in _full(repo, kept).items():
        end = _v(g, "warranty_end")
        left = _days_between(today, end)
        if left is None:
            continue
        rows.append(WarrantyRow(eid, _v(g, "serial_number"), _v(g, "hostname"), _v(g, "kind"), _v(g, "model"),
                                _v(g, "assigned_to"), end[:10], left, _window(left, horizon)))
    rows.sort(key=lambda r: (r.days_left, r.asset_id))
    return _result("warranty", ctx, WarrantyRow, rows, {"days": horizon})


def _int(v: Any) -> int | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _subscriptions(repo: Repos) -> Iterator[tuple[int, dict[str, Any]]]:
    for sid, g, st in repo.entities.iter_entities("subscription"):
        if st == "active":
            yield sid, g


def _seats_assigned(g: dict[str, Any]) -> int | None:
    n = _int(_v(g, "seats_assigned"))
    if n is None and isinstance(_v(g, "assignees"), list):
        n = len(_v(g, "assignees"))
    return n


def renewals(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Subscriptions renewing within --days (default 90), bucketed by 30/60/90 days."""
    horizon = ctx.days if ctx.days is not None else 90
    today = ctx.today
    lo, hi = today.isoformat(), (today + timedelta(days=horizon)).isoformat()
    rows = []
    for sid, g in _subscriptions(repo):
        when = _v(g, "renewal_date")
        if not isinstance(when, str) or not (lo <= when[:10] <= hi):
            continue
        left = _days_between(today, when)
        if left is None:
            continue
        rows.append(RenewalRow(sid, _v(g, "product"), _v(g, "vendor"), when[:10], left, _window(left, horizon),
                               _int(_v(g, "seats_purchased")), _seats_assigned(g), _num(_v(g, "cost")),
                               _v(g, "currency"), _v(g, "billing_period"), _v(g, "owner")))
    rows.sort(key=lambda r: (r.days_left, r.subscription_id))
    return _result("renewals", ctx, RenewalRow, rows, {"days": horizon})


def seats(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Per subscription: seats bought vs assigned, the unused rate and, when cost per seat is known, its cost."""
    rows = []
    per_year = {"monthly": 12, "annual": 1}
    for sid, g in _subscriptions(repo):
        bought, used = _int(_v(g, "seats_purchased")), _seats_assigned(g)
        cost, period = _num(_v(g, "cost")), _v(g, "billing_period")
        unused = max(bought - used, 0) if bought is not None and used is not None else None
        rate = round(unused / bought, 4) if unused is not None and bought else None
        per_seat = round(cost / bought, 4) if cost is not None and bought else None
        unused_cost = round(per_seat * unused, 2) if per_seat is not None and unused is not None else None
        yearly = round(unused_cost * per_year[period], 2) if unused_cost is not None and period in per_year else None
        rows.append(SeatRow(sid, _v(g, "product"), _v(g, "vendor"), bought, used, unused, rate, cost,
                            _v(g, "currency"), period, per_seat, unused_cost, yearly))
    rows.sort(key=lambda r: (-(r.unused_cost_per_year or 0), -(r.unused_seats or 0), r.subscription_id))
    return _result("seats", ctx, SeatRow, rows)


def spend(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Purchase cost by the asset's department, or its holder's when it has none; --days: bought in the last N
    days only (default: all time)."""
    people = _people_by_ref(repo)
    since = (ctx.today - timedelta(days=ctx.days)).isoformat() if ctx.days is not None else None
    groups: dict[tuple[str, str | None], list[Any]] = {}
    for _eid, g in _scan(repo, ("purchase_cost", "purchase_date", "department", "assigned_to", "currency"),
                         ("active", "missing")):
        cost = _num(_v(g, "purchase_cost"))
        if cost is None:
            continue
        if since is not None:
            bought = _v(g, "purchase_date")
            if not isinstance(bought, str) or bought[:10] < since:
                continue
        dept, via_holder = _v(g, "department"), 0
        if not dept:
            holder = _v(g, "assigned_to")
            p = people.get(str(holder).strip().lower()) if holder else None
            dept = p.department if p else None
            via_holder = 1 if dept else 0
        acc = groups.setdefault((dept or "(none)", _v(g, "currency")), [0, 0.0, 0])
        acc[0] += 1
        acc[1] += cost
        acc[2] += via_holder
    rows = [SpendRow(d, cur, n, round(total, 2), vh) for (d, cur), (n, total, vh) in groups.items()]
    rows.sort(key=lambda r: (r.department == "(none)", -r.spend, r.department, r.currency or ""))
    return _result("spend", ctx, SpendRow, rows, {"days": ctx.days} if ctx.days is not None else {})


def _pct(n: int, d: int) -> float | None:
    return round(100.0 * n / d, 1) if d else None


_KPI_FIELDS = ("assigned_to", "lifecycle_state", "mdm_managed", "edr_protected")


def kpis(repo: Repos, ctx: ReportContext) -> ReportResult:
    """% of in-use assets with an owner, managed (MDM), protected (EDR); the offboarding recovery rate."""
    people = _people_by_ref(repo)
    in_use = owned = managed = protected = 0
    outstanding = recovered_in_place = 0
    holders: dict[int, str] = {}  # asset -> current holder (lower case), for the reassignment check
    for eid, st, entries in repo.reports.report_values("asset", _KPI_FIELDS):
        g = dict(zip(_KPI_FIELDS, entries, strict=True))
        holder = _v(g, "assigned_to")
        if holder:
            holders[eid] = str(holder).strip().lower()
        if _in_use(st, g):
            in_use += 1
            owned += bool(holder)
            managed += _v(g, "mdm_managed") is True
            protected += _v(g, "edr_protected") is True
        p = people.get(holders[eid]) if holder else None
        if p is not None and p.status == "terminated":
            if _v(g, "lifecycle_state") in RECOVERED:
                recovered_in_place += 1
            else:
                outstanding += 1
    # Reassigned: the merge log shows the asset's assigned_to moved away from a terminated person on or after
    # their end date (any time when HR has no end date), and it is not held by a terminated person now.
    terminated = {ref: p for ref, p in people.items() if p.status == "terminated"}
    reassigned: set[int] = set()
    if terminated:
        loads = json.loads
        for eid, old, _new, at in repo.log.report_assignment_changes():
            if old is None or eid in reassigned:
                continue
            ref = str(loads(old)).strip().lower()
            p = terminated.get(ref)
            if p is None or (p.end_date and at[:10] < p.end_date[:10]):
                continue
            now_holder = holders.get(eid)
            q = people.get(now_holder) if now_holder else None
            if q is None or q.status != "terminated":
                reassigned.add(eid)
    recovered = recovered_in_place + len(reassigned)
    rows = [
        KpiRow("assets_with_owner_pct", _pct(owned, in_use), owned, in_use,
               "in-use assets with an assigned_to / in-use assets"),
        KpiRow("managed_pct", _pct(managed, in_use), managed, in_use,
               "in-use assets with mdm_managed true / in-use assets"),
        KpiRow("protected_pct", _pct(protected, in_use), protected, in_use,
               "in-use assets with edr_protected true / in-use assets"),
        KpiRow("offboarding_recovery_pct", _pct(recovered, recovered + outstanding), recovered,
               recovered + outstanding,
               "assets of terminated holders that were recovered (lifecycle returned, in_stock, retired or disposed, "
               "or reassigned on or after the holder's end date) / those plus the ones still outstanding"),
    ]
    notes = ["in use: entity active and lifecycle_state not planned, ordered, in_stock, returned, retired or "
             "disposed"]
    return _result("kpis", ctx, KpiRow, rows, notes=notes)


# -- registry ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    info: ReportInfo
    fn: Callable[[Repos, ReportContext], ReportResult]


REPORTS: dict[str, _Spec] = {s.info.name: s for s in (
    _Spec(ReportInfo("coverage-gaps", "Coverage gaps",
                     "Assets in MDM without an EDR agent, with EDR but not managed, seen by IdP or cloud but in no "
                     "inventory, and bought but never seen by any device source (possibly lost).", None),
          coverage_gaps),
    _Spec(ReportInfo("stale-devices", "Stale devices", "Active assets whose last_seen is older than N days.", 30,
                     "not seen for more than N days"), stale_devices),
    _Spec(ReportInfo("offboarding", "Offboarding recovery list",
                     "Assets still held by terminated or suspended people and not yet returned.", None),
          offboarding),
    _Spec(ReportInfo("unowned", "Assets without an owner", "In-use assets with no assigned_to.", None), unowned),
    _Spec(ReportInfo("warranty", "Warranty ending", "Assets whose warranty ends within 30/60/90 days.", 90,
                     "horizon in days"), warranty),
    _Spec(ReportInfo("renewals", "Subscription renewals", "Subscriptions renewing within 30/60/90 days.", 90,
                     "horizon in days"), renewals),
    _Spec(ReportInfo("seats", "Licence seats", "Seats bought vs assigned: unused seats, unused rate and its cost.",
                     None), seats),
    _Spec(ReportInfo("spend", "Spend by department",
                     "Purchase cost by the asset's department, or its holder's when the asset has none.", None,
                     "only assets bought in the last N days (default: all)"), spend),
    _Spec(ReportInfo("kpis", "KPIs", "% of in-use assets with an owner, managed, protected; offboarding recovery "
                                     "rate.", None), kpis),
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


def run_report(store: Store, settings: Settings, name: str, days: int | None = None,
               now: datetime | None = None) -> ReportResult:
    """Run report `name` in one read transaction. `days` overrides the report's default window; `now` fixes
    the time the report is evaluated at (default: the clock)."""
    info = get_report(name)
    if days is not None and not info.takes_days:
        raise OperationError(f"report {name!r} takes no --days")
    if days is not None and days < 0:
        raise OperationError(f"--days must be 0 or more, not {days}")
    ctx = ReportContext(settings, (now or datetime.now(UTC)).astimezone(UTC), days)
    with store.begin() as repo:
        return REPORTS[name].fn(repo, ctx)
