"""Lifecycle: how many assets are in each lifecycle state, and the recent state changes as lifecycle events.

The events are the merge log's set/clear rows of the golden field `lifecycle_state` (planned -> ordered ->
in_stock -> deployed -> in_repair -> retired / disposed): the log already records when a value changed, from
what, to what, and which source (or operator) decided it, so no engine change is needed. `itam-sync log` and
the asset page show the same rows as lifecycle events (`lifecycle_event`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from itam_sync.insight.base import (
    FILTER_FIELDS,
    AssetMatcher,
    ReportContext,
    ReportInfo,
    ReportResult,
    load_full,
    make_result,
    val,
    with_totals,
)
from itam_sync.model.canonical import LIFECYCLE_STATES
from itam_sync.store.repos import Repos

LIFECYCLE = ReportInfo(
    "lifecycle", "Lifecycle states and events",
    "Assets per lifecycle state, and the lifecycle events (state changes, with the source that made them) of "
    "the last N days.", 30, "events of the last N days")
FIELD = "lifecycle_state"
UNKNOWN = "(unknown)"


def is_lifecycle_event(row: dict[str, Any]) -> bool:
    """Whether a merge-log row (as `log_rows` returns it) is a lifecycle event: a change of an asset's
    lifecycle_state."""
    return row.get("field") == FIELD and row.get("action") in ("set", "clear") and row.get("entity_type") == "asset"


def lifecycle_event(old: Any, new: Any) -> str:
    """A lifecycle event in words: 'in_stock -> deployed', 'retired (was unknown)'."""
    return f"{old or UNKNOWN} -> {new or UNKNOWN}"


@dataclass
class LifecycleEventRow:
    """An asset's lifecycle_state changed (from the merge log)."""

    log_id: int
    at: str
    asset_id: int
    serial_number: str | None
    hostname: str | None
    kind: str | None
    from_state: str | None
    to_state: str | None
    event: str  # "in_stock -> deployed"
    source: str | None  # the connector (or "manual") whose value won
    run_id: int | None
    actor: str | None  # the operator, for manual overrides


@dataclass
class LifecycleStateRow:
    """How many assets are in one lifecycle state now."""

    state: str
    assets: int  # seen by a live source
    missing: int  # no live source sees it any more


def _loads(v: str | None) -> Any:
    return json.loads(v) if v is not None else None


def lifecycle(repo: Repos, ctx: ReportContext) -> ReportResult:
    """Assets per lifecycle state (totals) and the lifecycle events of the last --days (default 30), newest
    first."""
    days = ctx.days if ctx.days is not None else 30
    matcher = AssetMatcher(repo, ctx)
    fields = (FIELD, *FILTER_FIELDS)
    counts: Counter[tuple[str, str]] = Counter()
    passing: set[int] = set()
    for eid, st, entries in repo.reports.report_values("asset", fields):
        g = dict(zip(fields, entries, strict=True))
        if not matcher.match(eid, g):
            continue
        passing.add(eid)
        if st in ("active", "missing"):
            counts[(val(g, FIELD) or UNKNOWN, st)] += 1
    since = (ctx.now - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = ctx.now_iso
    events = [e for e in repo.log.report_field_changes(FIELD, "asset", since)
              if e[1] in passing and e[2] <= until]
    full = load_full(repo, sorted({e[1] for e in events}))
    rows = []
    for log_id, eid, at, old, new, source, run_id, actor in reversed(events):
        g = full.get(eid, {})
        before, after = _loads(old), _loads(new)
        rows.append(LifecycleEventRow(log_id, at, eid, val(g, "serial_number"), val(g, "hostname"), val(g, "kind"),
                                      before, after, lifecycle_event(before, after), source, run_id, actor))
    order = {s: i for i, s in enumerate((*LIFECYCLE_STATES, UNKNOWN))}
    states = sorted({s for s, _ in counts}, key=lambda s: (order.get(s, len(order)), s))
    totals = [LifecycleStateRow(s, counts[(s, "active")], counts[(s, "missing")]) for s in states]
    result = make_result(LIFECYCLE, ctx, LifecycleEventRow, rows, {"days": days})
    return with_totals(result, "Assets per lifecycle state", LifecycleStateRow, totals)
