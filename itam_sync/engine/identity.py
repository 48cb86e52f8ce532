"""Identity resolution: which source records describe the same real thing.

Each record yields match keys ("serial_number:C02FK1ABQ6L4"), strongest first. A key belongs to at most one
entity. A record joins the entity owning its strongest key, unless that entity holds a *different* value of
a single-valued key kind (two serials): such a link is refused and recorded as a conflict, never merged
silently. A record that matches nothing becomes an entity of its own (nothing seen is lost). When one
record's keys point at two compatible entities, they are merged into one. Operator pins (link/unlink) win
over keys and hold across runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from itam_sync.model.canonical import EntityType
from itam_sync.model.identifiers import is_junk_serial, mac_is_matchable, uuid_match_key
from itam_sync.settings import IdentityConfig

log = logging.getLogger(__name__)

# Kinds where one real thing has exactly one value: two different values mean two different things.
SINGLE_VALUED: dict[EntityType, frozenset[str]] = {
    EntityType.ASSET: frozenset({"instance_id", "serial_number", "hardware_uuid", "entra_device_id", "udid",
                                 "imei"}),
    EntityType.PERSON: frozenset({"employee_id"}),
    EntityType.SUBSCRIPTION: frozenset({"sku_id"}),
}
WEAK_PREFIX = "~"  # weak keys (hostname) are stored with this prefix and never outrank a strong one


@dataclass(frozen=True)
class IdentityPolicy:
    """Compiled identity settings: key fields per entity, junk values, weak keys."""

    key_fields: dict[EntityType, tuple[str, ...]]
    hostname_weak_key: bool
    junk_serials: frozenset[str]
    non_matching_macs: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: IdentityConfig) -> IdentityPolicy:
        return cls(
            key_fields={EntityType.ASSET: tuple(cfg.asset_keys), EntityType.PERSON: tuple(cfg.person_keys),
                        EntityType.SUBSCRIPTION: tuple(cfg.subscription_keys)},
            hostname_weak_key=cfg.hostname_weak_key,
            junk_serials=frozenset("".join(s.split()).upper() for s in cfg.junk_serials),
            non_matching_macs=tuple(m.lower().replace(":", "").replace("-", "") for m in cfg.non_matching_macs),
        )

    def match_keys(self, entity: EntityType, fields: dict[str, Any]) -> list[str]:
        """The record's match keys, strongest first; junk and non-matching values left out."""
        keys: list[str] = []
        for kind in self.key_fields[entity]:
            value = fields.get(kind)
            if value is None or value == "":
                continue
            if kind == "product":  # subscriptions without a SKU id: vendor + product name
                vendor = str(fields.get("vendor") or "").strip().lower()
                keys.append(f"product:{vendor}|{str(value).strip().lower()}")
                continue
            for v in value if isinstance(value, list) else (value,):
                key = self._key(kind, v)
                if key is not None:
                    keys.append(key)
        if entity is EntityType.ASSET and self.hostname_weak_key and fields.get("hostname"):
            keys.append(f"{WEAK_PREFIX}hostname:{fields['hostname']}")
        return keys

    def _key(self, kind: str, v: Any) -> str | None:
        s = str(v)
        if kind == "serial_number":
            if is_junk_serial(s) or "".join(s.split()).upper() in self.junk_serials:
                return None
        elif kind == "mac_addresses":
            if not mac_is_matchable(s) or s.startswith(self.non_matching_macs):
                return None
            kind = "mac"
        elif kind == "hardware_uuid":
            s = uuid_match_key(s)
        elif kind in ("udid", "entra_device_id"):
            s = s.strip().lower()  # sources disagree on the case of these ids
        elif kind in ("email", "email_aliases"):
            kind, s = "email", s.lower()
        return f"{kind}:{s}"


def key_kind(key: str) -> str:
    return key.split(":", 1)[0]


class KeyIndex(Protocol):
    """What resolution needs from the store (the repository implements it)."""

    def owners(self, entity: EntityType, keys: Iterable[str]) -> dict[str, int]: ...
    def keys_of(self, entity_ids: Iterable[int]) -> dict[int, set[str]]: ...


@dataclass(slots=True)
class RecordToResolve:
    """A staged record whose identity must be (re)decided."""

    record_id: int
    entity: EntityType
    keys: list[str]
    entity_id: int | None  # its current entity, if any
    pinned_to: int | None = None  # operator link/unlink decision


@dataclass
class Resolution:
    """What one batch decided; the runner writes it and logs it."""

    links: list[tuple[int, int, int | None, str]] = field(default_factory=list)  # record, entity, previous, why
    new_keys: list[tuple[str, str, int]] = field(default_factory=list)  # entity_type, key, entity_id
    merges: list[tuple[int, int, str, str]] = field(default_factory=list)  # from, into, via key, entity type
    conflicts: list[tuple[int, str, int | None, int, str]] = field(default_factory=list)
    new_entities: list[tuple[int, str]] = field(default_factory=list)  # id, entity_type
    dirty: set[int] = field(default_factory=set)


def _incompatible(entity: EntityType, a: set[str], b: set[str]) -> str | None:
    """Why keys `a` and `b` cannot be one thing (a single-valued kind with disjoint values), or None."""
    single = SINGLE_VALUED[entity]
    kinds_a: dict[str, set[str]] = {}
    for k in a:
        kind = key_kind(k)
        if kind in single:
            kinds_a.setdefault(kind, set()).add(k)
    for kind, values in kinds_a.items():
        other = {k for k in b if key_kind(k) == kind}
        if other and not (values & other):
            mine = ",".join(sorted(v.split(":", 1)[1] for v in values))
            theirs = ",".join(sorted(v.split(":", 1)[1] for v in other))
            return f"different {kind} ({mine} vs {theirs})"
    return None


def resolve(records: list[RecordToResolve], index: KeyIndex, new_entity_id: Callable[[EntityType], int]
            ) -> Resolution:
    """Decide the entity of every record in a batch; later records see earlier decisions."""
    res = Resolution()
    by_type: dict[EntityType, list[RecordToResolve]] = {}
    for r in records:
        by_type.setdefault(r.entity, []).append(r)
    for entity, recs in by_type.items():
        owner = index.owners(entity, {k for r in recs for k in r.keys})
        ent_ids = set(owner.values()) | {r.entity_id for r in recs if r.entity_id is not None} | {
            r.pinned_to for r in recs if r.pinned_to is not None}
        keys_of = index.keys_of(ent_ids)
        merged_into: dict[int, int] = {}

        def live(eid: int, merged_into: dict[int, int] = merged_into) -> int:
            while eid in merged_into:
                eid = merged_into[eid]
            return eid

        for r in recs:
            own = set(r.keys)
            target: int | None = None
            why = ""
            if r.pinned_to is not None:
                target, why = live(r.pinned_to), "manual link"
            else:
                for k in r.keys:
                    if k not in owner:
                        continue
                    e = live(owner[k])
                    if e == target:
                        continue
                    reason = _incompatible(entity, own, keys_of.get(e, set()))
                    if target is None:
                        if reason is None and (not k.startswith(WEAK_PREFIX) or not _has_strong(own)):
                            target, why = e, f"matched {k.lstrip(WEAK_PREFIX)}"
                        elif reason is not None:
                            res.conflicts.append((r.record_id, k, None, e, f"{k} is shared with entity {e}: {reason}"))
                        continue
                    # A second entity reached by a weaker key: merge when nothing contradicts.
                    reason = reason or _incompatible(entity, keys_of.get(target, set()), keys_of.get(e, set()))
                    if reason is None and not k.startswith(WEAK_PREFIX):
                        res.merges.append((e, target, k, entity.value))
                        merged_into[e] = target
                        keys_of.setdefault(target, set()).update(keys_of.pop(e, set()))
                        for kk, oe in list(owner.items()):
                            if oe == e:
                                owner[kk] = target
                        res.dirty.update((e, target))
                    elif reason is not None:
                        res.conflicts.append((r.record_id, k, target, e, f"{k} is shared with entity {e}: {reason}"))
                if target is None and r.entity_id is not None:
                    cur = live(r.entity_id)
                    if _incompatible(entity, own, keys_of.get(cur, set()) - own) is None:
                        target, why = cur, "kept (no key points elsewhere)"
            if target is None:
                target = new_entity_id(entity)
                why = "new entity" + ("" if r.keys else " (record has no match key)")
                res.new_entities.append((target, entity.value))
                keys_of[target] = set()
            for k in r.keys:
                if k not in owner:
                    owner[k] = target
                    keys_of.setdefault(target, set()).add(k)
                    res.new_keys.append((entity.value, k, target))
            if r.entity_id != target:
                res.links.append((r.record_id, target, r.entity_id, why))
                if r.entity_id is not None:
                    res.dirty.add(r.entity_id)
            res.dirty.add(target)
    return res


def _has_strong(keys: set[str]) -> bool:
    return any(not k.startswith(WEAK_PREFIX) for k in keys)
