"""`report os-eol`: in-use devices whose operating system is past its end of support, or reaches it within N days;
and every device whose OS version cannot be matched to a release line, with the reason (os_catalog.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from itam_sync.insight.base import (
    FILTER_FIELDS,
    AssetMatcher,
    ReportContext,
    ReportInfo,
    ReportResult,
    in_use,
    load_full,
    make_result,
    val,
    with_totals,
)
from itam_sync.insight.os_catalog import OsSupport, SupportCache, load_catalog
from itam_sync.store.repos import Repos

OS_EOL = ReportInfo(
    "os-eol", "Operating systems past end of support",
    "In-use devices whose OS release is past its end of support or reaches it within N days, and the devices "
    "whose OS version could not be matched (with the reason).", 90, "also list releases ending within N days")
NOT_MAPPED = "not mapped"


@dataclass
class OsEolRow:
    """A device on an OS past (or near) its end of support, or whose OS could not be matched."""

    asset_id: int
    serial_number: str | None
    hostname: str | None
    kind: str | None
    assigned_to: str | None
    department: str | None
    os_name: str | None
    os_version: str | None
    release: str | None  # "windows 11 23H2 (enterprise)"; None when not mapped
    end_of_support: str | None
    extended_support_end: str | None
    days_left: int | None  # negative: past its end by that many days
    status: str  # "past", "ending" (within N days) or "not mapped"
    note: str  # how the line was chosen, or why none was


@dataclass
class OsEolTotalRow:
    """Devices per release line (and per unmapped os_name / os_version)."""

    status: str
    release: str  # the line, or "os_name os_version" for the ones not mapped
    end_of_support: str | None
    devices: int


_FIELDS = ("os_name", "os_version", "lifecycle_state", *FILTER_FIELDS)


def os_eol(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Devices past end of support or reaching it within --days (default 90), then the ones not mapped."""
    horizon = ctx.days if ctx.days is not None else 90
    catalog = load_catalog(ctx.settings)
    support = SupportCache(ctx.settings, catalog, ctx.today)
    matcher = AssetMatcher(repo, ctx)
    kept: dict[int, OsSupport] = {}
    no_os = 0
    for eid, st, entries in repo.reports.report_values("asset", _FIELDS):
        g = dict(zip(_FIELDS, entries, strict=True))
        if not in_use(st, g) or not matcher.match(eid, g):
            continue
        if not val(g, "os_name") and not val(g, "os_version"):
            no_os += 1
            continue
        sup = support.get(val(g, "os_name"), val(g, "os_version"), val(g, "kind"))
        if sup.line is None or (sup.days_left is not None and sup.days_left <= horizon):
            kept[eid] = sup
    rows = []
    for eid, g in load_full(repo, list(kept)).items():
        sup = kept[eid]
        line = sup.line
        past = sup.days_left is not None and sup.days_left < 0
        status = NOT_MAPPED if line is None else "past" if past else "ending"
        rows.append(OsEolRow(
            eid, val(g, "serial_number"), val(g, "hostname"), val(g, "kind"), val(g, "assigned_to"),
            matcher.department(g)[0], val(g, "os_name"), val(g, "os_version"), line.title if line else None,
            sup.end.isoformat() if sup.end else None,
            line.extended_end.isoformat() if line and line.extended_end else None, sup.days_left, status,
            sup.note or ("from lifecycle.os.entries" if line and line.origin == "config" else "")))
    order = {"past": 0, "ending": 1, NOT_MAPPED: 2}
    rows.sort(key=lambda r: (order[r.status], r.days_left if r.days_left is not None else 0, r.asset_id))
    counts: Counter[tuple[str, str, str | None]] = Counter()
    for r in rows:
        label = r.release or f"{r.os_name or ''} {r.os_version or ''}".strip()
        counts[(r.status, label, r.end_of_support)] += 1
    totals = [OsEolTotalRow(s, rel, end, n) for (s, rel, end), n in
              sorted(counts.items(), key=lambda kv: (order[kv[0][0]], kv[0][2] or "", kv[0][1]))]
    notes = [f"OS data: {catalog.source} (snapshot {catalog.snapshot}, version {catalog.version}); "
             f"Windows edition when not reported: {ctx.settings.lifecycle.os.windows_edition}; support counted: "
             f"{ctx.settings.lifecycle.os.support}"]
    unmapped = sum(1 for r in rows if r.status == NOT_MAPPED)
    if unmapped:
        notes.append(f"{unmapped} in-use devices have an OS version that could not be matched (status "
                     f"'{NOT_MAPPED}', with the reason in `note`)")
    if no_os:
        notes.append(f"{no_os} in-use assets report no os_name or os_version (not listed)")
    result = make_result(OS_EOL, ctx, OsEolRow, rows, {"days": horizon}, notes)
    return with_totals(result, "Devices per release line", OsEolTotalRow, totals)


def unsupported_count(repo: Repos, ctx: ReportContext) -> int:
    """In-use devices on an OS past its end of support (the overview's number; no whole records loaded)."""
    support = SupportCache(ctx.settings, load_catalog(ctx.settings), ctx.today)
    matcher = AssetMatcher(repo, ctx)
    n = 0
    for eid, st, entries in repo.reports.report_values("asset", _FIELDS):
        g = dict(zip(_FIELDS, entries, strict=True))
        if not in_use(st, g) or not (val(g, "os_name") or val(g, "os_version")) or not matcher.match(eid, g):
            continue
        sup = support.get(val(g, "os_name"), val(g, "os_version"), val(g, "kind"))
        n += sup.days_left is not None and sup.days_left < 0
    return n
