"""Re-merge dirty entities: read their live source values and overrides, decide, write golden + merge log.

On a large merge the deciding (merge/decide.py: decoding, precedence, golden JSON, log rows' content) runs in
worker processes while this process, the writer, keeps reading batches and writing what comes back: batches
k+1..k+n are read and batch k-1 written while the workers decide batch k. The writer alone touches the store
and the log's hash chain, and writes batches in order, so the rows are the same with 1 worker or N.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from typing import Any

from itam_sync.engine.merge.decide import Batch, Outcome, PassContext, decide_batch, decide_job
from itam_sync.engine.merge.rules import Rules
from itam_sync.engine.workers import WorkerPool
from itam_sync.store.repos import Repos

log = logging.getLogger(__name__)
BATCH = 1000
PARALLEL_MIN = 5000  # SyncConfig.parallel_min's default: fewer entities are merged without the workers
WRITER_HELPS = True  # the writer decides batches itself while the workers start or are all busy
STEAL_AFTER = 0.05  # seconds the writer waits for the oldest batch in flight before it decides the next itself


@dataclass
class MergeStats:
    """What a merge pass changed (or, on a dry run, would change)."""

    entities: int = 0
    changed_entities: int = 0
    changed_fields: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    log_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"entities": self.entities, "changed_entities": self.changed_entities,
                "changed_fields": dict(self.changed_fields), "log_rows": self.log_rows}


def apply_merge(repo: Repos, entity_ids: list[int], rules: Rules, run_id: int | None, at: str,
                dry_run: bool = False, actor: str | None = None, examples: int = 3,
                pool: WorkerPool | None = None, parallel_min: int = PARALLEL_MIN) -> MergeStats:
    """Merge `entity_ids` (sorted, in batches); write golden rows and one log row per changed field.

    A golden record is stored as {field: [value, source, observed_at]}. An entity's first merge (an active
    entity with no golden field yet) logs one `create` row, {field: [value, source, rule]}, in place of a
    `set` row from nothing per field (see store/repos/merge_log.py).

    With a parallel `pool` and at least `parallel_min` entities, batches are decided in its worker processes
    (with `rules` rebuilt there from `rules.spec()`); a worker's error is raised here, and the caller's
    transaction then keeps nothing.
    """
    stats = MergeStats()
    ids = sorted(set(entity_ids))
    batches = (_read(repo, ids[i:i + BATCH], at) for i in range(0, len(ids), BATCH))
    outcomes: Iterator[Outcome]
    if pool is not None and pool.parallel and len(ids) >= parallel_min:
        ctx = PassContext(rules.spec(), run_id, at, actor, dry_run, examples)
        outcomes = _pipelined(pool, batches, rules, ctx)
    else:
        ctx = PassContext(None, run_id, at, actor, dry_run, examples)
        outcomes = (decide_batch(b, rules, ctx) for b in batches)
    for out in outcomes:
        _write(repo, out, stats, dry_run, examples)
    return stats


def _pipelined(pool: WorkerPool, batches: Iterator[Batch], rules: Rules, ctx: PassContext) -> Iterator[Outcome]:
    """Every batch decided, in order: sent to the pool's workers, up to 2 per worker in flight, while the writer
    writes what came back; `batches` is a generator, so the next batches are read between those writes.

    The writer does not sit idle: while the processes start (`start_soon`: from a thread, as the fork server
    imports the work's modules first), or when every worker is busy and the oldest batch is not back within STEAL_AFTER
    (a machine busy with other work), it decides the next batch itself, holding at most 2 windows of batches.
    Outcomes are handed back in batch order whoever decided them: the rows written are the same."""
    if not WRITER_HELPS:
        yield from pool.map_ordered(decide_job, ((ctx, b) for b in batches))
        return
    window = 2 * pool.workers
    pool.start_soon(decide_job.__module__)  # from a thread; nothing when the processes run or are starting
    pending: deque[Future[Outcome] | Outcome] = deque()  # in batch order
    in_flight = 0  # futures in `pending`
    for batch in batches:
        while pending and (not isinstance(pending[0], Future) or pending[0].done()):
            in_flight -= isinstance(pending[0], Future)
            yield _take(pending)
        if (not pool.ready or (in_flight >= window and not _back_soon(pending[0]))) and len(pending) < 2 * window:
            pending.append(decide_batch(batch, rules, ctx))
            continue
        while in_flight >= window:
            in_flight -= isinstance(pending[0], Future)
            yield _take(pending)
        pending.append(pool.submit(decide_job, (ctx, batch)))
        in_flight += 1
    while pending:
        yield _take(pending)


def _back_soon(head: Future[Outcome] | Outcome) -> bool:
    """Whether the oldest batch in flight comes back within STEAL_AFTER (else the writer decides one itself).

    On an idle machine a worker is about to finish it, and the writer, the slower side, is better off writing
    it than deciding another batch; on a busy machine it does not come back, and the writer helps."""
    if not isinstance(head, Future):
        return True
    return not futures_wait([head], timeout=STEAL_AFTER).not_done


def _take(pending: deque[Future[Outcome] | Outcome]) -> Outcome:
    """The oldest outcome (waiting for it if a worker still decides it)."""
    head = pending.popleft()
    return head.result() if isinstance(head, Future) else head


def _read(repo: Repos, chunk: list[int], at: str) -> Batch:
    """A batch's stored rows, as plain tuples (what a worker is sent)."""
    return Batch(chunk, [tuple(r) for r in repo.entities.golden_rows(chunk)],
                 [tuple(r) for r in repo.records.live_source_rows(chunk)],
                 repo.overrides.active_overrides(chunk, at))


def _write(repo: Repos, out: Outcome, stats: MergeStats, dry_run: bool, examples: int) -> None:
    """Add a batch's outcome to the stats and, unless a dry run, write its golden and log rows."""
    stats.entities += out.entities
    stats.changed_entities += out.changed_entities
    stats.changed_fields.update(out.changed_fields)
    for f, found in out.examples.items():
        kept = stats.examples.setdefault(f, [])
        kept.extend(found[:max(0, examples - len(kept))])
    if not dry_run:
        repo.entities.update_goldens(out.updates)
        repo.log.insert_log(out.log_rows)
        stats.log_rows += len(out.log_rows)
