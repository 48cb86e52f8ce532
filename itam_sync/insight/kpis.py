"""The headline KPIs: % of in-use assets with an owner, managed, protected; the offboarding recovery rate."""

from __future__ import annotations

import json
from dataclasses import dataclass

from itam_sync.insight.base import (
    FILTER_FIELDS,
    RECOVERED,
    AssetMatcher,
    ReportContext,
    ReportInfo,
    ReportResult,
    make_result,
    pct,
    val,
)
from itam_sync.insight.base import in_use as asset_in_use
from itam_sync.store.repos import Repos

KPIS = ReportInfo("kpis", "KPIs", "% of in-use assets with an owner, managed, protected; offboarding recovery rate.",
                  None)


@dataclass
class KpiRow:
    """One headline number with its numerator, denominator and definition."""

    kpi: str
    value: float | None  # a percentage, 0..100 (rounded to 1 place); None when the denominator is 0
    numerator: int
    denominator: int
    definition: str


_KPI_FIELDS = ("lifecycle_state", "mdm_managed", "edr_protected", *FILTER_FIELDS)


def kpis(repo: Repos, ctx: ReportContext) -> ReportResult:
    """% of in-use assets with an owner, managed (MDM), protected (EDR); the offboarding recovery rate."""
    matcher = AssetMatcher(repo, ctx)
    people = matcher.people
    in_use = owned = managed = protected = 0
    outstanding = recovered_in_place = 0
    holders: dict[int, str] = {}  # asset -> current holder (lower case), for the reassignment check
    passing: set[int] = set()  # assets that pass the filters
    for eid, st, entries in repo.reports.report_values("asset", _KPI_FIELDS):
        g = dict(zip(_KPI_FIELDS, entries, strict=True))
        if not matcher.match(eid, g):
            continue
        passing.add(eid)
        holder = val(g, "assigned_to")
        if holder:
            holders[eid] = str(holder).strip().lower()
        if asset_in_use(st, g):
            in_use += 1
            owned += bool(holder)
            managed += val(g, "mdm_managed") is True
            protected += val(g, "edr_protected") is True
        p = people.get(holders[eid]) if holder else None
        if p is not None and p.status == "terminated":
            if val(g, "lifecycle_state") in RECOVERED:
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
            if old is None or eid in reassigned or eid not in passing:
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
        KpiRow("assets_with_owner_pct", pct(owned, in_use), owned, in_use,
               "in-use assets with an assigned_to / in-use assets"),
        KpiRow("managed_pct", pct(managed, in_use), managed, in_use,
               "in-use assets with mdm_managed true / in-use assets"),
        KpiRow("protected_pct", pct(protected, in_use), protected, in_use,
               "in-use assets with edr_protected true / in-use assets"),
        KpiRow("offboarding_recovery_pct", pct(recovered, recovered + outstanding), recovered,
               recovered + outstanding,
               "assets of terminated holders that were recovered (lifecycle returned, in_stock, retired or disposed, "
               "or reassigned on or after the holder's end date) / those plus the ones still outstanding"),
    ]
    notes = ["in use: entity active and lifecycle_state not planned, ordered, in_stock, returned, retired or "
             "disposed"]
    return make_result(KPIS, ctx, KpiRow, rows, notes=notes)

