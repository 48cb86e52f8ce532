"""Identity resolution: which source records describe the same real thing.

Each record yields match keys ("serial_number:C02FK1ABQ6L4"), strongest first; what a key's value names (the
hardware, one registration, a network interface, ...) is its scope, from the table in `itam_sync.model.keys`.
The partition of records into entities is a pure function of the stored records, so it is the same whatever
order connectors, pages, batches or runs delivered them in:

1. a value held by records that cannot be one thing is *ambiguous* and joins nothing (`engine/ambiguity.py`);
2. records sharing a usable strong key are one entity (union-find), unless that would put two different
   values of a single-valued kind (two serials) in one entity: such a component is split by a greedy pass in
   a canonical order (keys strongest first, groups by their smallest record reference) that refuses each
   contradicting link and records it as a conflict;
3. a record with only weak keys (host name) joins the one entity its weak keys point at, never two;
4. operator pins (`link`, `unlink`) take a record out of the key graph and put it where the operator said.

`engine/resolution.py` applies this to the part of the store a batch touches; `cluster()` is the pure core.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import Any

from itam_sync.model.canonical import EntityType
from itam_sync.model.identifiers import is_junk_serial, mac_is_matchable, uuid_match_key
from itam_sync.model.keys import SCOPE_RANK, SINGLE_VALUED, WEAK_PREFIX, KeyKind, KeyKinds, KeyScope, key_kind
from itam_sync.settings import IdentityConfig

log = logging.getLogger(__name__)

__all__ = ["WEAK_PREFIX", "Clustering", "IdentityPolicy", "Member", "Signatures", "UnusedKey", "cluster", "joined_by",
           "key_kind"]


@dataclass(frozen=True, slots=True)
class UnusedKey:
    """A value a record holds that is not a match key, and why (for `explain`)."""

    field: str
    value: str
    reason: str  # placeholder | non-matching | weak


@dataclass(frozen=True)
class IdentityPolicy:
    """Compiled identity settings: key fields per entity, the scope table, junk values, weak keys."""

    key_fields: dict[EntityType, tuple[str, ...]]
    hostname_weak_key: bool
    junk_serials: frozenset[str]
    non_matching_macs: tuple[str, ...]
    kinds: KeyKinds = field(default_factory=KeyKinds)
    ambiguous_values: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: IdentityConfig, extra_kinds: Iterable[KeyKind] = ()) -> IdentityPolicy:
        """The policy of `identity:`; `extra_kinds` are key kinds connectors declare (their fields are keys too)."""
        extra = list(extra_kinds)
        kinds = KeyKinds(extra)
        fields = {EntityType.ASSET: list(cfg.asset_keys), EntityType.PERSON: list(cfg.person_keys),
                  EntityType.SUBSCRIPTION: list(cfg.subscription_keys)}
        for kind in extra:
            for f in kind.fields:
                if f not in fields[kind.entity]:
                    fields[kind.entity].append(f)
        return cls(
            key_fields={e: tuple(v) for e, v in fields.items()},
            hostname_weak_key=cfg.hostname_weak_key,
            junk_serials=frozenset("".join(s.split()).upper() for s in cfg.junk_serials),
            non_matching_macs=tuple(m.lower().replace(":", "").replace("-", "") for m in cfg.non_matching_macs),
            kinds=kinds,
            ambiguous_values=tuple(getattr(cfg, "ambiguous_values", ()) or ()),
        )

    def match_keys(self, entity: EntityType, fields: dict[str, Any]) -> list[str]:
        """The record's match keys, strongest first; junk and non-matching values left out."""
        keys: list[str] = []
        for name in self.key_fields[entity]:
            value = fields.get(name)
            if value is None or value == "":
                continue
            if name == "product":  # subscriptions without a SKU id: vendor + product name
                vendor = str(fields.get("vendor") or "").strip().lower()
                keys.append(f"product:{vendor}|{str(value).strip().lower()}")
                continue
            for v in value if isinstance(value, list) else (value,):
                key = self._key(entity, name, v)
                if key is not None and key not in keys:
                    keys.append(key)
        if entity is EntityType.ASSET and self.hostname_weak_key and fields.get("hostname"):
            keys.append(f"{WEAK_PREFIX}hostname:{fields['hostname']}")
        return keys

    def unused_values(self, entity: EntityType, fields: dict[str, Any]) -> list[UnusedKey]:
        """Values in key fields that are not match keys, with the reason (explain's "not used" list)."""
        out: list[UnusedKey] = []
        for name in self.key_fields[entity]:
            value = fields.get(name)
            for v in value if isinstance(value, list) else (value,):
                if v is None or v == "" or name == "product":
                    continue
                if self._key(entity, name, v) is None:
                    reason = "placeholder" if name == "serial_number" else "non-matching"
                    out.append(UnusedKey(name, str(v), reason))
        if entity is EntityType.ASSET and fields.get("hostname") and not self.hostname_weak_key:
            out.append(UnusedKey("hostname", str(fields["hostname"]), "weak"))
        return out

    def _key(self, entity: EntityType, name: str, v: Any) -> str | None:
        s = str(v)
        kind = self.kinds.by_field(entity, name)
        kname = kind.name if kind is not None else name
        if name == "serial_number":
            if is_junk_serial(s) or "".join(s.split()).upper() in self.junk_serials:
                return None
        elif name == "mac_addresses":
            if not mac_is_matchable(s) or s.startswith(self.non_matching_macs):
                return None
        elif name == "hardware_uuid":
            s = uuid_match_key(s)
        elif name in ("udid", "entra_device_id"):
            s = s.strip().lower()  # sources disagree on the case of these ids
        elif name in ("email", "email_aliases"):
            s = s.lower()
        return f"{kname}:{s}"


@dataclass(slots=True)
class Member:
    """One stored (or just staged) record inside the part of the store a resolution pass looks at."""

    rid: int
    ref: str  # connector/stream/source_key: the order-independent name of the record
    source: str  # connector/stream
    keys: tuple[str, ...]
    entity_id: int | None  # its entity before this pass
    missing: bool = False
    pinned: int | None = None  # operator link/unlink: the entity it must stay in
    sv: frozenset[str] = frozenset()  # its keys of single-valued kinds (serial, UUID, ...)


class Signatures:
    """Per record, computed once per pass: its single-valued keys by kind, and its network keys."""

    def __init__(self, kinds: KeyKinds, entity: EntityType) -> None:
        self.kinds = kinds.prefixes(entity)
        self._single: dict[int, dict[str, frozenset[str]]] = {}
        self._net: dict[int, frozenset[str]] = {}

    def kind(self, key: str) -> KeyKind | None:
        return self.kinds.get(key[:key.find(":")])

    def single(self, m: Any) -> dict[str, frozenset[str]]:
        """kind name -> this record's keys of that single-valued kind."""
        out = self._single.get(id(m))
        if out is None:
            acc: dict[str, set[str]] = {}
            kinds = self.kinds
            for k in m.keys:
                p = k[:k.find(":")]
                kind = kinds.get(p)
                if kind is not None and kind.scope in SINGLE_VALUED:
                    acc.setdefault(p, set()).add(k)
            out = self._single[id(m)] = {p: frozenset(v) for p, v in acc.items()}
        return out

    def network(self, m: Any) -> frozenset[str]:
        out = self._net.get(id(m))
        if out is None:
            kinds = self.kinds
            out = self._net[id(m)] = frozenset(k for k in m.keys if (kind := kinds.get(k[:k.find(":")])) is not None
                                               and kind.scope is KeyScope.NETWORK)
        return out


@dataclass
class Clustering:
    """The partition `cluster()` found: member indexes per cluster (each sorted, clusters by first index) and
    the links it refused: (member index, key, index of the cluster it was refused from, reason)."""

    clusters: list[list[int]]
    refused: list[tuple[int, str, int, str]] = field(default_factory=list)


class _UF:
    __slots__ = ("parent",)

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller index is the root: members are sorted by ref, so the root is the first ref.
            if ra < rb:
                self.parent[rb] = ra
            else:
                self.parent[ra] = rb


def key_order(kinds: KeyKinds, entity: EntityType) -> Callable[[str], tuple[int, str]]:
    """Sort key of match keys: strongest scope first, then the key text."""
    table = kinds.prefixes(entity)

    def order(k: str) -> tuple[int, str]:
        kind = table.get(k[:k.find(":")])
        return (SCOPE_RANK[kind.scope] if kind is not None else 8), k
    return order


def cluster(entity: EntityType, members: list[Member], blocked: Container[str], sigs: Signatures
            ) -> Clustering:
    """Partition `members` (pinned ones excluded by the caller) by their keys not in `blocked` (the ambiguous
    ones). The partition depends only on the members' refs and keys, never on their order in the list."""
    n = len(members)
    uf = _UF(n)
    weak_of: dict[int, list[str]] = {}
    has_strong = [False] * n
    first_holder: dict[str, int] = {}
    setdefault = first_holder.setdefault
    union = uf.union
    for i, m in enumerate(members):
        for k in m.keys:
            if k in blocked:
                continue
            if k[0] == WEAK_PREFIX:
                weak_of.setdefault(i, []).append(k)
                continue
            has_strong[i] = True
            j = setdefault(k, i)
            if j != i:
                union(i, j)
    groups: dict[int, list[int]] = {}
    find = uf.find
    for i in range(n):
        if has_strong[i]:
            groups.setdefault(find(i), []).append(i)
    refused: list[tuple[int, str, int, str]] = []
    clusters: list[list[int]] = []
    for comp in groups.values():
        if len(comp) > 1 and _contradicts([members[i] for i in comp], sigs):
            clusters += _greedy(entity, members, comp, blocked, sigs, refused)
        else:
            clusters.append(comp)
    if weak_of or not all(has_strong):
        clusters = _attach_weak(members, clusters, weak_of, sigs)
    clusters.sort(key=lambda c: c[0])
    if not refused:
        return Clustering(clusters)
    where = {i: ci for ci, c in enumerate(clusters) for i in c}
    return Clustering(clusters, [(i, k, where[j], why) for i, k, j, why in refused])


def _contradicts(ms: list[Member], sigs: Signatures) -> bool:
    """Two records hold disjoint values of one single-valued kind."""
    sv0 = ms[0].sv
    if all(m.sv == sv0 for m in ms):
        return False
    single = sigs.single
    per_kind: dict[str, set[frozenset[str]]] = {}
    for m in ms:
        for kind, vals in single(m).items():
            per_kind.setdefault(kind, set()).add(vals)
    for sets in per_kind.values():
        if len(sets) > 1:
            ordered = list(sets)
            for a_i, a in enumerate(ordered):
                for b in ordered[a_i + 1:]:
                    if not a & b:
                        return True
    return False


def incompatible(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """Why single-valued key sets `a` and `b` (kind -> keys) cannot be one thing (disjoint values of one
    kind), or None."""
    for kind in sorted(a.keys() & b.keys()):
        if not a[kind] & b[kind]:
            mine = ",".join(sorted(v.split(":", 1)[1] for v in a[kind]))
            theirs = ",".join(sorted(v.split(":", 1)[1] for v in b[kind]))
            return f"different {kind} ({mine} vs {theirs})"
    return None


def _greedy(entity: EntityType, members: list[Member], comp: list[int], blocked: Container[str], sigs: Signatures,
            refused: list[tuple[int, str, int, str]]) -> list[list[int]]:
    """Split a contradicting component: join along keys strongest first (anchored ones first within a scope),
    refusing each contradicting link."""
    comp = sorted(comp, key=lambda i: members[i].ref)  # a canonical order: by record reference
    group = {i: i for i in comp}  # member -> its group's id (the group's first member)
    items: dict[int, list[int]] = {i: [i] for i in comp}
    vals: dict[int, dict[str, set[str]]] = {i: {p: set(v) for p, v in sigs.single(members[i]).items()} for i in comp}
    holders: dict[str, list[int]] = {}
    for i in comp:
        for k in members[i].keys:
            if k[0] != WEAK_PREFIX and k not in blocked:
                holders.setdefault(k, []).append(i)
    # Strongest scope first; within a scope, values a record holds beside a hardware key (a Mac's own NIC,
    # reported with its serial) before values no such record holds (a dock's MAC seen only by serial-less
    # sources): the anchored value decides which machine the record in the middle belongs to.
    order = key_order_from(sigs)
    anchored = {k: any(members[i].sv for i in hs) for k, hs in holders.items()}
    for k in sorted(holders, key=lambda k: (order(k)[0], not anchored[k], k)):
        gids = sorted({group[i] for i in holders[k]}, key=lambda g: members[g].ref)
        if len(gids) < 2:
            continue
        base = gids[0]
        for g in gids[1:]:
            why = incompatible(vals[g], vals[base])
            if why is None:
                for i in items[g]:
                    group[i] = base
                items[base] += items.pop(g)
                for kind, vs in vals.pop(g).items():
                    vals[base].setdefault(kind, set()).update(vs)
            else:
                who = min((i for i in items[g] if k in members[i].keys), key=lambda i: members[i].ref)
                refused.append((who, k, base, why))
    return [sorted(v) for v in items.values()]


def key_order_from(sigs: Signatures) -> Callable[[str], tuple[int, str]]:
    table = sigs.kinds

    def order(k: str) -> tuple[int, str]:
        kind = table.get(k[:k.find(":")])
        return (SCOPE_RANK[kind.scope] if kind is not None else 8), k
    return order


def _attach_weak(members: list[Member], strong: list[list[int]], weak_of: dict[int, list[str]], sigs: Signatures
                 ) -> list[list[int]]:
    """Records no strong key matched (alone in their strong cluster, or without strong keys) are grouped by
    their weak keys, then joined to the one larger cluster their weak keys reach: never to two (a weak key never
    merges entities), never against a single-valued key (a group that contradicts itself or its target stays
    apart)."""
    singles: dict[int, int] = {}  # member -> its strong cluster (of one)
    cluster_of: dict[int, int] = {}
    for ci, c in enumerate(strong):
        for i in c:
            cluster_of[i] = ci
        if len(c) == 1:
            singles[c[0]] = ci
    loose = [i for i in range(len(members)) if i not in cluster_of or i in singles]
    big_by_weak: dict[str, set[int]] = {}
    for i, ks in weak_of.items():
        if i in cluster_of and i not in singles:
            for k in ks:
                big_by_weak.setdefault(k, set()).add(cluster_of[i])
    uf = _UF(len(members))
    first: dict[str, int] = {}
    for i in loose:
        for k in weak_of.get(i, ()):
            j = first.setdefault(k, i)
            if j != i:
                uf.union(i, j)
    groups: dict[int, list[int]] = {}
    for i in loose:
        groups.setdefault(uf.find(i), []).append(i)
    out = [list(c) for ci, c in enumerate(strong) if len(c) > 1]
    index = {ci: n for n, ci in enumerate(ci for ci, c in enumerate(strong) if len(c) > 1)}
    for g in groups.values():
        if len(g) > 1 and _contradicts([members[i] for i in g], sigs):
            out += [[i] for i in g]  # a weak key does not join what a single-valued key keeps apart
            continue
        targets = {ci for i in g for k in weak_of.get(i, ()) for ci in big_by_weak.get(k, ())}
        if len(targets) == 1:
            t = index[next(iter(targets))]
            if not _contradicts([members[i] for i in g + out[t]], sigs):
                out[t] += g
                continue
        if targets:  # its weak keys point at two clusters, or at one it contradicts: they prove nothing
            out += [[i] for i in g]
        else:
            out.append(g)
    return [sorted(c) for c in out]


def joined_by(member: Member, others: Iterable[Member], blocked: Container[str],
              order: Callable[[str], tuple[int, str]]) -> str | None:
    """The strongest usable key `member` shares with any of `others` (what joined it), or None."""
    mine = [k for k in member.keys if k not in blocked]
    if not mine:
        return None
    shared = []
    for o in others:
        if o is not member:
            keys = o.keys
            shared += [k for k in mine if k in keys]
    if not shared:
        return None
    return shared[0] if len(shared) == 1 else min(shared, key=order)


def policy_for(settings: Any, registry: Any = None) -> IdentityPolicy:
    """The identity policy of a config: `identity:` plus the key kinds its connectors declare."""
    from itam_sync.engine.registry import Registry

    return IdentityPolicy.from_config(settings.identity, connector_key_kinds(settings, registry or Registry()))


def connector_key_kinds(settings: Any, registry: Any) -> list[KeyKind]:
    """Key kinds the configured connectors' classes declare (`key_kinds = (KeyKind(...),)`)."""
    out: list[KeyKind] = []
    for c in settings.connectors:
        try:
            cls = registry.get(c.type)
        except LookupError:
            continue  # an unknown type fails its own run with the list of known types
        out += list(cls.key_kinds)
    return out


def stored_keys(text: str) -> tuple[str, ...]:
    """A record's stored match keys (a JSON list of strings): split directly when nothing needs unescaping."""
    if text == "[]":
        return ()
    if "\\" not in text and text.startswith('["') and text.endswith('"]'):
        return tuple(text[2:-2].split('","'))
    return tuple(json.loads(text))
