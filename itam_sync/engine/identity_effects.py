"""What a resolution pass writes once it has re-clustered: record moves, new, merged and split entities,
entity_keys rows, the ambiguous-identifier table, conflicts, and one merge-log row per change with the key and
the reason (`engine/resolution.py` decides; this module records).

Merge-log rows (action: entity it is written on -> what it says):
  link         the record's new entity    old = previous entity, new = {record, entity}; rule = the key that joined
               it ("matched serial_number:...") or why it stands alone ("new entity", "split from entity N: ...")
  split        the entity a record left   new = {record, entity}; rule = why ("mac:... is ambiguous: ...")
  merge        the surviving entity       old = the merged-away entity; rule = "joined on KEY"
  ambiguous    every entity holding it    new = {identifier, origin, records}; rule = "KEY is ambiguous: why"
  unambiguous  every entity holding it    old = {identifier}; rule = "KEY is usable again: why"
  conflict     the entity refused         new = {record, key}; rule = "link refused: ..." (when it opens)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass, field
from typing import Any, Protocol

from itam_sync.engine.ambiguity import AmbiguityRules, Verdict
from itam_sync.engine.identity import Clustering, Member, Signatures, incompatible, joined_by
from itam_sync.engine.key_index import KeyView
from itam_sync.model.canonical import EntityType
from itam_sync.model.keys import WEAK_PREFIX
from itam_sync.store.repos import Repos
from itam_sync.store.repos.base import dumps
from itam_sync.store.repos.identity import IdentityRepo

Stored = dict[str, tuple[str, str, int, int]]  # key -> (origin, reason, records, entities)


class PassContext(Protocol):
    """What a pass needs from the resolver that runs it (`resolution.Resolver`)."""

    repo: Repos
    run_id: int | None
    at: str
    source: str
    actor: str | None
    use_pins: bool
    new_entity_id: Callable[[EntityType], int]
    quiet: set[int]
    keys: KeyView

    def rules(self, etype: EntityType) -> AmbiguityRules: ...


@dataclass
class PassResult:
    """What a pass decided: the entity of each batch record, the entities to re-merge, and counts."""

    entity_of: dict[int, int] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)
    log_rows: int = 0
    conflicts: int = 0
    ambiguous: int = 0
    released: int = 0
    merged: int = 0
    split: int = 0


class PassEffects:
    """The writing half of a pass (`resolution._Pass` is the other half and sets these attributes)."""

    r: PassContext
    etype: EntityType
    t: str
    res: PassResult
    ids: IdentityRepo
    members: dict[int, Member]
    holders: dict[str, list[Member]]
    blocked: set[str]
    batch_ids: set[int]
    virtual_ids: set[int]
    old_keys: dict[int, tuple[str, ...]]
    key_ents: dict[str, Set[int]]
    new_entities: list[tuple[int, str]]
    cluster_ids: dict[int, int]
    log_rows: list[tuple[Any, ...]]
    sigs: Signatures
    order: Callable[[str], tuple[int, str]]

    def fetch(self, eids: Iterable[int]) -> list[Member]:
        raise NotImplementedError

    def lookup(self, keys: Iterable[str]) -> set[int]:
        raise NotImplementedError

    def watch(self, keys: Iterable[str]) -> None:
        raise NotImplementedError

    def _row(self, eid: int, action: str, old: Any, new: Any, rule: str) -> None:
        r = self.r
        self.log_rows.append((r.run_id, r.at, self.t, eid, action, None, None if old is None else dumps(old),
                              None if new is None else dumps(new), r.source, rule, r.actor))

    # -- the whole write ----------------------------------------------------------------------------------
    def write(self, ms: list[Member], free: list[Member], clustering: Clustering, final: dict[int, int],
              closure: set[int], now: dict[str, Verdict | None], stored: Stored, rules: AmbiguityRules) -> None:
        members_of: dict[int, list[Member]] = {}
        old_of: dict[int, list[Member]] = {}
        for m in ms:
            members_of.setdefault(final[m.rid], []).append(m)
            if m.entity_id is not None:
                old_of.setdefault(m.entity_id, []).append(m)
        absorbed = _absorbed(old_of, members_of, final, closure)
        self._ambiguity_changes(now, stored, final, rules)
        refused = {free[i].rid: why for i, _, _, why in clustering.refused}
        moved = self._moves(ms, final, members_of, refused, now, stored)
        self._merges(absorbed, old_of, members_of)
        r, ids = self.r, self.ids
        r.repo.entities.insert_entities(self.new_entities, r.run_id, r.at)
        for e, into in absorbed.items():
            ids.retire_entity(e, into, r.run_id, r.at)
        ids.set_entities_of(moved)
        r.keys.set_key_pairs(self.t, *self._pair_changes(ms, final, members_of))
        self.res.conflicts += self._conflicts(ms, final, clustering, free, now, stored)

    def _ambiguity_changes(self, now: dict[str, Verdict | None], stored: Stored, final: dict[int, int],
                           rules: AmbiguityRules) -> None:
        """Values that became ambiguous or usable again: the table and a log row on every entity holding them."""
        t, at, res = self.t, self.r.at, self.res
        rows, released = [], []
        for k in sorted(k for k, v in now.items() if v is not None or k in stored):
            v, was = now[k], stored.get(k)
            hs = self.holders.get(k, [])
            if not hs:
                v = None  # a blocked or configured value no record holds (yet) is listed as a decision, not here
            ents = sorted({e for e in (final.get(m.rid, m.entity_id) for m in hs) if e is not None})
            if v is not None:
                if was is None or was != (v.origin, v.reason, len(hs), len(ents)):
                    rows.append((t, k, v.origin, v.reason, len(hs), len(ents), at, self.r.run_id))
                if was is None:
                    res.ambiguous += 1
                    for e in ents:
                        self._row(e, "ambiguous", None, {"identifier": k, "origin": v.origin, "records": len(hs)},
                                  f"{k} is ambiguous: {v.reason}")
            elif was is not None:
                released.append(k)
                res.released += 1
                why = f"allowed: {rules.decisions[(t, k)].reason}" if rules.allowed(self.etype, k) else \
                    "no longer held by records that cannot be one thing"
                for e in ents:
                    self._row(e, "unambiguous", {"identifier": k}, None, f"{k} is usable again: {why}")
        self.ids.upsert_ambiguous(rows)
        self.ids.drop_ambiguous(t, released)

    def _moves(self, ms: list[Member], final: dict[int, int], members_of: dict[int, list[Member]],
               refused: dict[int, str], now: dict[str, Verdict | None], stored: Stored) -> list[tuple[int, int]]:
        """Link rows for records whose entity changed (split rows where they left a surviving entity); returns
        (entity, record) updates for stored records."""
        res, moved = self.res, []
        for m in ms:
            eid, old = final[m.rid], m.entity_id
            if m.rid in self.batch_ids:
                res.entity_of[m.rid] = eid
                res.dirty.add(eid)
            if eid == old:
                continue
            if m.rid in self.virtual_ids:
                res.entity_of[m.rid] = eid
            elif m.rid not in self.batch_ids:
                moved.append((eid, m.rid))
            res.dirty.add(eid)
            if old is not None:
                res.dirty.add(old)
            if m.rid in self.r.quiet:
                continue  # the operator's own link/unlink row says it
            why_split = None
            if old is not None and old in members_of:
                why_split = self._why_split(m, members_of[old], refused, now, stored)
                res.split += 1
                self._row(old, "split", old, {"record": m.ref, "entity": eid}, why_split)
            self._row(eid, "link", old, {"record": m.ref, "entity": eid}, self._why_link(m, members_of[eid], why_split))
        return moved

    def _why_split(self, m: Member, stayed: list[Member], refused: dict[int, str], now: dict[str, Verdict | None],
                   stored: Stored) -> str:
        shared = sorted({k for o in stayed if o is not m for k in o.keys} & set(m.keys), key=self.order)
        bad = [k for k in shared if k in self.blocked]
        if bad:
            v = now.get(bad[0])
            reason = v.reason if v is not None else stored[bad[0]][1] if bad[0] in stored else "not usable"
            return f"{bad[0].lstrip(WEAK_PREFIX)} is ambiguous: {reason}"
        if m.rid in refused:
            return f"link refused: {refused[m.rid]}"
        if m.rid in self.batch_ids and set(self.old_keys.get(m.rid, ())) != set(m.keys):
            return "its match keys changed"
        return "no usable key joins it to the rest"

    def _why_link(self, m: Member, group: list[Member], why_split: str | None) -> str:
        if m.pinned is not None:
            return "manual link"
        k = joined_by(m, group, self.blocked, self.order)
        if k is not None:
            return f"matched {k.lstrip(WEAK_PREFIX)}"
        if why_split is not None:
            return f"split from entity {m.entity_id}: {why_split}"
        return "new entity" + ("" if m.keys else " (record has no match key)")

    def _merges(self, absorbed: dict[int, int], old_of: dict[int, list[Member]],
                members_of: dict[int, list[Member]]) -> None:
        for e, into in absorbed.items():
            self.res.merged += 1
            if all(m.pinned is not None for m in old_of[e]):
                self._row(into, "merge", e, into, f"manual link left entity {e} without records")
                continue
            mine = {k for m in old_of[e] for k in m.keys if k not in self.blocked}
            rest = {k for m in members_of.get(into, ()) if m.entity_id != e for k in m.keys}
            via = sorted(mine & rest, key=self.order)
            self._row(into, "merge", e, into, f"joined on {via[0].lstrip(WEAK_PREFIX)}" if via else "joined")

    def _pair_changes(self, ms: list[Member], final: dict[int, int], members_of: dict[int, list[Member]]
                      ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """entity_keys rows to add and to remove: only records that moved or changed keys can change them."""
        add: set[tuple[str, int]] = set()
        gone: set[tuple[str, int]] = set()
        ke, batch_ids, old_keys = self.key_ents, self.batch_ids, self.old_keys
        for m in ms:
            eid, old = final[m.rid], m.entity_id
            in_batch = m.rid in batch_ids
            if eid == old and not in_batch:
                continue
            for k in m.keys:
                if eid not in ke.get(k, ()):
                    add.add((k, eid))
            if old is not None:
                was = old_keys.get(m.rid, ()) if in_batch else m.keys
                gone.update((k, old) for k in was if eid != old or k not in m.keys)
        if gone:
            held: dict[int, set[str]] = {}
            for k, e in list(gone):
                if e not in held:
                    held[e] = {x for o in members_of.get(e, ()) for x in o.keys}
                if k in held[e]:
                    gone.discard((k, e))
        return sorted(add), sorted(gone)

    def _conflicts(self, ms: list[Member], final: dict[int, int], clustering: Clustering, free: list[Member],
                   now: dict[str, Verdict | None], stored: Stored) -> int:
        """Refused links of the records looked at: one row per live record on the losing side of a
        contradicting key. Rows of keys no longer contradicting are resolved."""
        t, r = self.t, self.r
        candidates = {k for k, v in now.items() if v is not None and v.origin == "conflict"}
        candidates |= {k for k, v in stored.items() if k not in now and v[0] == "conflict"}
        open_keys = self.ids.open_conflict_keys(t)
        if not (candidates or open_keys or clustering.refused):
            return 0
        wanted = candidates | open_keys
        live_keys = {k for m in ms if not m.missing for k in m.keys if k in wanted}
        conflict_keys = candidates & live_keys
        # Holders of conflicting keys outside what this pass loaded.
        self.watch(conflict_keys)
        self.fetch(self.lookup(k for k in conflict_keys if k not in now))
        rows: list[tuple[Any, ...]] = []
        for k in sorted(conflict_keys):
            rows += self._refused_on(k, final)
        if rows and r.use_pins:  # an operator placed these records: no link of theirs is refused
            pinned = r.repo.conflicts.pins({row[2] for row in rows})
            rows = [row for row in rows if row[2] not in pinned]
        for i, k, ci, why in clustering.refused:
            m = free[i]
            if not m.missing:
                other = self.cluster_ids[ci]
                rows.append((r.run_id, t, m.rid, k, final[m.rid], other, f"{k} is shared with entity {other}: {why}",
                             r.at))
        refresh = {row[3] for row in rows} | (live_keys & open_keys)
        if not refresh:
            return 0
        was_open = self.ids.open_conflicts_on(t, refresh)
        self.ids.resolve_conflicts_on(t, sorted(refresh))
        r.repo.conflicts.insert_conflicts(rows)
        # The merge log gets a row when a conflict opens, not each time a pass finds it still there.
        for _, _, rid, k, _, other, why, _ in rows:
            if (rid, k, other) not in was_open:
                self._row(other, "conflict", None, {"record": self.members[rid].ref, "key": k}, f"link refused: {why}")
        return len(rows)

    def _refused_on(self, key: str, final: dict[int, int]) -> list[tuple[Any, ...]]:
        """Conflict rows of one value held by records that cannot be one thing: the entity holding it on most
        records (then the smallest reference) is the anchor; every live record of another entity that
        contradicts it was refused."""
        groups: dict[int, list[Member]] = {}
        for m in self.holders.get(key, []):
            e = final.get(m.rid, m.entity_id)
            if e is not None:
                groups.setdefault(e, []).append(m)
        if len(groups) < 2:
            return []
        ordered = sorted(groups.items(), key=lambda g: (-len(g[1]), min(m.ref for m in g[1])))
        anchor, anchor_ms = ordered[0]
        anchor_vals = self._single(anchor_ms, key)
        rows: list[tuple[Any, ...]] = []
        for e, gms in ordered[1:]:
            why = incompatible(self._single(gms, key), anchor_vals)
            if why is not None:
                rows += [(self.r.run_id, self.t, m.rid, key, e, anchor, f"{key} is shared with entity {anchor}: {why}",
                          self.r.at) for m in gms if not m.missing]
        return rows

    def _single(self, ms: list[Member], key: str) -> dict[str, set[str]]:
        """kind -> values of the single-valued keys these records hold, the kind of `key` left out."""
        out: dict[str, set[str]] = {}
        mine = key[:key.find(":")]
        for m in ms:
            for kind, vals in self.sigs.single(m).items():
                if kind != mine:
                    out.setdefault(kind, set()).update(vals)
        return out


def _absorbed(old_of: dict[int, list[Member]], members_of: dict[int, list[Member]], final: dict[int, int],
              closure: set[int]) -> dict[int, int]:
    """Entities that lost every record: merged into the entity most of their records joined (then the
    smallest id)."""
    out: dict[int, int] = {}
    for e in sorted(set(old_of) | closure):
        if e in members_of or e not in old_of:
            continue
        into = Counter(final[m.rid] for m in old_of[e]).most_common()
        best = max(n for _, n in into)
        out[e] = min(x for x, n in into if n == best)
    return out
