"""A per-run, bounded, in-memory index of `entity_keys`: which entities hold each match key.

Identity resolution asks the store which entities hold a batch's keys (`IdentityRepo.key_entities`) once or
more per batch, and a `Resolver` lives for one batch only. A `KeyIndex` lives for one sync run (the runner's
staging creates it and hands it to every batch's `Resolver`): it remembers, per entity type, key -> the set of
entities holding it, answers the keys it knows without a query and asks the store for the rest.

Why it is exactly coherent with the store:

* a run's staging is ONE transaction holding the store's writer lock (SQLite: BEGIN IMMEDIATE; PostgreSQL:
  `_Staging.lock()` takes the lock before the first write, and the first lookup only happens in `flush`, after
  it). So from the first time the index reads `entity_keys` until the run commits or rolls back, nobody but
  this run writes the table;
* every write this run makes to `entity_keys` goes through `KeyIndex.set_key_pairs` (resolution's fast path and
  its full pass, `identity_effects.PassEffects.write`, are the only writers in the engine: entity merges and
  splits move records and change `entity_keys` rows there; retiring or reviving an entity, marking a record
  missing and operator pins do not touch `entity_keys`), which writes the rows and applies the same add/remove
  to what the index holds; a key it does not hold is simply not cached (a new writer of the table inside
  a run must go through the index too);
* "nobody holds this key" is remembered as an empty entry when the store said so, or for every key of an
  entity type that had no keys at all when the run first looked (`complete`): both stay true until a write of
  this run adds the key, which the index sees;
* nothing outlives the run: the index belongs to the run's staging object and is dropped with it, so a new
  run (after another run or an operator's link, unlink, block or allow, each in its own transaction) starts
  empty. Operator actions outside a run (`reresolve_records`) use no index.

Bounded memory: at most `max_keys` keys (over all entity types) are held. Past the bound the index stops
caching new keys (it does not evict): a run looks its keys up batch after batch and almost never asks for the
same key in two batches (a batch's own repeats are already served by the pass's own cache), so recency buys
no hits and an LRU would only add bookkeeping to every lookup; what is held stays exact. An entity type that
started empty stays `complete` only while every key the run writes to it fits; the first one that does not
fit turns that off and the store answers from then on. Either way the resolution result is unchanged: the
index only ever answers what the store would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Protocol

from itam_sync.store.repos.identity import IdentityRepo

DEFAULT_MAX_KEYS = 200_000
NOBODY: frozenset[int] = frozenset()
# What the index holds per key: the one entity holding it (most keys: an int costs a quarter of a frozenset), or
# the entities holding it, none (known absent) or several.
Held = int | frozenset[int]


def _entities(v: Held) -> frozenset[int]:
    return frozenset((v,)) if isinstance(v, int) else v


def _held(entities: Set[int]) -> Held:
    return next(iter(entities)) if len(entities) == 1 else frozenset(entities)


@dataclass(slots=True)
class _TypeIndex:
    held: dict[str, Held] = field(default_factory=dict)
    complete: bool = False  # every key not in `held` is held by nobody


@dataclass(slots=True)
class IndexStats:
    """What the index did in a run: keys answered from memory, keys the store was asked for."""

    hits: int = 0
    misses: int = 0


class KeyIndex:
    """key -> entity ids of one run, per entity type, answering `key_entities` (see the module docstring)."""

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.max_keys = max(0, max_keys)
        self.size = 0  # keys held, over all types
        self.stats = IndexStats()
        self._types: dict[str, _TypeIndex] = {}

    def _of(self, ids: IdentityRepo, entity_type: str) -> _TypeIndex:
        ti = self._types.get(entity_type)
        if ti is None:
            # First look at this type in the run (under the writer lock): a type with no keys at all answers
            # "nobody" for every key from memory until a write of this run adds one.
            ti = self._types[entity_type] = _TypeIndex(complete=not ids.has_keys(entity_type))
        return ti

    def key_entities(self, ids: IdentityRepo, entity_type: str, keys: Iterable[str]) -> dict[str, frozenset[int]]:
        """Every entity holding each key (keys nobody holds are left out), as `IdentityRepo.key_entities`."""
        ti = self._of(ids, entity_type)
        held, complete = ti.held, ti.complete
        out: dict[str, frozenset[int]] = {}
        need: list[str] = []
        asked = 0
        for k in keys:
            asked += 1
            have = held.get(k)
            if have is None:
                if not complete:
                    need.append(k)
            elif isinstance(have, int):
                out[k] = frozenset((have,))
            elif have:
                out[k] = have
        self.stats.hits += asked - len(need)
        self.stats.misses += len(need)
        if not need:
            return out
        found = ids.key_entities(entity_type, need)
        room = self.max_keys - self.size
        for k in need:
            got = found.get(k)
            if got:
                out[k] = frozenset(got)
            if room > 0 and k not in held:  # `need` may name a key twice
                held[k] = NOBODY if got is None else _held(got)
                room -= 1
                self.size += 1
        return out

    def set_key_pairs(self, ids: IdentityRepo, entity_type: str, add: list[tuple[str, int]],
                      remove: list[tuple[str, int]]) -> None:
        """Write (key, entity) rows to `entity_keys` and keep the index equal to what the store now holds."""
        ids.set_key_pairs(entity_type, add, remove)
        ti = self._types.get(entity_type)
        if ti is None:
            return  # nothing of this type is held (and `complete` is decided at the first lookup)
        held = ti.held
        for k, e in remove:
            have = held.get(k)
            if have is not None:
                held[k] = _held(_entities(have) - {e})
        for k, e in add:
            have = held.get(k)
            if have is not None:
                held[k] = _held(_entities(have) | {e})
            elif ti.complete:
                if self.size < self.max_keys:
                    held[k] = e
                    self.size += 1
                else:  # the key cannot be held: "absent unless held" would be wrong for it
                    ti.complete = False

    def __len__(self) -> int:
        return self.size


class KeyView(Protocol):
    """How a resolution pass reads and writes `entity_keys`: straight from the store or through a run's index."""

    def key_entities(self, entity_type: str, keys: Iterable[str]) -> Mapping[str, Set[int]]: ...

    def set_key_pairs(self, entity_type: str, add: list[tuple[str, int]], remove: list[tuple[str, int]]) -> None: ...


class _Indexed:
    """The store's `entity_keys` seen through a run's `KeyIndex`."""

    def __init__(self, ids: IdentityRepo, index: KeyIndex) -> None:
        self.ids, self.index = ids, index

    def key_entities(self, entity_type: str, keys: Iterable[str]) -> Mapping[str, Set[int]]:
        return self.index.key_entities(self.ids, entity_type, keys)

    def set_key_pairs(self, entity_type: str, add: list[tuple[str, int]], remove: list[tuple[str, int]]) -> None:
        self.index.set_key_pairs(self.ids, entity_type, add, remove)


def key_view(ids: IdentityRepo, index: KeyIndex | None) -> KeyView:
    """The store itself (no index: every lookup is a query) or the store through `index`."""
    return ids if index is None else _Indexed(ids, index)
