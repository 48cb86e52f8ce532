"""What every report shares: connector roles, the result and context types, and the scanning helpers.

Golden records are JSON documents ({field: [value, source, observed_at]}); reports stream them in id-ordered
batches (`scan`, which extracts only the fields a report filters on) and load whole records only for the rows
they keep (`load_full`).

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
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from dataclasses import field as dc_field
from datetime import UTC, date, datetime
from typing import IO, Any

from itam_sync.engine.operations import OperationError
from itam_sync.model.csv_safety import csv_cell
from itam_sync.settings import Settings
from itam_sync.store.repos import Repos

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
    # Totals (per department, per quarter, per state ...): rows of another dataclass, shown under the table,
    # in the JSON as "totals", and as the CSV / table with `--totals`.
    totals: list[Any] = dc_field(default_factory=list)
    totals_columns: list[str] = dc_field(default_factory=list)
    totals_title: str = ""

    def as_dicts(self) -> list[dict[str, Any]]:
        """Rows as plain dicts (column -> value), in column order."""
        return [asdict(r) for r in self.rows]

    def totals_dicts(self) -> list[dict[str, Any]]:
        """Totals rows as plain dicts."""
        return [asdict(r) for r in self.totals]

    def to_json(self) -> dict[str, Any]:
        """The whole report as a JSON-ready dict."""
        out = {"name": self.name, "title": self.title, "generated_at": self.generated_at, "params": self.params,
               "columns": self.columns, "rows": self.as_dicts(), "notes": self.notes}
        if self.totals_columns:
            out.update(totals_title=self.totals_title, totals_columns=self.totals_columns,
                       totals=self.totals_dicts())
        return out

    def totals_only(self) -> ReportResult:
        """The totals as a result of their own (for `--totals`: CSV and table of the totals)."""
        return ReportResult(self.name, self.totals_title or self.title, self.totals_columns, self.totals,
                            self.generated_at, self.params, self.notes)

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
    return csv_cell(v)  # lists joined with ';'; text a spreadsheet would run as a formula escaped (model/csv_safety)


@dataclass(frozen=True)
class ReportFilters:
    """Filters every report takes (CLI options, web query parameters, API): an asset's kind, its department
    (or its holder's), a connector that feeds it (`source`, a connector instance name) and its location.
    Matching is case-insensitive; None means any."""

    kind: str | None = None
    department: str | None = None
    source: str | None = None
    location: str | None = None

    def active(self) -> bool:
        return any(v for v in (self.kind, self.department, self.source, self.location))

    def as_params(self) -> dict[str, str]:
        """The filters that are set, for a result's params."""
        return {k: v for k, v in (("kind", self.kind), ("department", self.department), ("source", self.source),
                                  ("location", self.location)) if v}


@dataclass
class ReportContext:
    """What every report is evaluated against: the config (connector roles), the time, the --days value and
    the filters."""

    settings: Settings
    now: datetime
    days: int | None
    filters: ReportFilters = dc_field(default_factory=ReportFilters)

    @property
    def now_iso(self) -> str:
        return self.now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def today(self) -> date:
        return self.now.astimezone(UTC).date()



# -- helpers -----------------------------------------------------------------------------------------------
def val(golden: dict[str, Any], name: str) -> Any:
    """The value of a golden field (None when absent)."""
    entry = golden.get(name)
    return entry[0] if entry is not None else None


def scan(repo: Repos, fields: tuple[str, ...], status: tuple[str, ...] = ("active",),
         entity_type: str = "asset") -> Iterator[tuple[int, dict[str, Any]]]:
    """(id, {field: golden entry or None}) of the entities in `status`, with only `fields` extracted (by the
    database): reports filter on a few fields, then load whole records for the rows they keep (load_full)."""
    for eid, st, entries in repo.reports.report_values(entity_type, fields):
        if st in status:
            yield eid, dict(zip(fields, entries, strict=True))


def load_full(repo: Repos, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Whole golden records of the kept rows."""
    return {i: g for i, (_t, g, _s) in repo.entities.goldens(ids).items()}


def in_use(status: str, golden: dict[str, Any]) -> bool:
    """In use: active and not in a planned/ordered/stock/returned/retired/disposed lifecycle state."""
    return status == "active" and val(golden, "lifecycle_state") not in NOT_IN_USE


def days_between(a: date, iso_date: str) -> int | None:
    """Days from `a` to an ISO date (negative when it is earlier); None when it is not a date."""
    try:
        return (date.fromisoformat(iso_date[:10]) - a).days
    except ValueError:
        return None


def window_of(days_left: int, horizon: int) -> int:
    """The smallest of 30/60/90 (or the horizon) that contains days_left."""
    for w in (*WINDOWS, horizon):
        if days_left <= w:
            return w
    return horizon


def make_result(info: ReportInfo, ctx: ReportContext, row_type: type, rows: list[Any],
                params: dict[str, Any] | None = None, notes: list[str] | None = None) -> ReportResult:
    """A report's result: its rows with the columns of their dataclass `row_type`; the filters in effect join
    the params."""
    return ReportResult(info.name, info.title, [f.name for f in fields(row_type)], rows, ctx.now_iso,
                        {**(params or {}), **ctx.filters.as_params()}, notes or [])


def with_totals(result: ReportResult, title: str, row_type: type, totals: list[Any]) -> ReportResult:
    """`result` with its totals (rows of dataclass `row_type`)."""
    result.totals, result.totals_title = totals, title
    result.totals_columns = [f.name for f in fields(row_type)]
    return result


@dataclass
class Person:
    """What the reports need of a person (looked up by any of their references)."""

    id: int
    name: str | None
    status: str | None
    end_date: str | None
    department: str | None


def people_by_ref(repo: Repos) -> dict[str, Person]:
    """Every person under each reference an asset's assigned_to may hold: e-mail, aliases, employee id."""
    out: dict[str, Person] = {}
    for pid, g in scan(repo, ("display_name", "status", "end_date", "department", "email", "employee_id",
                               "email_aliases"), ("active", "missing"), "person"):
        p = Person(pid, val(g, "display_name"), val(g, "status"), val(g, "end_date"), val(g, "department"))
        refs = [val(g, "email"), val(g, "employee_id"), *(val(g, "email_aliases") or [])]
        for ref in refs:
            if ref:
                out.setdefault(str(ref).strip().lower(), p)
    return out


def roles_of_assets(repo: Repos, settings: Settings
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


def role_mask(roles: frozenset[str]) -> int:
    """The bitmask of a set of roles (as roles_of_assets builds them)."""
    return sum(1 << ROLES.index(r) for r in roles)


def role_names(mask: int) -> list[str]:
    """The roles in a bitmask, in ROLES order."""
    return [r for i, r in enumerate(ROLES) if mask & (1 << i)]


def as_int(v: Any) -> int | None:
    """An int, or None for booleans, None and what does not parse."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def as_num(v: Any) -> float | None:
    """A float, or None for booleans, None and what does not parse."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def pct(n: int, d: int) -> float | None:
    """n/d as a percentage rounded to 1 place; None when d is 0."""
    return round(100.0 * n / d, 1) if d else None


def fold(v: Any) -> str:
    """A value compared case-insensitively (filters, references)."""
    return str(v).strip().casefold() if v is not None else ""


# Fields every asset scan reads so the filters can be applied without loading whole records.
FILTER_FIELDS = ("kind", "department", "location", "assigned_to")


class AssetMatcher:
    """Applies a report's filters to assets, and says which department an asset is charged to (its own, else
    its holder's). People and source connectors are read once, on first use."""

    def __init__(self, repo: Repos, ctx: ReportContext, entity_type: str = "asset") -> None:
        self.repo = repo
        self.filters = ctx.filters
        self.entity_type = entity_type
        self._people: dict[str, Person] | None = None
        self._fed_by_source: set[int] | None = None

    @property
    def people(self) -> dict[str, Person]:
        if self._people is None:
            self._people = people_by_ref(self.repo)
        return self._people

    def holder(self, golden: dict[str, Any]) -> Person | None:
        """The person an asset's assigned_to refers to, if known."""
        ref = val(golden, "assigned_to")
        return self.people.get(fold(ref)) if ref else None

    def department(self, golden: dict[str, Any]) -> tuple[str | None, bool]:
        """(department, taken from the holder): the asset's own department, else its holder's."""
        dept = val(golden, "department")
        if dept:
            return str(dept), False
        p = self.holder(golden)
        return (p.department, True) if p is not None and p.department else (None, False)

    def _fed(self) -> set[int]:
        if self._fed_by_source is None:
            want = fold(self.filters.source)
            self._fed_by_source = {eid for eid, conn, _s, missing in
                                   self.repo.reports.report_record_sources(self.entity_type)
                                   if not missing and fold(conn) == want}
        return self._fed_by_source

    def fed_by_source(self, eid: int) -> bool:
        """Whether a live record of the `source` filter's connector feeds the entity (True with no such filter)."""
        return not self.filters.source or eid in self._fed()

    def match(self, eid: int, golden: dict[str, Any]) -> bool:
        """Whether an entity (with at least FILTER_FIELDS in `golden`) passes the filters."""
        f = self.filters
        if not f.active():
            return True
        if f.kind and fold(val(golden, "kind")) != fold(f.kind):
            return False
        if f.location and fold(val(golden, "location")) != fold(f.location):
            return False
        if f.department:
            dept = val(golden, "department") if self.entity_type != "asset" else self.department(golden)[0]
            if fold(dept) != fold(f.department):
                return False
        return not f.source or eid in self._fed()
