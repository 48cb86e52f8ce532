"""Explain identity both ways: for each source record of an entity, the key that joined it, and the identifiers it
holds that were not used, and why (ambiguous, placeholder, weak, conflicting, non-matching); and which records
are stale registrations of the same hardware (a re-imaged laptop's old enrolment) rather than another device."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from itam_sync.engine.identity import IdentityPolicy, Member, joined_by, key_order
from itam_sync.model.canonical import EntityType
from itam_sync.model.identifiers import is_junk_serial
from itam_sync.model.keys import WEAK_PREFIX
from itam_sync.store.repos import Repos


@dataclass
class RecordIdentity:
    """How one source record came to be part of its entity."""

    record: str
    joined_by: str | None  # the strongest usable key it shares with another record of the entity
    how: str  # one sentence
    unused: list[dict[str, str]] = field(default_factory=list)  # {"value", "reason", "detail"}
    stale: str | None = None  # a stale registration of the same hardware: why


def _raw_placeholders(raw: str) -> list[str]:
    """Serial-like values in the raw record that are firmware placeholders ("To Be Filled By O.E.M.")."""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return []
    out: list[str] = []

    def walk(node: Any, depth: int = 0) -> None:
        if depth > 4:
            return
        if isinstance(node, dict):
            for k, v in node.items():
                if "serial" in str(k).lower() and isinstance(v, str) and v.strip() and is_junk_serial(v):
                    out.append(v)
                else:
                    walk(v, depth + 1)
        elif isinstance(node, list):
            for v in node:
                walk(v, depth + 1)
    walk(data)
    return out


def record_identities(repo: Repos, policy: IdentityPolicy, entity_id: int, entity_type: str
                      ) -> list[RecordIdentity]:
    """Per record of the entity (live and missing), in reference order."""
    etype = EntityType(entity_type)
    rows = repo.identity.explain_records(entity_id)
    ambiguous = repo.identity.ambiguous(entity_type)
    blocked = set(ambiguous)
    conflicts: dict[int, list[tuple[str, str]]] = {}
    for rid, key, _e, _o, reason in repo.identity.conflicts_of([r[0] for r in rows]):
        conflicts.setdefault(rid, []).append((key, reason))
    pins = repo.conflicts.pins([r[0] for r in rows])
    members = [Member(r[0], f"{r[1]}/{r[2]}/{r[3]}", f"{r[1]}/{r[2]}", tuple(json.loads(r[4] or "[]")), entity_id,
                      bool(r[7])) for r in rows]
    order = key_order(policy.kinds, etype)
    newest: dict[str, tuple[str, str]] = {}
    for m, r in zip(members, rows, strict=True):
        if not m.missing and (r[8] or "") >= newest.get(m.source, ("", ""))[0]:
            newest[m.source] = (r[8] or "", m.ref)
    out: list[RecordIdentity] = []
    for m, r in zip(members, rows, strict=True):
        fields = json.loads(r[5] or "{}")
        joined = joined_by(m, members, blocked, order)
        if m.rid in pins:
            how = "placed here by an operator (`itam-sync link`/`unlink`)"
        elif joined is not None:
            how = f"joined on {joined.lstrip(WEAK_PREFIX)}"
        elif len(members) == 1:
            how = "the entity's only record"
        else:
            how = "shares no usable key with the other records (joined through the records it bridges, or kept)"
        unused: list[dict[str, str]] = []
        for k in m.keys:
            if k in ambiguous:
                unused.append({"value": k, "reason": "ambiguous", "detail": ambiguous[k][1]})
            elif k[0] == WEAK_PREFIX and k != joined:
                unused.append({"value": k, "reason": "weak",
                               "detail": "a host name joins only records that have no strong key"})
        for k, reason in conflicts.get(m.rid, ()):
            unused.append({"value": k, "reason": "conflicting", "detail": reason})
        for u in policy.unused_values(etype, fields):
            detail = {"placeholder": "a placeholder, not a real serial",
                      "non-matching": "a virtual, randomised, multicast or configured dock/adapter MAC",
                      "weak": "host names are not match keys (identity.hostname_weak_key is off)"}[u.reason]
            unused.append({"value": f"{u.field}:{u.value}", "reason": u.reason, "detail": detail})
        if "serial_number" not in fields:
            for v in _raw_placeholders(r[6]):
                unused.append({"value": f"serial_number:{v}", "reason": "placeholder",
                               "detail": "a firmware placeholder, not a real serial"})
        stale = None
        top = newest.get(m.source)
        if top is not None and top[1] != m.ref:
            seen = f"missing since {r[9]}" if m.missing else f"last seen {r[8] or 'unknown'}"
            stale = f"stale registration of this hardware ({seen}); {top[1]} is the newest from {m.source}"
        out.append(RecordIdentity(m.ref, joined, how, unused, stale))
    return sorted(out, key=lambda x: x.record)


def identity_lines(identities: list[RecordIdentity]) -> list[str]:
    """The explain command's lines for each record's identity."""
    lines = []
    for ri in identities:
        lines.append(f"  {ri.record}: {ri.how}" + (f"; {ri.stale}" if ri.stale else ""))
        for u in ri.unused:
            lines.append(f"      not used: {u['value']} ({u['reason']}: {u['detail']})")
    return lines
