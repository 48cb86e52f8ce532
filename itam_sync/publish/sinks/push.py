"""One push of one configured sink, start to finish.

The merge log is the change feed. Each sink keeps the last merge-log id it pushed successfully (table
`sink_state`); a push reads the log after that id up to the newest id at its start (the high-water mark):

- a record sink gets the current golden records of every entity with a log row in that range (plus the
  entities the far side refused last time), in batches, and the position moves to the high-water mark when
  the push ends; an entity the far side refuses is retried by the next push;
- an event sink gets the rows themselves as change events, in id order, and the position moves after every
  delivered batch, so a failure resends at most one batch.

Nothing is ever deleted on the far side. A dry run makes no network call and changes nothing: it returns the
calls it would make. Every real push is a run in `sync_runs` (connector = sink name, mode "push").
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from itam_sync.engine.runner import SyncFailed, now_iso
from itam_sync.publish.events import events_from_rows, key_order
from itam_sync.publish.sinks.base import EventSink, GoldenRecord, PlannedCall, PushOutcome, RecordSink, Sink
from itam_sync.publish.sinks.registry import SinkRegistry
from itam_sync.settings import SECRET_REF, ConfigError, Settings, SinkConfig, resolve_secrets
from itam_sync.store import Store
from itam_sync.store.leases import Lease, LeaseBusy
from itam_sync.store.repos import Repos

log = logging.getLogger(__name__)
READ_CHUNK = 1000  # golden records read per transaction
LEASE_TTL_S = 300.0  # a push holds the lease `sink:<name>`, renewed in the background, expiring if we die
MISSING = "missing: no live source sees it (nothing is deleted on the far side)"


class PushFailed(SyncFailed):
    """The push failed; the sink's position did not move past what was not delivered."""


@dataclass
class PushResult:
    """What a push did (or, on a dry run, would do)."""

    sink: str
    sink_type: str
    run_id: int | None
    status: str  # success | partial | failed | dry_run
    from_id: int
    to_id: int
    considered: int = 0  # entities (record sinks) or events (event sinks) read from the feed
    unit: str = "entities"  # what `considered` counts: entities | events
    outcome: PushOutcome = field(default_factory=PushOutcome)
    planned: list[PlannedCall] = field(default_factory=list)
    duration_s: float = 0.0
    message: str = ""


def _lenient(value: Any) -> Any:
    """Secrets resolved where possible, else shown as ***: a dry run needs no credentials."""
    if isinstance(value, str):
        try:
            return resolve_secrets(value)
        except ConfigError:
            return SECRET_REF.sub("***", value)
    if isinstance(value, dict):
        return {k: _lenient(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lenient(v) for v in value]
    return value


def build_sink(settings: Settings, cfg: SinkConfig, registry: SinkRegistry, *, lenient: bool = False) -> Sink:
    """Instantiate a configured sink with its secrets resolved (in memory only)."""
    cls = registry.get(cfg.type)
    resolved = _lenient(cfg.settings) if lenient else resolve_secrets(cfg.settings, f"sink {cfg.name!r} settings")
    try:
        model = cls.settings_model.model_validate(resolved)
    except ValidationError as exc:
        # Never echo input values: they may be resolved secrets.
        raise ConfigError([f"sink {cfg.name!r} settings.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                           for e in exc.errors()]) from None
    return cls(cfg.name, model)


def sink_lease(name: str) -> str:
    """The lease a push of sink `name` holds (prefixed: a sink and a connector may share a name)."""
    return f"sink:{name}"


def _reap(repo: Repos, name: str, at: str) -> None:
    """We hold the sink's lease, so a push run still marked running is one whose process died: close it."""
    for run_id, *_ in repo.runs.running_runs(name):
        repo.runs.finish_run(run_id, "interrupted", at, 0.0, {}, "the process ended before the push finished")


def push_sink(settings: Settings, name: str, *, store: Store | None = None, registry: SinkRegistry | None = None,
              dry_run: bool = False, sink: Sink | None = None) -> PushResult:
    """Push what changed since sink `name`'s last successful push. Raises PushFailed (run recorded as failed,
    position kept) when the far side cannot be reached or refuses the whole push."""
    cfg = settings.sink(name)
    if not cfg.enabled:
        raise ConfigError([f"sink {name!r} is disabled in the config (set enabled: true to push it)"])
    registry = registry or SinkRegistry()
    sink = sink or build_sink(settings, cfg, registry, lenient=dry_run)
    own_store = store is None
    store = store or Store.open(settings.store.url)
    t0 = time.perf_counter()
    started = now_iso()
    run_id: int | None = None
    lease: Lease | None = None
    try:
        if not dry_run:
            # One push of a sink at a time, across processes and hosts; a dead holder's lease expires.
            lease = Lease(store, sink_lease(name), LEASE_TTL_S)
            try:
                lease.acquire(wait=0)
            except LeaseBusy as exc:
                raise PushFailed(f"sink {name!r} is already being pushed: {exc}") from None
            lease.start_renewal()
        with store.begin(immediate=True) as repo:
            if not dry_run:
                _reap(repo, name, started)
            last, retry = repo.publish.sink_state(name)
            high = repo.log.max_log_id()
            if not dry_run:
                run_id = repo.runs.create_run(name, cfg.type, "push", started, os.getpid(), socket.gethostname())
        result = PushResult(name, cfg.type, run_id, "dry_run" if dry_run else "success", last, high)
        try:
            if isinstance(sink, RecordSink):
                _push_records(store, sink, result, last, high, retry, dry_run)
            elif isinstance(sink, EventSink):
                _push_events(store, settings, sink, result, last, high, dry_run)
            else:
                raise ConfigError([f"sink type {cfg.type!r} is neither a RecordSink nor an EventSink"])
        except BaseException as exc:
            result.duration_s = time.perf_counter() - t0
            text = _one_line(exc)
            if run_id is not None:
                with store.begin() as repo:
                    repo.runs.finish_run(run_id, "failed", now_iso(), result.duration_s, _counts(result), text)
            log.error("push %s of sink %s failed: %s", run_id, name, text)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            where = f" (run {run_id})" if run_id is not None else ""
            raise PushFailed(f"push of sink {name!r} failed{where}: {text}", run_id) from exc
        result.duration_s = time.perf_counter() - t0
        if not dry_run:
            failed = result.outcome.failed
            if failed:
                result.status = "partial"
                result.message = (f"{len(failed)} record(s) refused by the far side, retried by the next push: "
                                  + "; ".join(f"entity {e}: {why}" for e, why in failed[:5]))
            with store.begin(immediate=True) as repo:
                if isinstance(sink, RecordSink):
                    repo.publish.save_sink_state(name, high, [e for e, _ in failed], run_id, now_iso())
                repo.runs.finish_run(run_id or 0, result.status, now_iso(), result.duration_s, _counts(result),
                                result.message or None)
        return result
    finally:
        sink.close()
        if lease is not None:
            lease.release()
        if own_store:
            store.close()


def _push_records(store: Store, sink: RecordSink, result: PushResult, last: int, high: int, retry: list[int],
                  dry_run: bool) -> None:
    with store.begin() as repo:
        ids = sorted(set(repo.log.changed_entity_ids(last, high, sink.entity_types)) | set(retry))
    result.considered = len(ids)
    outcome = result.outcome
    batch: list[GoldenRecord] = []

    def flush() -> None:
        if not batch:
            return
        if dry_run:
            result.planned += sink.plan_records(batch)
        else:
            outcome.add(sink.push_records(batch))
        batch.clear()

    for i in range(0, len(ids), READ_CHUNK):
        chunk = ids[i:i + READ_CHUNK]
        with store.begin() as repo:
            goldens = repo.entities.goldens(chunk)
        for eid in chunk:
            found = goldens.get(eid)
            if found is None or found[2] == "merged" or found[0] not in sink.entity_types:
                continue  # merged away: its survivor has its own log rows
            etype, golden, status = found
            if status != "active":
                outcome.skipped.append((eid, MISSING))
                continue
            record = GoldenRecord.from_golden(eid, etype, golden, status)
            why = sink.accepts(record)
            if why:
                outcome.skipped.append((eid, why))
                continue
            batch.append(record)
            if len(batch) >= sink.batch_size:
                flush()
    flush()


def _push_events(store: Store, settings: Settings, sink: EventSink, result: PushResult, last: int, high: int,
                 dry_run: bool) -> None:
    result.unit = "events"
    order = key_order(settings)
    start = getattr(sink.settings, "start", "beginning")
    if last == 0 and start == "end":
        # A new subscriber that only wants what happens from now on: start at the high-water mark.
        if not dry_run:
            with store.begin() as repo:
                repo.publish.save_sink_state(sink.name, high, [], result.run_id, now_iso())
        result.from_id = high
        return
    cursor = last
    while cursor < high:
        with store.begin() as repo:
            rows = repo.log.log_after(cursor, sink.batch_size, high)
            events = events_from_rows(repo, rows, order)
        if not rows:
            break
        result.considered += len(events)
        selected = [e for e in events if sink.accepts_event(e)]
        if selected:
            if dry_run:
                result.planned += sink.plan_events(selected)
            else:
                result.outcome.add(sink.push_events(selected))
        cursor = rows[-1][0]
        if not dry_run:
            # Delivered: never send these again, even if a later batch fails.
            with store.begin() as repo:
                repo.publish.save_sink_state(sink.name, cursor, [], result.run_id, now_iso())


def _counts(result: PushResult) -> dict[str, Any]:
    o = result.outcome
    return {"push": {"seen": result.considered, "new": o.created, "changed": o.updated + o.sent,
                     "unchanged": o.unchanged, "skipped": len(o.skipped), "failed": len(o.failed)},
            "_total": {**o.as_dict(), "from_log_id": result.from_id, "to_log_id": result.to_id}}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if isinstance(exc, ConfigError) or hasattr(exc, "kind") else f"{type(exc).__name__}: {text}"


def push_enabled(settings: Settings, names: list[str] | None = None, *, store: Store | None = None,
                 registry: SinkRegistry | None = None, dry_run: bool = False,
                 on_error: Callable[[str, Exception], None] | None = None) -> list[PushResult]:
    """Push the named sinks (default: every enabled one); a failing sink does not stop the others."""
    names = names or [s.name for s in settings.sinks if s.enabled]
    registry = registry or SinkRegistry()
    results = []
    for n in names:
        try:
            results.append(push_sink(settings, n, store=store, registry=registry, dry_run=dry_run))
        except (PushFailed, ConfigError) as exc:
            if on_error is None:
                raise
            on_error(n, exc)
    return results


__all__ = ["PushFailed", "PushResult", "build_sink", "push_enabled", "push_sink"]
