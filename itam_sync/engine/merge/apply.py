"""Re-merge dirty entities: read their live source values and overrides, decide, write golden + merge log.

On a large merge the deciding (merge/decide.py) runs in worker processes while this process, the writer,
keeps reading batches and writing what comes back: batch k+1..k+n are read and batch k-1 written while the
workers decide batch k. The writer alone touches the store and the log's hash chain, and writes batches in
order, so the rows are the same with 1 worker or N.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from itam_sync.engine.merge.decide import Batch, Outcome, PassContext, decide_batch, decide_job, warm_up
from itam_sync.engine.merge.rules import Rules
from itam_sync.engine.workers import WorkerPool
from itam_sync.store.repos import Repos

log = logging.getLogger(__name__)
BATCH = 1000
PARALLEL_MIN = 5000  # SyncConfig.parallel_min's default: fewer entities are merged without the workers
HELP_WHILE_STARTING = True  # the writer decides batches itself while the workers start (tests turn it off)


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
    """Every batch decided, in order, by the pool's workers; `batches` is a generator, so map_ordered reads the
    next batches as it sends them, between the writer's writes of the batches that came back.

    Starting the processes blocks for a moment (the fork server imports the work's modules first): when the
    pool is not running yet, a thread starts it while the writer decides the first batches itself."""
    if pool.started or not HELP_WHILE_STARTING:
        yield from pool.map_ordered(decide_job, ((ctx, b) for b in batches))
        return
    up: list[Future[None]] = []
    starter = threading.Thread(target=_start, args=(pool, ctx, up), name="merge-workers-start", daemon=True)
    starter.start()
    try:
        for batch in batches:
            if not starter.is_alive() and (len(up) < pool.workers or any(f.done() for f in up)):
                # A worker is up (or starting failed: then sending raises the reason here).
                yield from pool.map_ordered(decide_job, ((ctx, b) for b in chain([batch], batches)))
                return
            yield decide_batch(batch, rules, ctx)
    finally:
        starter.join()  # the caller may close the pool next: never while it is starting


def _start(pool: WorkerPool, ctx: PassContext, up: list[Future[None]]) -> None:
    """Start the pool's processes, one warm-up task each (it builds the pass's rules there)."""
    for _ in range(pool.workers):
        up.append(pool.submit(warm_up, ctx.rules))


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
