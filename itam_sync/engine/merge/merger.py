"""Golden values: one decision per field from every live source's latest value and operator overrides.

Rules, in order: a manual override beats everything; empty never beats a value; the highest-ranked source
wins unless its value is older than the field's freshness window, in which case the freshest lower-ranked
value wins; unranked sources come last, freshest first. `latest` fields take the newest value; `union`
fields (lists such as MAC addresses) take every live source's values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from itam_sync.engine.merge.rules import MANUAL, UNRANKED, FieldRule, Rules
from itam_sync.model.canonical import EntityType
from itam_sync.model.observation import Override, SourceValues


@dataclass(slots=True)
class Decision:
    """The golden value of one field and why it won."""

    value: Any
    source: str
    observed_at: str | None
    rule: str  # short label written to the merge log
    losers: list[tuple[str, Any, str | None, str]] = field(default_factory=list)  # source, value, at, why lost


def _empty(v: Any) -> bool:
    return v is None or v == "" or v == []


def _decide_precedence_fast(rule: FieldRule, cands: list[tuple[str, Any, str | None]]) -> Decision | None:
    """`decide` for the precedence strategy without loser details: one pass, no sorting (the hot path)."""
    ranks = rule.ranks
    top: tuple[str, Any, str | None] | None = None
    top_rank, top_at = UNRANKED + 1, ""
    for c in cands:
        v = c[1]
        if v is None or v == "" or v == []:
            continue
        r = ranks.get(c[0], UNRANKED)
        at = c[2] or ""
        if r < top_rank or (r == top_rank and at > top_at):
            top, top_rank, top_at = c, r, at
    if top is None:
        return None
    if rule.stale_before and top_rank >= 0 and top_at < rule.stale_before:
        fresher, f_at = None, top_at
        for c in cands:
            v = c[1]
            if c is not top and (c[2] or "") > f_at and not (v is None or v == "" or v == []):
                fresher, f_at = c, c[2] or ""
        if fresher is not None:
            return Decision(fresher[1], fresher[0], fresher[2], f"freshness:{rule.freshness}")
    label = MANUAL if top_rank < 0 else "freshest-unranked" if top_rank >= UNRANKED else rule.label
    return Decision(top[1], top[0], top[2], label)


def decide(rule: FieldRule, cands: list[tuple[str, Any, str | None]], detail: bool = False) -> Decision | None:
    """Pick the golden value of one field among (source, value, observed_at) candidates."""
    if not detail and rule.strategy == "precedence":
        return _decide_precedence_fast(rule, cands)
    cands = [c for c in cands if not _empty(c[1])]
    if not cands:
        return None
    if rule.strategy == "union":
        values: list[Any] = []
        for _, v, _ in sorted(cands, key=lambda c: (rule.rank(c[0]), c[0])):
            for item in v if isinstance(v, list) else [v]:
                if item not in values:
                    values.append(item)
        newest = max((c[2] or "" for c in cands), default="") or None
        srcs = sorted({c[0] for c in cands}, key=lambda s: (rule.rank(s), s))
        return Decision(values, srcs[0] if len(srcs) == 1 else "+".join(srcs), newest,
                        "only-source" if len(srcs) == 1 else "union")
    if len(cands) == 1:
        s, v, at = cands[0]
        return Decision(v, s, at, MANUAL if s == MANUAL else "only-source")
    if rule.strategy == "latest":
        ordered = sorted(cands, key=lambda c: (c[2] or "", -rule.rank(c[0])), reverse=True)
        win = ordered[0]
        d = Decision(win[1], win[0], win[2], "latest")
        if detail:
            d.losers = [(s, v, at, "older") for s, v, at in ordered[1:]]
        return d
    # Newest first, then a stable sort by rank: rank ascending, newest first within a rank.
    ordered = sorted(cands, key=lambda c: c[2] or "", reverse=True)
    ordered.sort(key=lambda c: rule.rank(c[0]))
    top = ordered[0]
    label = MANUAL if top[0] == MANUAL else f"precedence:{rule.origin}"
    why_lost = f"lower precedence ({rule.describe_order()})"
    if top[0] != MANUAL and rule.rank(top[0]) >= UNRANKED:
        label = "freshest-unranked"
    rest = ordered[1:]
    if (rule.stale_before and top[0] != MANUAL and (top[2] or "") < rule.stale_before and rest):
        # The top source is stale: the freshest lower source wins.
        fresher = max(rest, key=lambda c: c[2] or "")
        if (fresher[2] or "") > (top[2] or ""):
            win = fresher
            d = Decision(win[1], win[0], win[2], f"freshness:{rule.freshness}")
            if detail:
                d.losers = [(s, v, at, f"older than {rule.freshness}" if s == top[0] else "not the freshest")
                            for s, v, at in ordered if s != win[0]]
            return d
    d = Decision(top[1], top[0], top[2], label)
    if detail:
        d.losers = [(s, v, at, "manual override" if top[0] == MANUAL else why_lost) for s, v, at in rest]
    return d


def merge_entity(entity: EntityType, records: list[SourceValues], overrides: list[Override], rules: Rules,
                 detail: bool = False) -> dict[str, Decision]:
    """Every golden field of one entity."""
    by_field: dict[str, list[tuple[str, Any, str | None]]] = {}
    for rec in records:
        for name, value in rec.fields.items():
            by_field.setdefault(name, []).append((rec.source, value, rec.observed_at))
    for ov in overrides:
        by_field.setdefault(ov.field, []).append((MANUAL, ov.value, ov.created_at))
    out: dict[str, Decision] = {}
    rule_of = rules.rule
    for name, cands in by_field.items():
        if len(cands) == 1 and not detail:
            # The common case (one source knows the field) needs no ranking.
            s, v, at = cands[0]
            if v is None or v == "" or v == []:
                continue
            out[name] = Decision(v, s, at, MANUAL if s == MANUAL else "only-source")
            continue
        d = decide(rule_of(entity, name), cands, detail)
        if d is not None:
            out[name] = d
    return out
