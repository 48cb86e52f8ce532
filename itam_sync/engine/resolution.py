"""Identity resolution applied to the store: re-decide the part of the partition a batch of records touches.

A pass gets the batch's records (their new match keys) and works in three steps:

1. *judge*: every key the batch adds or drops is judged again over every stored record holding it
   (`AmbiguityRules.judge`): it may become ambiguous, or stop being so;
2. *gather*: the entities of the batch's records, every entity holding a usable key of theirs (or a key whose
   status just changed), and, following usable keys, every entity connected to those: whole components, so
   nothing outside them can be joined to anything inside;
3. *re-cluster* those records with `identity.cluster()` and make the store match: records move, entities are
   created, merged (all their records joined another) or split (some left), each id kept by the cluster holding
   most of its records; `entity_keys`, the ambiguous-identifier table and the conflicts are brought up to date,
   and every change is written to the merge log with the key and the reason.

Because the partition inside a component depends only on its records, and a pass always re-decides whole
components, the store ends up with the same partition whatever order the records arrived in.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass
from typing import Any

from itam_sync.engine.ambiguity import AmbiguityRules, Decision, Verdict
from itam_sync.engine.identity import (
    IdentityPolicy,
    Member,
    Signatures,
    cluster,
    connector_key_kinds,
    key_order,
    policy_for,
    stored_keys,
)
from itam_sync.engine.identity_effects import PassEffects, PassResult
from itam_sync.engine.key_index import KeyIndex, key_view
from itam_sync.model.canonical import EntityType
from itam_sync.model.keys import SCOPE_RANK, WEAK_PREFIX
from itam_sync.store.repos import Repos
from itam_sync.store.repos.base import dumps

log = logging.getLogger(__name__)
__all__ = ["FAST", "PassResult", "RecordToResolve", "Resolver", "connector_key_kinds", "policy_for",
           "reresolve_records"]
FAST = True  # the fast path for new records that start or simply join an entity (tests turn it off to compare)


@dataclass(slots=True)
class RecordToResolve:
    """A staged record whose identity must be (re)decided: its new keys and where it is now."""

    record_id: int
    entity: EntityType
    keys: list[str]
    entity_id: int | None  # its current entity, if any
    pinned_to: int | None = None  # operator link/unlink decision
    ref: str = ""  # connector/stream/source_key
    source: str = ""  # connector/stream


class Resolver:
    """Runs resolution passes inside the caller's transaction (which holds the store's writer lock)."""

    def __init__(self, repo: Repos, policy: IdentityPolicy, new_entity_id: Callable[[EntityType], int], *,
                 run_id: int | None, at: str, source: str, actor: str | None = None, use_pins: bool = True,
                 quiet: set[int] | None = None, key_index: KeyIndex | None = None) -> None:
        self.repo, self.policy, self.new_entity_id = repo, policy, new_entity_id
        self.keys = key_view(repo.identity, key_index)  # entity_keys, through the run's index if it has one
        self.run_id, self.at, self.source, self.actor, self.use_pins = run_id, at, source, actor, use_pins
        # Records whose move the caller logs itself (an operator's link or unlink writes its own row).
        self.quiet = quiet or set()

    def rules(self, etype: EntityType) -> AmbiguityRules:
        decisions = {(t, k): Decision(a, r, who, when) for t, k, a, r, who, when in
                     self.repo.identity.decisions(etype.value)}
        return AmbiguityRules(self.policy.kinds, self.policy.ambiguous_values, decisions)

    def drift(self, etype: EntityType) -> set[str]:
        """Keys whose configured or operator status no longer matches the stored one (config edited since the
        last run): judged again by the next pass."""
        repo = self.repo.identity
        rules = self.rules(etype)
        stored = repo.ambiguous(etype.value)
        out = {k for k, (origin, *_rest) in stored.items() if origin in ("config", "operator")
               and rules.configured(etype, k) is None}
        out |= {k for k in stored if rules.allowed(etype, k)}
        wanted = set(rules.exact) | {k for (t, k), d in rules.decisions.items() if d.action == "block"}
        for pre, _ in rules.prefixes:
            wanted |= set(repo.keys_with_prefix(etype.value, pre))
        held = self.keys.key_entities(etype.value, wanted)
        out |= {k for k in held if k not in stored}
        return out

    def resolve(self, records: list[RecordToResolve], forced: dict[EntityType, set[str]] | None = None
                ) -> PassResult:
        """One pass per entity type over `records` (and `forced` keys judged again)."""
        res = PassResult()
        by_type: dict[EntityType, list[RecordToResolve]] = {}
        for r in records:
            by_type.setdefault(r.entity, []).append(r)
        for etype in forced or {}:
            by_type.setdefault(etype, [])
        for etype, recs in by_type.items():
            _Pass(self, etype, recs, (forced or {}).get(etype, set()), res).run()
        return res


class _Pass(PassEffects):
    """One entity type's pass (see the module docstring)."""

    def __init__(self, resolver: Resolver, etype: EntityType, batch: list[RecordToResolve], forced: set[str],
                 res: PassResult) -> None:
        self.r, self.etype, self.t, self.batch, self.forced, self.res = (
            resolver, etype, etype.value, batch, forced, res)
        self.ids = resolver.repo.identity
        self.kinds = resolver.policy.kinds
        self.sigs = Signatures(self.kinds, etype)
        self.order = key_order(self.kinds, etype)
        self.single_starts = tuple(p + ":" for p, k in self.sigs.kinds.items() if k.single_valued)
        self.members: dict[int, Member] = {}
        self.by_entity: dict[int, list[Member]] = {}
        self.holders: dict[str, list[Member]] = {}
        self.watched: set[str] = set()  # keys whose holders are indexed
        self.old_keys: dict[int, tuple[str, ...]] = {}
        self.key_ents: dict[str, Set[int]] = {}
        self.fetched: set[int] = set()
        self.batch_ids: set[int] = {b.record_id for b in batch}
        self.new_entities: list[tuple[int, str]] = []
        self.cluster_ids: dict[int, int] = {}
        self.log_rows: list[tuple[Any, ...]] = []
        self.blocked: set[str] = set()
        self.virtual: dict[int, list[RecordToResolve]] = {}  # records the fast path joined, by entity
        self.joined: list[tuple[RecordToResolve, int]] = []
        self.virtual_ids: set[int] = set()

    # -- reading the store -------------------------------------------------------------------------------
    def _member(self, rid: int, ref: str, source: str, keys: tuple[str, ...], eid: int | None, missing: bool = False,
                pinned: int | None = None) -> Member:
        starts = self.single_starts
        m = Member(rid, ref, source, keys, eid, missing, pinned,
                   frozenset([k for k in keys if k.startswith(starts)]) if starts else frozenset())
        self.members[rid] = m
        watched = self.watched
        for k in keys:
            if k in watched:
                self.holders[k].append(m)
        return m

    def watch(self, keys: Iterable[str]) -> None:
        """Index the holders of `keys` among the members loaded so far (and those loaded later)."""
        new = set(keys) - self.watched
        if not new:
            return
        self.watched |= new
        holders = self.holders
        for k in new:
            holders[k] = []
        for m in self.members.values():
            for k in m.keys:
                if k in new:
                    holders[k].append(m)

    def fetch(self, eids: Iterable[int]) -> list[Member]:
        """Load the records of entities not loaded yet; returns the new members."""
        todo = [e for e in eids if e not in self.fetched]
        if not todo:
            return []
        self.fetched.update(todo)
        added: list[Member] = []
        batch_ids, by_entity = self.batch_ids, self.by_entity
        for rid, eid, source, skey, keys_json, missing in self.ids.entity_members(todo):
            keys = stored_keys(keys_json)
            if rid in batch_ids:
                self.old_keys[rid] = keys
                continue
            m = self._member(rid, source + "/" + skey, source, keys, eid, bool(missing))
            by_entity.setdefault(eid, []).append(m)
            added.append(m)
        for eid in todo:
            for b in self.virtual.get(eid, ()):
                m = self._member(b.record_id, b.ref, b.source, tuple(b.keys), eid)
                self.virtual_ids.add(b.record_id)
                by_entity.setdefault(eid, []).append(m)
                added.append(m)
        return added

    def lookup(self, keys: Iterable[str]) -> set[int]:
        """Entities holding any of `keys` (cached per pass)."""
        ke = self.key_ents
        keys = list(keys)
        need = [k for k in keys if k not in ke]
        if need:
            found = self.r.keys.key_entities(self.t, need)
            empty: frozenset[int] = frozenset()
            for k in need:
                ke[k] = found.get(k, empty)
        out: set[int] = set()
        for k in keys:
            out |= ke[k]
        return out

    # -- the pass ---------------------------------------------------------------------------------------
    def run(self) -> None:
        rules = self.r.rules(self.etype)
        stored = self.ids.ambiguous(self.t)
        slow = self.batch
        if FAST and not self.forced:
            slow = self._fast(rules, stored)
        if slow or self.forced:
            self.batch = slow
            self.batch_ids = {b.record_id for b in slow}
            for b, eid in self.joined:
                self.virtual.setdefault(eid, []).append(b)
            self._slow(rules, stored)
        self.r.repo.log.insert_log(self.log_rows)
        self.res.log_rows += len(self.log_rows)

    def _fast(self, rules: AmbiguityRules, stored: dict[str, tuple[Any, ...]]) -> list[RecordToResolve]:
        """Decide the batch's new records that simply start an entity or join one, without re-clustering:
        a record whose keys no other batch record holds, none ambiguous, weak or in a conflict, that points at
        no entity (a new one) or at one consistent entity without operator pins, no record of the same source
        and no contradicting single-valued key. Returns the records left for the full pass. This gives exactly
        what the full pass would, only cheaper (tests/property checks it does)."""
        batch, t = self.batch, self.t
        seen: set[str] = set()
        twice: set[str] = set()
        for b in batch:
            for k in b.keys:
                if k in seen:
                    twice.add(k)
                else:
                    seen.add(k)
        bad = twice | set(stored) | self.ids.open_conflict_keys(t)
        if rules.decisions or rules.exact or rules.prefixes:
            bad |= {k for k in seen if rules.configured(self.etype, k) is not None}
        slow: list[RecordToResolve] = []
        cand: list[RecordToResolve] = []
        for b in batch:
            fast = b.entity_id is None and b.pinned_to is None
            if fast:
                for k in b.keys:
                    if k in bad or k[0] == WEAK_PREFIX:
                        fast = False
                        break
            (cand if fast else slow).append(b)
        if not cand:
            return slow
        self.lookup(k for b in cand for k in b.keys)
        ke = self.key_ents
        news: list[RecordToResolve] = []
        joins: dict[int, list[RecordToResolve]] = {}
        for b in cand:
            ents: set[int] = set()
            for k in b.keys:
                ents |= ke[k]
            if not ents:
                news.append(b)
            elif len(ents) == 1:
                joins.setdefault(next(iter(ents)), []).append(b)
            else:
                slow.append(b)
        joined = self._check_joins(joins, slow)
        self._apply_fast(news, joined)
        return slow

    def _check_joins(self, joins: dict[int, list[RecordToResolve]], slow: list[RecordToResolve]
                     ) -> list[tuple[RecordToResolve, int]]:
        """The joins that are safe without re-clustering; the others go to `slow`."""
        if not joins:
            return []
        starts = self.single_starts
        # Entities that already hold a record of the same connector stream (a second agent, a stale enrolment):
        # the full pass judges those (rule 2 of engine/ambiguity.py).
        by_source: dict[str, list[int]] = {}
        for eid, bs in joins.items():
            for b in bs:
                by_source.setdefault(b.source, []).append(eid)
        same: set[int] = set()
        for source, eids in by_source.items():
            connector, stream = source.split("/", 1)
            same.update(self.ids.entities_with_source(eids, connector, stream))
        # An entity's single-valued keys, from entity_keys (the union of its records' keys): kind -> key.
        svs: dict[int, dict[str, str]] = {}
        mixed: set[int] = set()  # two values of one kind, or a weak key: the full pass decides
        # A weak key may hold part of the entity together (a record no strong key matched, joined by its host
        # name): a record that gives that part a strong match changes what the weak key may join.
        weak = tuple(f"{p}:" for p, k in self.sigs.kinds.items() if k.weak)
        for eid, k in self.ids.entity_keys_with(joins, starts + weak):
            if k[0] == WEAK_PREFIX:
                mixed.add(eid)
                continue
            sv = svs.get(eid)
            if sv is None:
                sv = svs[eid] = {}
            p = k[:k.find(":")]
            if sv.setdefault(p, k) != k:
                mixed.add(eid)
        pinned_ents = self.ids.pinned_entities() if self.r.use_pins else set()
        out: list[tuple[RecordToResolve, int]] = []
        empty: dict[str, str] = {}
        for eid, bs in joins.items():
            if len(bs) > 1 or eid in same or eid in mixed or eid in pinned_ents:
                slow += bs
                continue
            b = bs[0]
            sv = svs.get(eid, empty)
            ok = True
            if sv:
                for k in b.keys:
                    if k.startswith(starts):
                        have = sv.get(k[:k.find(":")])
                        if have is not None and have != k:
                            ok = False
                            break
            if ok:
                out.append((b, eid))
            else:
                slow.append(b)
        return out

    def _apply_fast(self, news: list[RecordToResolve], joined: list[tuple[RecordToResolve, int]]) -> None:
        r, t, res = self.r, self.t, self.res
        run, at, src, actor = r.run_id, r.at, r.source, r.actor
        ke, rows, pairs = self.key_ents, self.log_rows, []
        for b in news:
            eid = r.new_entity_id(self.etype)
            self.new_entities.append((eid, t))
            res.entity_of[b.record_id] = eid
            res.dirty.add(eid)
            pairs += [(k, eid) for k in b.keys]  # no other record of the batch holds them: no cache to update
            rows.append((run, at, t, eid, "link", None, None, dumps({"record": b.ref, "entity": eid}), src,
                         "new entity" if b.keys else "new entity (record has no match key)", actor))
        order = self.order
        for b, eid in joined:
            res.entity_of[b.record_id] = eid
            res.dirty.add(eid)
            shared = [k for k in b.keys if eid in ke[k]]
            via = shared[0] if len(shared) == 1 else min(shared, key=order)
            for k in b.keys:
                if eid not in ke[k]:
                    pairs.append((k, eid))
                    ke[k] = ke[k] | {eid}
            rows.append((run, at, t, eid, "link", None, None, dumps({"record": b.ref, "entity": eid}), src,
                         f"matched {via}", actor))
        self.joined = joined  # a full pass that reaches one of these entities sees the record in it (`fetch`)
        self.r.repo.entities.insert_entities(self.new_entities, run, at)
        self.new_entities = []
        r.keys.set_key_pairs(t, sorted(pairs), [])

    def _slow(self, rules: AmbiguityRules, stored: dict[str, tuple[Any, ...]]) -> None:
        r, etype = self.r, self.etype
        for b in self.batch:
            self._member(b.record_id, b.ref, b.source, tuple(b.keys), b.entity_id, False, b.pinned_to)
        seeds = {b.entity_id for b in self.batch if b.entity_id is not None}
        self.fetch(seeds)
        judged = {k for b in self.batch for k in b.keys} | self.forced
        for keys in self.old_keys.values():
            judged.update(keys)
        # 1. judge every key the batch touches, over every record holding it.
        self.watch(judged)
        self.fetch(self.lookup(judged))
        now: dict[str, Verdict | None] = {}
        sigs = self.sigs
        configured = bool(rules.decisions or rules.exact or rules.prefixes)
        for k, hs in self.holders.items():
            if k not in judged:
                continue
            if not configured:
                n = len(hs)
                if n < 2:
                    now[k] = None
                    continue
                # The common case: every holder from another source, all with the same single-valued keys.
                if n == 2:
                    h0, h1 = hs
                    if h0.sv == h1.sv and h0.source != h1.source:
                        now[k] = None
                        continue
                else:
                    sv0 = hs[0].sv
                    if all(h.sv == sv0 for h in hs) and len({h.source for h in hs}) == n:
                        now[k] = None
                        continue
            now[k] = rules.judge(etype, k, hs, sigs)
        blocked = {k for k in stored if k not in now} | {k for k, v in now.items() if v is not None}
        self.blocked = blocked

        # 2. gather whole components.
        closure = set(seeds)
        ke = self.key_ents
        for k, v in now.items():
            if v is None or k not in stored:
                closure |= ke.get(k, set())
        self.fetch(closure)
        by_entity = self.by_entity
        frontier = [self.members[i] for i in self.batch_ids] + [m for e in closure for m in by_entity.get(e, ())]
        expanded = set(judged)
        while frontier:
            reach = {k for m in frontier for k in m.keys if k not in expanded and k not in blocked}
            if not reach:
                break
            expanded |= reach
            ents = self.lookup(reach) - closure
            closure |= ents
            self.fetch(ents)
            frontier = [m for e in ents for m in by_entity.get(e, ())]
        ms = [self.members[i] for i in self.batch_ids]
        ms += [m for e in closure for m in by_entity.get(e, ())]
        if r.use_pins:
            pins = r.repo.conflicts.pins([m.rid for m in ms if m.rid not in self.batch_ids])
            for m in ms:
                if m.rid in pins:
                    m.pinned = pins[m.rid]
        # 3. re-cluster and make the store match.
        free = [m for m in ms if m.pinned is None]
        clustering = cluster(etype, free, blocked, sigs)
        final = self._assign(free, clustering.clusters, ms)
        self.write(ms, free, clustering, final, closure, now, stored, rules)

    def _assign(self, free: list[Member], clusters: list[list[int]], ms: list[Member]) -> dict[int, int]:
        """Entity id of each member: each cluster keeps an id its records had, each id used once: the id of the
        records holding the cluster's strongest usable key (the asset known by its serial absorbs the one known
        only by a MAC; a laptop keeps its asset when a placeholder-serial laptop splits off), then the id most
        of its records had. Clusters left without one get new ids. Pinned members stay where the operator put
        them."""
        pairs = []
        strength = self._strength
        for ci, c in enumerate(clusters):
            e0 = free[c[0]].entity_id
            if all(free[i].entity_id == e0 for i in c):
                if e0 is not None:
                    pairs.append((0, -len(c), e0, ci))
                continue
            best: dict[int, int] = {}
            count: Counter[int] = Counter()
            for i in c:
                e = free[i].entity_id
                if e is not None:
                    count[e] += 1
                    rank = strength(free[i])
                    if rank < best.get(e, 99):
                        best[e] = rank
            pairs += [(best[e], -n, e, ci) for e, n in count.items()]
        pairs.sort()
        got: dict[int, int] = {}
        taken: set[int] = set()
        for _, _, e, ci in pairs:
            if ci not in got and e not in taken:
                got[ci] = e
                taken.add(e)
        final: dict[int, int] = {}
        for ci, c in enumerate(clusters):
            eid = got.get(ci)
            if eid is None:
                eid = self.r.new_entity_id(self.etype)
                self.new_entities.append((eid, self.t))
            for i in c:
                final[free[i].rid] = eid
        for m in ms:
            if m.pinned is not None:
                final[m.rid] = m.pinned
        self.cluster_ids = {ci: final[free[c[0]].rid] for ci, c in enumerate(clusters)}
        return final

    def _strength(self, m: Member) -> int:
        """Scope rank of the strongest usable key a record holds (lower is stronger; 99: none)."""
        kinds, blocked = self.sigs.kinds, self.blocked
        ranks = [SCOPE_RANK[kind.scope] for k in m.keys if k not in blocked
                 and (kind := kinds.get(k[:k.find(":")])) is not None]
        return min(ranks, default=99)


def reresolve_records(repo: Repos, policy: IdentityPolicy, record_ids: list[int], *, at: str, actor: str | None,
                      source: str = "manual", quiet: set[int] | None = None,
                      forced: dict[EntityType, set[str]] | None = None) -> PassResult:
    """Re-decide stored records (and `forced` keys) outside a sync run: after an operator pinned a record, or
    blocked or allowed a value. Writes the records' entities itself (a sync run's staging does that)."""
    recs: list[RecordToResolve] = []
    pins = repo.conflicts.pins(record_ids)
    for rid in record_ids:
        row = repo.records.record(rid)
        if row is None:
            continue
        _, conn, stream, skey, eid, etype, keys_json = row
        recs.append(RecordToResolve(rid, EntityType(etype), list(stored_keys(keys_json)), eid, pins.get(rid),
                                    f"{conn}/{stream}/{skey}", f"{conn}/{stream}"))

    def new_id(_e: EntityType) -> int:
        return repo.db.allocate_ids("entities", 1)[0]

    res = Resolver(repo, policy, new_id, run_id=None, at=at, source=source, actor=actor, quiet=quiet).resolve(
        recs, forced)
    repo.identity.set_entities_of([(e, rid) for rid, e in res.entity_of.items()])
    return res
