"""Device reports: coverage gaps, stale devices, the offboarding recovery list, unowned assets, warranties."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from itam_sync.insight.base import (
    DEVICE_ROLES,
    FILTER_FIELDS,
    INVENTORY_ROLES,
    RECOVERED,
    AssetMatcher,
    Person,
    ReportContext,
    ReportInfo,
    ReportResult,
    days_between,
    fold,
    in_use,
    load_full,
    make_result,
    role_mask,
    role_names,
    roles_of_assets,
    scan,
    val,
    window_of,
)
from itam_sync.store.repos import Repos

COVERAGE_GAPS = ReportInfo(
    "coverage-gaps", "Coverage gaps",
    "Assets in MDM without an EDR agent, with EDR but not managed, seen by IdP or cloud but in no inventory, and "
    "bought but never seen by any device source (possibly lost).", None)
STALE_DEVICES = ReportInfo("stale-devices", "Stale devices", "Active assets whose last_seen is older than N days.",
                           30, "not seen for more than N days")
OFFBOARDING = ReportInfo("offboarding", "Offboarding recovery list",
                         "Assets still held by terminated or suspended people and not yet returned.", None)
UNOWNED = ReportInfo("unowned", "Assets without an owner", "In-use assets with no assigned_to.", None)
WARRANTY = ReportInfo("warranty", "Warranty expired or ending",
                      "In-use assets whose warranty has expired, and assets whose warranty ends within 30/60/90 days.",
                      90, "horizon in days")
MOBILE_OS = frozenset({"ios", "ipados", "android"})  # an asset with no kind but one of these is a `mobile`


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
    days_left: int  # negative: expired that many days ago
    window: int  # the smallest of 30/60/90 (or the --days horizon) that contains days_left; 0 when expired
    status: str  # "expired" (the device is still in use) or "ending"


# -- reports -----------------------------------------------------------------------------------------------
def coverage_gaps(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Assets missing from a system that should know them (active assets only)."""
    live, ever, unknown = roles_of_assets(repo, ctx.settings)
    inventory, device = role_mask(INVENTORY_ROLES), role_mask(DEVICE_ROLES)
    idp_cloud = role_mask(frozenset({"idp", "cloud"}))
    procurement = role_mask(frozenset({"procurement"}))
    cov = ctx.settings.reports.coverage
    edr_kinds, mdm_kinds = {fold(k) for k in cov.edr_expected}, {fold(k) for k in cov.mdm_expected}
    matcher = AssetMatcher(repo, ctx)
    found: list[tuple[str, int, int]] = []
    skipped: dict[str, int] = {"mdm-without-edr": 0, "edr-not-managed": 0}
    for eid, g in scan(repo, ("mdm_managed", "edr_protected", "lifecycle_state", "os_name", *FILTER_FIELDS)):
        if not matcher.match(eid, g):
            continue
        mdm, edr = val(g, "mdm_managed") is True, val(g, "edr_protected") is True
        kind = _kind_of(g)
        roles = live.get(eid, 0)
        gaps = []
        if mdm and not edr:
            if kind is None or kind in edr_kinds:
                gaps.append("mdm-without-edr")
            else:
                skipped["mdm-without-edr"] += 1
        if edr and not mdm:
            if kind is None or kind in mdm_kinds:
                gaps.append("edr-not-managed")
            else:
                skipped["edr-not-managed"] += 1
        if roles & idp_cloud and not roles & inventory:
            gaps.append("idp-or-cloud-not-in-inventory")
        if (ever.get(eid, 0) & procurement and not ever.get(eid, 0) & device
                and val(g, "lifecycle_state") not in ("retired", "disposed")):
            gaps.append("procured-never-seen")
        found += [(gap, eid, roles) for gap in gaps]
    full = load_full(repo, sorted({eid for _, eid, _ in found}))
    rows = []
    for gap, eid, roles in found:
        g = full[eid]
        rows.append(CoverageGapRow(gap, eid, val(g, "serial_number"), val(g, "hostname"), val(g, "kind"),
                                   val(g, "model"), val(g, "assigned_to"), val(g, "lifecycle_state"),
                                   val(g, "last_seen"), role_names(roles)))
    order = {g: i for i, g in enumerate(("mdm-without-edr", "edr-not-managed", "idp-or-cloud-not-in-inventory",
                                         "procured-never-seen"))}
    rows.sort(key=lambda r: (order[r.gap], r.asset_id))
    notes = [f"asset sources with no known role, counted as neither inventory nor device sources (set `role:` "
             f"in the config): {', '.join(sorted(unknown))}"] if unknown else []
    for gap, n in skipped.items():
        if n:
            lst = "edr_expected" if gap == "mdm-without-edr" else "mdm_expected"
            notes.append(f"{n} assets of kinds not in reports.coverage.{lst} are not counted as {gap}")
    return make_result(COVERAGE_GAPS, ctx, CoverageGapRow, rows, notes=notes)


def _kind_of(golden: dict[str, Any]) -> str | None:
    """An asset's kind for the coverage rules: its own, else `mobile` for a phone or tablet OS, else None."""
    kind = val(golden, "kind")
    if kind:
        return fold(kind)
    return "mobile" if fold(val(golden, "os_name")) in MOBILE_OS else None


def stale_devices(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Active assets not seen for more than --days (default 30) days."""
    days = ctx.days if ctx.days is not None else 30
    cutoff = (ctx.now - timedelta(days=days)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    matcher = AssetMatcher(repo, ctx)
    kept = []
    for eid, g in scan(repo, ("last_seen", "lifecycle_state", *FILTER_FIELDS)):
        seen = g["last_seen"]
        if seen is None or not isinstance(seen[0], str) or seen[0] >= cutoff:
            continue
        if val(g, "lifecycle_state") not in ("retired", "disposed") and matcher.match(eid, g):
            kept.append(eid)
    rows = []
    for eid, g in load_full(repo, kept).items():
        seen = g["last_seen"]
        try:
            then = datetime.strptime(seen[0][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            continue
        rows.append(StaleRow(eid, val(g, "serial_number"), val(g, "hostname"), val(g, "kind"), val(g, "assigned_to"),
                             seen[0], seen[1], int((ctx.now - then).total_seconds() // 86400),
                             val(g, "lifecycle_state")))
    rows.sort(key=lambda r: (r.last_seen, r.asset_id))
    return make_result(STALE_DEVICES, ctx, StaleRow, rows, {"days": days})


def offboarding(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Assets still held by terminated or suspended people and not yet recovered."""
    matcher = AssetMatcher(repo, ctx)
    kept: dict[int, Person] = {}
    for eid, g in scan(repo, ("lifecycle_state", *FILTER_FIELDS), ("active", "missing")):
        holder = val(g, "assigned_to")
        if not holder or val(g, "lifecycle_state") in RECOVERED:
            continue
        p = matcher.holder(g)
        if p is not None and p.status in ("terminated", "suspended") and matcher.match(eid, g):
            kept[eid] = p
    rows = []
    for eid, g in load_full(repo, list(kept)).items():
        p, holder = kept[eid], val(g, "assigned_to")
        rows.append(RecoveryRow(eid, val(g, "serial_number"), val(g, "hostname"), val(g, "kind"), val(g, "model"),
                                holder, p.id, p.name, p.status or "", p.end_date, p.department,
                                val(g, "lifecycle_state"), val(g, "last_seen"), val(g, "purchase_cost"),
                                val(g, "currency")))
    rows.sort(key=lambda r: (r.holder_status != "terminated", r.assigned_to, r.asset_id))
    return make_result(OFFBOARDING, ctx, RecoveryRow, rows)


def unowned(repo: Repos, ctx: ReportContext) -> ReportResult:
    """In-use assets without an owner (assigned_to empty)."""
    rows = []
    matcher = AssetMatcher(repo, ctx)
    kept = [eid for eid, g in scan(repo, ("lifecycle_state", *FILTER_FIELDS))
            if in_use("active", g) and not val(g, "assigned_to") and matcher.match(eid, g)]
    sources = repo.entities.source_keys_of(kept)
    for eid, g in sorted(load_full(repo, kept).items()):
        conns = sorted({s.split("/", 1)[0] for s in sources.get(eid, [])})
        rows.append(UnownedRow(eid, val(g, "serial_number"), val(g, "hostname"), val(g, "kind"), val(g, "model"),
                               val(g, "lifecycle_state"), val(g, "department"), val(g, "last_seen"), conns))
    return make_result(UNOWNED, ctx, UnownedRow, rows)


def warranty(repo: Repos, ctx: ReportContext) -> ReportResult:
    """In-use assets whose warranty has expired, then assets whose warranty ends within --days (default 90),
    bucketed by 30/60/90 days."""
    horizon = ctx.days if ctx.days is not None else 90
    today = ctx.today
    lo, hi = today.isoformat(), (today + timedelta(days=horizon)).isoformat()
    matcher = AssetMatcher(repo, ctx)
    kept = []
    for eid, st, entries in repo.reports.report_values("asset", _WARRANTY_FIELDS):
        g = dict(zip(_WARRANTY_FIELDS, entries, strict=True))
        end = val(g, "warranty_end")
        if st not in ("active", "missing") or not isinstance(end, str) or end[:10] > hi:
            continue
        ending = end[:10] >= lo and val(g, "lifecycle_state") not in ("retired", "disposed")
        expired = end[:10] < lo and in_use(st, g)  # a device still in use, out of warranty
        if (ending or expired) and matcher.match(eid, g):
            kept.append(eid)
    rows = []
    for eid, g in load_full(repo, kept).items():
        end = val(g, "warranty_end")
        left = days_between(today, end)
        if left is None:
            continue
        rows.append(WarrantyRow(eid, val(g, "serial_number"), val(g, "hostname"), val(g, "kind"), val(g, "model"),
                                val(g, "assigned_to"), end[:10], left, window_of(left, horizon) if left >= 0 else 0,
                                "ending" if left >= 0 else "expired"))
    rows.sort(key=lambda r: (r.days_left, r.asset_id))
    return make_result(WARRANTY, ctx, WarrantyRow, rows, {"days": horizon})


_WARRANTY_FIELDS = ("warranty_end", "lifecycle_state", *FILTER_FIELDS)

