"""Operator actions on identifiers: list the ambiguous ones, block or allow a value, re-check every value.

`block` makes a value ambiguous whatever its records say (a help-desk loaner host name, a shared USB adapter);
`allow` makes a value usable whatever its records say (overrides detection and `identity.ambiguous_values`).
Both are held across runs, re-decide every record holding the value at once (splitting or joining entities),
and are written to the merge log with the operator and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from itam_sync import clock
from itam_sync.engine.ambiguity import PatternError, parse_identifier
from itam_sync.engine.merge.apply import apply_merge
from itam_sync.engine.merge.rules import Rules
from itam_sync.engine.operations import OperationError, current_actor
from itam_sync.engine.resolution import PassResult, policy_for, reresolve_records
from itam_sync.model.canonical import EntityType
from itam_sync.model.keys import key_kind
from itam_sync.settings import Settings
from itam_sync.store import Store

CHUNK = 2000


@dataclass
class IdentifierChange:
    """What a block, allow or re-check did."""

    key: str
    entity_type: str
    action: str
    ambiguous: int
    released: int
    split: int
    merged: int
    entities_touched: int


def _now() -> str:
    return clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def _rules(settings: Settings) -> Rules:
    return Rules(settings.precedence, settings.connector_types(), clock.now())


def identifier_key(settings: Settings, value: str) -> tuple[str, EntityType]:
    """The match key an operator means ("3C-18-A0-0B-7C-11", "mac:...", "serial_number:...") and its type."""
    kinds = policy_for(settings).kinds
    try:
        key, prefix = parse_identifier(value, kinds)
    except PatternError as exc:
        raise OperationError(str(exc)) from None
    if prefix:
        raise OperationError(f"{value!r} is a prefix: block a whole OUI or range with identity.ambiguous_values in "
                             f"the config (e.g. ambiguous_values: [\"{value}\"]), one value at a time here")
    types = kinds.entity_of_kind(key_kind(key))
    if not types:
        raise OperationError(f"{value!r}: no entity type has a key kind {key_kind(key)!r}")
    return key, types[0]


def decide(store: Store, settings: Settings, value: str, action: str, reason: str,
           actor: str | None = None) -> IdentifierChange:
    """Block or allow one value (held across runs) and re-decide every record holding it."""
    if action not in ("block", "allow"):
        raise OperationError(f"unknown action {action!r}: block or allow")
    if not reason.strip():
        raise OperationError(f"`identifiers {action}` needs --reason: auditors will ask why")
    actor = actor or current_actor()
    key, etype = identifier_key(settings, value)
    at = _now()
    with store.begin(immediate=True) as repo:
        repo.identity.decide(etype.value, key, action, reason, actor, at)
        res = reresolve_records(repo, policy_for(settings), [], at=at, actor=actor, forced={etype: {key}})
        apply_merge(repo, sorted(res.dirty), _rules(settings), None, at, actor=actor)
    return _change(key, etype.value, action, res)


def recheck(store: Store, settings: Settings, actor: str | None = None) -> IdentifierChange:
    """Judge every value again and re-cluster what changes (after an upgrade, or to verify the store)."""
    actor = actor or current_actor()
    total = PassResult()
    policy = policy_for(settings)
    for etype in EntityType:
        after = ""
        while True:
            at = _now()
            with store.begin(immediate=True) as repo:
                keys = repo.identity.keys_after(etype.value, after, CHUNK)
                if not keys:
                    break
                after = keys[-1]
                res = reresolve_records(repo, policy, [], at=at, actor=actor, forced={etype: set(keys)})
                apply_merge(repo, sorted(res.dirty), _rules(settings), None, at, actor=actor)
            for name in ("ambiguous", "released", "split", "merged"):
                setattr(total, name, getattr(total, name) + getattr(res, name))
            total.dirty |= res.dirty
    return _change("*", "*", "recheck", total)


def _change(key: str, etype: str, action: str, res: PassResult) -> IdentifierChange:
    return IdentifierChange(key, etype, action, res.ambiguous, res.released, res.split, res.merged, len(res.dirty))


def list_identifiers(store: Store, settings: Settings, entity_type: str | None = None) -> list[dict[str, Any]]:
    """Every ambiguous value (value, kind, scope, records, entities, since, why) and every operator decision
    (blocks of values not seen yet, allows), in value order."""
    kinds = policy_for(settings).kinds
    with store.begin() as repo:
        rows = repo.identity.list_ambiguous(entity_type)
        decisions = {(t, k): (a, r, who, when) for t, k, a, r, who, when in repo.identity.decisions(entity_type)}
    out: list[dict[str, Any]] = []
    for row in rows:
        d = decisions.pop((row["entity_type"], row["key"]), None)
        out.append(_row(kinds, row["entity_type"], row["key"], "ambiguous", row["origin"], row["reason"],
                        row["records"], row["entities"], row["since"], d))
    for (t, k), d in decisions.items():
        status = "allowed" if d[0] == "allow" else "blocked"
        why = f"{'allowed' if d[0] == 'allow' else 'blocked'} by {d[2] or 'an operator'}: {d[1]}"
        out.append(_row(kinds, t, k, status, "operator", why, 0, 0, d[3], d))
    out.sort(key=lambda r: (r["entity_type"], r["value"]))
    return out


def _row(kinds: Any, etype: str, key: str, status: str, origin: str, why: str, records: int, entities: int,
         since: str | None, decision: tuple[str, str, str | None, str] | None) -> dict[str, Any]:
    kind = kinds.of_key(EntityType(etype), key)
    return {"entity_type": etype, "value": key, "kind": key_kind(key),
            "scope": kind.scope.value if kind is not None else "", "status": status, "origin": origin,
            "records": records, "entities": entities, "since": since, "why": why,
            "decision": None if decision is None else {"action": decision[0], "reason": decision[1],
                                                        "actor": decision[2], "at": decision[3]}}
