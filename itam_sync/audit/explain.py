"""What auditors ask: why does this record say this (explain), and what changed when (the merge log)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from typing import Any

from itam_sync import clock
from itam_sync.audit.identity import RecordIdentity, record_identities
from itam_sync.engine.merge.merger import merge_entity
from itam_sync.engine.merge.rules import Rules
from itam_sync.engine.operations import find_entity
from itam_sync.engine.resolution import policy_for
from itam_sync.model.canonical import EntityType
from itam_sync.settings import Settings
from itam_sync.store import Store


@dataclass
class FieldExplanation:
    """One golden field: the value, who won, how old it is, and who lost and why."""

    field: str
    value: Any
    source: str
    observed_at: str | None
    age: str
    rule: str
    rule_detail: str
    competitors: list[dict[str, Any]] = dc_field(default_factory=list)
    # The operator override behind a `manual` value: value, reason, actor, created_at, expires_at.
    override: dict[str, Any] | None = None


@dataclass
class Explanation:
    entity_id: int
    entity_type: str
    status: str
    records: list[dict[str, Any]]
    fields: list[FieldExplanation]
    history: list[dict[str, Any]]
    # Per source record: the key that joined it, the identifiers it holds that were not used and why, and
    # whether it is a stale registration (audit/identity.py).
    identity: list[RecordIdentity] = dc_field(default_factory=list)


def age_of(at: str | None, now: datetime) -> str:
    if not at:
        return "unknown age"
    try:
        then = datetime.strptime(at[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return "unknown age"
    secs = (now - then).total_seconds()
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= n:
            return f"{int(secs // n)}{unit}"
    return f"{int(max(secs, 0))}s"


def explain(store: Store, settings: Settings, entity_ref: str, history: int = 20) -> Explanation:
    """Every field of an entity: value, winning source, its age, the competing values and why they lost."""
    now = clock.now()
    rules = Rules(settings.precedence, settings.connector_types(), now)
    with store.begin() as repo:
        eid = find_entity(repo, entity_ref)
        gold = repo.entities.goldens([eid]).get(eid)
        if gold is None:
            from itam_sync.engine.operations import OperationError
            raise OperationError(f"no entity {eid}")
        etype, _golden, status = gold
        if status == "merged":
            hist = repo.log.log_rows(entity_id=eid, limit=history)
            return Explanation(eid, etype, status, [], [], hist)
        sources = repo.records.entity_sources([eid]).get(eid, [])
        now_text = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        overrides = repo.overrides.active_overrides([eid], now_text).get(eid, [])
        override_rows = {o["field"]: o for o in repo.overrides.list_overrides(now_text, entity_id=eid)}
        decisions = merge_entity(EntityType(etype), sources, overrides, rules, detail=True)
        records = [{"id": r[0], "record": f"{r[1]}/{r[2]}/{r[3]}", "missing": bool(r[5]), "observed_at": r[6]}
                   for r in repo.records.records_of_entity(eid)]
        hist = repo.log.log_rows(entity_id=eid, limit=history)
        identity = record_identities(repo, policy_for(settings), eid, etype)
    fields = []
    for name in sorted(decisions):
        d = decisions[name]
        rule = rules.rule(EntityType(etype), name)
        detail = {"union": "every live source's values", "latest": "the most recent value wins",
                  "only-source": "the only source with a value", "manual": "operator override",
                  }.get(d.rule, f"order {rule.describe_order()}"
                        + (f", freshness {rule.freshness}" if rule.freshness else ""))
        ov = override_rows.get(name) if d.source == "manual" else None
        if ov is not None:
            detail = _override_detail(ov)
        fields.append(FieldExplanation(
            name, d.value, d.source, d.observed_at, age_of(d.observed_at, now), d.rule, detail,
            [{"source": s, "value": v, "observed_at": at, "age": age_of(at, now), "why_lost": why}
             for s, v, at, why in d.losers],
            None if ov is None else {k: ov[k] for k in ("value", "reason", "actor", "created_at", "expires_at")}))
    return Explanation(eid, etype, status, records, fields, hist, identity)


def _override_detail(ov: dict[str, Any]) -> str:
    """'operator override by ana on 2026-11-02: office move (until 2027-01-01T00:00:00Z)'."""
    until = f" (until {ov['expires_at']})" if ov.get("expires_at") else ""
    return f"operator override by {ov['actor'] or 'unknown'} on {(ov['created_at'] or '')[:10]}: {ov['reason']}{until}"
