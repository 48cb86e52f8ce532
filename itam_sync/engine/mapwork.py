"""A run's per-record work off the writer: map new and changed records and compute their match keys.

The run (engine/runner.py) reads records, hashes them and skips the unchanged ones itself (cheap, and it
needs the source index anyway); the records left to map go out in chunks to `map_chunk`, inline or on the
worker pool (engine/workers.py), and come back in the order they were read. The run applies each result in
that order, so staging, identity and the merge log are the same with 1 worker or N.

A run sends chunks to the workers only once `parallel_min` records needed mapping: a small run maps inline
and never starts a process.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections import deque
from collections.abc import Hashable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from itam_sync.engine.identity import IdentityPolicy
from itam_sync.engine.workers import WorkerPool, cached
from itam_sync.mapping.engine import MappingError, StreamMapping
from itam_sync.mapping.loader import load_mapping
from itam_sync.model.jsoncodec import dumps, loads

CHUNK = 500  # records per task: big enough that sending it costs little, small enough to keep both busy

# A mapped record: (entity type value, fields JSON, match keys, keys JSON, observed_at, filled field names);
# a record whose mapping failed: the error text.
Mapped = tuple[str, str, list[str], str, str | None, str] | str


@dataclass(frozen=True)
class MapSpec:
    """What a worker needs to map one stream: the mapping file (with its stamp, so an edited file is loaded
    again by a long-lived pool), the stream, and the identity policy."""

    mapping_path: str
    stamp: tuple[int, int]
    stream: str
    policy: bytes  # the pickled IdentityPolicy (small); its digest is part of the cache key

    @classmethod
    def make(cls, mapping_path: str, stream: str, policy: IdentityPolicy) -> MapSpec:
        """The spec of `stream` of the mapping at `mapping_path`."""
        st = os.stat(mapping_path)
        return cls(mapping_path, (st.st_mtime_ns, st.st_size), stream, pickle.dumps(policy))

    @property
    def key(self) -> tuple[str, tuple[int, int], str, str]:
        return (self.mapping_path, self.stamp, self.stream,
                hashlib.blake2b(self.policy, digest_size=16).hexdigest())


def _build(spec: MapSpec) -> tuple[StreamMapping, IdentityPolicy]:
    return load_mapping(spec.mapping_path).stream(spec.stream), pickle.loads(spec.policy)


def map_one(smap: StreamMapping, policy: IdentityPolicy, stream: str, raw: dict[str, Any]) -> Mapped:
    """Map one record and compute its match keys (or the mapping error's text)."""
    try:
        obs = smap.map(raw, stream)
    except MappingError as exc:
        return str(exc)
    keys = policy.match_keys(obs.entity, obs.fields)
    return obs.entity.value, dumps(obs.fields), keys, dumps(keys), obs.observed_at, ",".join(obs.fields)


def map_chunk(task: tuple[MapSpec, Hashable, list[dict[str, Any]] | list[bytes]]) -> list[Mapped]:
    """Map a chunk of one stream's records in a worker process (the mapping is loaded once per process).
    Records come as objects or, from a stream of plain JSON records, as their JSON text (cheaper to send)."""
    spec, key, raws = task
    smap, policy = cached(key, lambda: _build(spec))
    stream = spec.stream
    if raws and isinstance(raws[0], bytes):
        return [map_one(smap, policy, stream, loads(raw)) for raw in raws]
    return [map_one(smap, policy, stream, raw) for raw in raws]  # type: ignore[arg-type]


class StreamMapper:
    """One stream's records to map, in chunks; `put` returns the results that are ready, oldest first.

    `meta` is whatever the run needs to apply a result (key, hash, raw JSON, ...); it stays in this process.
    Results are handed back in the order records were put, whether computed inline or by a worker.
    """

    def __init__(self, pool: WorkerPool, smap: StreamMapping, policy: IdentityPolicy, stream: str,
                 spec: MapSpec | None, budget: list[int], send_json: bool = False) -> None:
        self.pool, self.smap, self.policy, self.stream, self.spec = pool, smap, policy, stream, spec
        # Records are plain JSON (Stream.json_records): workers get their JSON text. Kept only where workers may
        # run: inline mapping uses the objects.
        self.send_json = send_json and pool.parallel
        self.texts: list[bytes] = []
        self._key: Hashable = spec.key if spec is not None else None
        self.budget = budget  # [records still mapped inline before the run starts the workers]: one per run
        self.raws: list[dict[str, Any]] = []
        self.metas: list[Any] = []
        self.in_flight: set[str] = set()  # source keys put and not yet handed back
        self._pending: deque[tuple[Future[list[Mapped]] | list[Mapped], list[Any]]] = deque()
        self._window = min(2 * pool.workers, 16)  # chunks in flight: memory stays bounded on a big machine

    def put(self, raw: dict[str, Any], text: bytes, key: str, meta: Any) -> Iterator[tuple[Mapped, Any]]:
        """Queue one record (and its JSON text); yields the (result, meta) pairs now ready."""
        self.raws.append(raw)
        if self.send_json:
            self.texts.append(text)
        self.metas.append(meta)
        self.in_flight.add(key)
        if len(self.raws) >= CHUNK:
            self._send()
            while self._pending and (len(self._pending) > self._window or self._done(self._pending[0][0])):
                yield from self._take()

    def drain(self) -> Iterator[tuple[Mapped, Any]]:
        """Every queued record's result, in order (at the end of the stream, or before a repeated key)."""
        if self.raws:
            self._send()
        while self._pending:
            yield from self._take()

    @staticmethod
    def _done(item: Future[list[Mapped]] | list[Mapped]) -> bool:
        return isinstance(item, list) or item.done()

    def _send(self) -> None:
        raws, metas, texts = self.raws, self.metas, self.texts
        self.raws, self.metas, self.texts = [], [], []
        # Once the processes run, even a small run uses them (they cost nothing more); while they start, the
        # writer maps inline (the same result either way).
        if self.spec is not None and self.pool.parallel and self.pool.ready:
            work = texts if self.send_json else raws
            self._pending.append((self.pool.submit(map_chunk, (self.spec, self._key, work)), metas))
            return
        self.budget[0] -= len(raws)
        if self.spec is not None and self.pool.parallel and self.budget[0] <= 0:
            self.pool.start_soon(__name__)  # mapped inline until they run
        smap, policy, stream = self.smap, self.policy, self.stream
        self._pending.append(([map_one(smap, policy, stream, raw) for raw in raws], metas))

    def _take(self) -> Iterator[tuple[Mapped, Any]]:
        item, metas = self._pending.popleft()
        results = item if isinstance(item, list) else item.result()
        for meta in metas:
            self.in_flight.discard(meta[0])
        yield from zip(results, metas, strict=True)
