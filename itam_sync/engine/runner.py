"""One sync run of one connector instance, start to finish (DESIGN.md "Data flow").

Longer than 500 lines because one run's transaction (stage, identity, missing marks, cursor, status) is
kept in one reading order; merging and connector building live in their own modules.

pull -> map -> stage (skip unchanged by hash) -> identity -> merge dirty entities -> log, all in ONE
transaction with the new cursor and the run's final status, so a failed or killed run leaves the last good
state intact and marks nothing missing. A run whose data breaks a contract (engine/contracts.py) is staged
but ends `degraded`; quarantine rows are kept one per record (engine/quarantine.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import ValidationError

from itam_sync import clock
from itam_sync.engine.contracts import StreamTracker, evaluate
from itam_sync.engine.identity import IdentityPolicy
from itam_sync.engine.key_index import KeyIndex
from itam_sync.engine.mapwork import Mapped, MapSpec, StreamMapper
from itam_sync.engine.merge.apply import MergeStats, apply_merge
from itam_sync.engine.merge.rules import Rules, iso
from itam_sync.engine.quarantine import place, record_quarantine
from itam_sync.engine.registry import Registry
from itam_sync.engine.resolution import RecordToResolve, Resolver, connector_key_kinds
from itam_sync.engine.workers import WorkerPool
from itam_sync.mapping.engine import MappingError
from itam_sync.mapping.loader import load_mapping
from itam_sync.model.canonical import EntityType
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorError, StreamState
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import observe_http
from itam_sync.settings import ConfigError, ConnectorConfig, Settings, resolve_secrets
from itam_sync.settings.paths import BASE_DIR_CONTEXT
from itam_sync.settings.redaction import redact
from itam_sync.store import Store
from itam_sync.store.leases import MERGE_LEASE, Lease, LeaseBusy, LeaseInfo, connector_lease
from itam_sync.store.repos import Repos
from itam_sync.store.repos.base import dumps_bytes

log = logging.getLogger(__name__)
ENTITY_TYPES = {e.value: e for e in EntityType}  # a dict look-up per record instead of the Enum call
Indexed = tuple[int, str, int | None, bool, str]  # a staged record: id, hash, entity, missing, filled fields
Progress = Callable[[str, str, int], None]  # (connector, stream, records seen so far)
HttpProgress = Callable[[str, str, str, float], None]  # (connector, stream, "page"|"rate_limit_wait"|"retry", n|s)


class MappingWork(NamedTuple):
    """A run's compiled mapping, the file it came from (what workers load) and the pool that maps."""

    mapping: Any
    path: str
    pool: WorkerPool


class SyncFailed(Exception):
    """The run failed; nothing it staged was committed."""

    def __init__(self, message: str, run_id: int | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class AlreadyRunning(SyncFailed):
    """Another run of the same connector is in progress."""


class ConnectorBusy(AlreadyRunning):
    """Another worker or process holds the connector's lease (and we were not to wait, or stopped waiting)."""

    def __init__(self, message: str, run_id: int | None = None, holder: LeaseInfo | None = None) -> None:
        super().__init__(message, run_id)
        self.holder = holder


class RunInterrupted(SyncFailed):
    """The run was stopped (shutdown) before it finished; it is recorded `interrupted`, nothing was kept."""


class RunCancelled(Exception):
    """Raised inside a run when its `cancel` event is set."""


class LeaseLost(Exception):
    """Another worker took the lease while we held it (we were presumed dead); the transaction is rolled back."""


class _Track:
    """What a run reports while it runs: records per stream, HTTP pages and waits; and whether to stop."""

    def __init__(self, connector: str, progress: Progress | None, on_http: HttpProgress | None,
                 cancel: threading.Event | None) -> None:
        self.connector, self.progress, self.on_http, self.cancel = connector, progress, on_http, cancel
        self.stream = ""

    def http(self, kind: str, value: float) -> None:
        if self.on_http is not None:
            self.on_http(self.connector, self.stream, kind, value)


@dataclass
class RunResult:
    """What a run did."""

    run_id: int
    connector: str
    mode: str
    status: str  # success | degraded (staged, but its data broke a contract) | guarded | failed
    counts: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    duration_s: float = 0.0
    warnings: list[str] = field(default_factory=list)  # why it is degraded, one line each


def now_iso() -> str:
    return iso(clock.now())


def build_connector(settings: Settings, conn_cfg: ConnectorConfig, registry: Registry) -> Connector:
    """Instantiate a configured connector with its secrets resolved (in memory only)."""
    cls = registry.get(conn_cfg.type)
    resolved = resolve_secrets(conn_cfg.settings, f"connector {conn_cfg.name!r} settings")
    try:
        # Data-file settings (ConfigPath) resolve against the config file's folder, not the working directory.
        model = cls.settings_model.model_validate(resolved, context={BASE_DIR_CONTEXT: settings.base_dir()})
    except ValidationError as exc:
        # Never echo input values: they may be resolved secrets.
        problems = [f"connector {conn_cfg.name!r} settings.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                    for e in exc.errors()]
        raise ConfigError(problems) from None
    return cls(conn_cfg.name, model)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap_stale_runs(repo: Repos, connector: str, at: str) -> None:
    host = socket.gethostname()
    for run_id, _, pid, run_host in repo.runs.running_runs(connector):
        if run_host == host and pid and pid != os.getpid() and _pid_alive(pid):
            raise AlreadyRunning(f"connector {connector!r} is already running (run {run_id}, pid {pid})", run_id)
        repo.runs.finish_run(run_id, "interrupted", at, 0.0, {}, "the process ended before the run finished")


class _Staging:
    """Per-run staging state: the connector's source index, id blocks and the records of the open batch."""

    def __init__(self, repo: Repos, connector: str, run_id: int, policy: IdentityPolicy, batch: int,
                 at: str, locked: bool = True) -> None:
        self.repo, self.connector, self.run_id, self.policy, self.batch, self.at = (
            repo, connector, run_id, policy, batch, at)
        self._index: dict[tuple[str, str], Indexed] | None = None
        self.seen: set[int] = set()
        self.dirty: set[int] = set()
        # False on PostgreSQL: the pull runs without the store's writer lock (runs of different connectors
        # pull in parallel) and `lock()` takes it before the first write.
        self.locked = locked
        self._stale_entities = False
        # PostgreSQL planner statistics of entity_keys: refreshed as this run's new keys double (see flush).
        self._new_keys = 0
        self._analyze_at = 2000
        self.use_pins = repo.conflicts.has_pins()
        self.key_index = KeyIndex()  # this run's key -> entities (engine/key_index.py): dropped with the run
        self._ids: list[int] = []
        self._eids: list[int] = []
        self.new_rows: list[tuple[Any, ...]] = []
        self.upd_rows: list[tuple[Any, ...]] = []
        self.resolve: list[RecordToResolve] = []
        self._drift_checked: set[EntityType] = set()  # entity types whose config/operator drift was judged
        self.log_rows = 0
        self.conflicts = 0

    @property
    def index(self) -> dict[tuple[str, str], Indexed]:
        """(stream, source key) -> (id, hash, entity, missing, filled), loaded on first use: an incremental run
        that receives nothing never reads it."""
        if self._index is None:
            self._index = self.repo.records.source_index(self.connector)
        return self._index

    def lock(self) -> None:
        """Take the store's writer lock before the first write (PostgreSQL; SQLite's transaction has it).

        What was read before it may be stale only where other writers touch this connector's rows: the
        entity a record belongs to (entity merges, operator links) and whether pins exist; both are re-read
        under the lock (`flush`), so identity is always decided on current data."""
        if not self.locked:
            self.repo.db.write_lock()
            self.locked = True
            self._stale_entities = self._index is not None
            self.use_pins = self.repo.conflicts.has_pins()

    def _next_id(self) -> int:
        if not self._ids:
            self._ids = self.repo.db.allocate_ids("source_records", self.batch)[::-1]
        return self._ids.pop()

    def _next_entity_id(self, _entity: EntityType) -> int:
        if not self._eids:
            self._eids = self.repo.db.allocate_ids("entities", self.batch)[::-1]
        return self._eids.pop()

    def add(self, stream: str, key: str, digest: str, raw_json: str, entity: EntityType, fields_json: str,
            keys: list[str], keys_json: str, observed_at: str | None, existing: Indexed | None, filled: str) -> str:
        """Stage one mapped record (new, changed or back); resolves and writes the batch when it is full."""
        if existing is None:
            rid = self._next_id()
            self.new_rows.append((rid, self.connector, stream, key, entity.value, digest, raw_json, fields_json,
                                  keys_json, observed_at, filled, self.run_id))
            self.index[(stream, key)] = (rid, digest, None, False, filled)
            current, outcome = None, "new"
        else:
            rid, _, current, was_missing, _ = existing
            self.upd_rows.append((digest, raw_json, fields_json, keys_json, observed_at, filled, self.run_id, rid))
            self.index[(stream, key)] = (rid, digest, current, False, filled)
            outcome = "reappeared" if was_missing else "changed"
        self.seen.add(rid)
        self.resolve.append(RecordToResolve(rid, entity, keys, current, None, f"{self.connector}/{stream}/{key}",
                                            f"{self.connector}/{stream}"))
        if len(self.resolve) >= self.batch:
            self.flush()
        return outcome

    def flush(self) -> None:
        """Resolve the batch's identities, then write records (with their entity), keys, merges and log rows."""
        repo, at, run_id = self.repo, self.at, self.run_id
        if not self.resolve:
            return
        self.lock()
        if repo.db.pg and self._new_keys >= self._analyze_at:
            repo.db.analyze("entity_keys")  # identity lookups probe the key index, not scan every key
            self._analyze_at = 2 * self._new_keys
        if self._stale_entities:
            fresh = repo.records.record_entities([r.record_id for r in self.resolve if r.entity_id is not None])
            for r in self.resolve:
                if r.entity_id is not None:
                    r.entity_id = fresh.get(r.record_id, r.entity_id)
        if self.use_pins:
            pins = repo.conflicts.pins([r.record_id for r in self.resolve])
            for r in self.resolve:
                r.pinned_to = pins.get(r.record_id)
        resolver = Resolver(repo, self.policy, self._next_entity_id, run_id=run_id, at=at, source=self.connector,
                            use_pins=self.use_pins, key_index=self.key_index)
        # Once per run and entity type: values whose configured or operator status changed are judged again.
        forced = {e: resolver.drift(e) for e in {r.entity for r in self.resolve} - self._drift_checked}
        self._drift_checked.update(forced)
        res = resolver.resolve(self.resolve, forced)
        # Every record's entity is known before it is written: one write per record, no second UPDATE pass.
        entity_of = {r.record_id: r.entity_id for r in self.resolve}
        entity_of.update(res.entity_of)
        repo.records.insert_records([(*row, entity_of[row[0]]) for row in self.new_rows])
        repo.records.update_records([(*row[:-1], entity_of[row[-1]], row[-1]) for row in self.upd_rows])
        self._new_keys += len(self.new_rows)
        self.log_rows += res.log_rows
        self.conflicts += res.conflicts
        self.dirty |= res.dirty
        self.new_rows, self.upd_rows, self.resolve = [], [], []


def run_connector(settings: Settings, name: str, *, full: bool = False, allow_shrink: bool = False,
                  store: Store | None = None, registry: Registry | None = None,
                  progress: Progress | None = None, actor: str | None = None, merge: bool = True,
                  lease: Lease | None = None, lease_wait: float | None = None,
                  on_lease_wait: Callable[[LeaseInfo], None] | None = None,
                  cancel: threading.Event | None = None, on_http: HttpProgress | None = None,
                  accept_drops: bool = False, pool: WorkerPool | None = None) -> RunResult:
    """Run one sync of connector `name`. Raises SyncFailed (with the run recorded as failed) on error.

    Staging (pull, map, stage, identity, missing marks, cursor) commits as one transaction that also queues
    the touched entities; the merge of that queue follows in a second transaction (`merge_pending`). With
    merge=False the caller merges once after several connectors (what `itam-sync run` does), so an entity
    seen by four sources is merged once, not four times. A crash between the two loses nothing: the queue
    is durable and drained by the next merge.

    A run holds the connector's lease (`leases.connector_lease`) from before it starts until it has
    committed, so one connector never runs twice at once, on any worker. `lease` is one the caller already
    holds (`serve`); otherwise the run takes it, waiting up to `lease_wait` seconds (None: as long as it
    takes, 0: raise ConnectorBusy at once) and telling `on_lease_wait(holder)` that it waits. Setting
    `cancel` stops the run at the next record; it is recorded `interrupted` and nothing it staged is kept.
    `on_http(connector, stream, kind, value)` hears every page fetched and every rate-limit wait.

    A run whose data breaks a contract (itam_sync/engine/contracts.py: a mapped source path absent from every
    record, a fill rate that dropped, a stream not read to its end) is staged but ends `degraded`, with the
    reasons in `RunResult.warnings`; `accept_drops` takes this full run's fill rates as the new normal.

    New and changed records are mapped on `pool` (engine/mapwork.py; default: a pool of `sync.workers`
    processes for this run, started only if it maps `sync.parallel_min` records); the result is the same.
    """
    registry = registry or Registry()
    conn_cfg = settings.connector(name)
    if not conn_cfg.enabled:
        raise ConfigError([f"connector {name!r} is disabled in the config (set enabled: true to run it)"])
    cls = registry.get(conn_cfg.type)
    mapping_path = str(settings.mapping_path(conn_cfg, cls.mapping_name()))
    mapping = load_mapping(mapping_path)
    policy = IdentityPolicy.from_config(settings.identity, connector_key_kinds(settings, registry))
    own_store = store is None
    store = store or Store.open(settings.store.url)
    own_lease = lease is None
    own_pool = pool is None
    pool = pool or WorkerPool(settings.sync.workers)
    try:
        if lease is None:
            lease = Lease(store, connector_lease(name), settings.service.lease_ttl_s)
            try:
                lease.acquire(lease_wait, on_lease_wait, cancel)
            except LeaseBusy as exc:
                holder = exc.info.describe() if exc.info else "another worker"
                why = "not waiting" if lease_wait == 0 else "stopped waiting"
                raise ConnectorBusy(f"connector {name!r} is being synced by {holder}; {why}", None,
                                    exc.info) from None
            lease.start_renewal()
        try:
            result = _run_staging(settings, conn_cfg, store, registry, MappingWork(mapping, mapping_path, pool),
                                  policy, full, allow_shrink, progress, actor, lease, cancel, on_http, accept_drops)
        finally:
            if own_lease:
                lease.release()
            if own_pool:
                pool.close()
        if merge:
            try:
                merge_pending(settings, store, actor=actor, pool=None if own_pool else pool)
            except Exception as exc:
                # The staged data and the queue are committed; the next run or `itam-sync merge` retries the merge.
                raise SyncFailed(f"sync of {name!r} staged (run {result.run_id}) but the merge failed: "
                                 f"{_one_line(exc)}; the queued entities are kept and merged by the next run",
                                 result.run_id) from exc
        return result
    finally:
        if own_store:
            store.close()


def _run_staging(settings: Settings, conn_cfg: ConnectorConfig, store: Store, registry: Registry,
                 mapping: MappingWork, policy: IdentityPolicy, full: bool, allow_shrink: bool,
                 progress: Progress | None,
                 actor: str | None, lease: Lease, cancel: threading.Event | None,
                 on_http: HttpProgress | None, accept_drops: bool = False) -> RunResult:
    """The staging transaction of one run, under the connector's lease (held by the caller)."""
    name = conn_cfg.name
    mode = "full" if full else "incremental"
    started = now_iso()
    t0 = time.perf_counter()
    # SQLite needs its write lock up front (a read-then-write transaction cannot upgrade); PostgreSQL needs no
    # store-wide lock here: the connector's lease already makes this the only run of this connector.
    with store.begin(immediate=store.is_sqlite) as repo:
        _reap_stale_runs(repo, name, started)
        run_id = repo.runs.create_run(name, conn_cfg.type, mode, started, os.getpid(), socket.gethostname())
    connector: Connector | None = None
    counts: dict[str, Any] = {}
    warnings: list[str] = []
    track = _Track(name, progress, on_http, cancel)
    try:
        connector = build_connector(settings, conn_cfg, registry)
        with store.begin(immediate=store.is_sqlite) as repo, observe_http(track.http if on_http else None):
            status, message = _sync(repo, settings, conn_cfg, connector, mapping, policy, run_id, full,
                                    allow_shrink, counts, track, started, actor, store.is_sqlite,
                                    warnings=warnings, accept_drops=accept_drops)
            if not repo.leases.lease_held(lease.name, lease.holder):
                raise LeaseLost(f"lost the lease {lease.name!r} to another worker while running (this worker "
                                f"was presumed dead: check clocks and service.lease_ttl_s); nothing was kept")
            duration = time.perf_counter() - t0
            repo.runs.finish_run(run_id, status, now_iso(), duration, counts, message or None)
    except BaseException as exc:
        duration = time.perf_counter() - t0
        cancelled = isinstance(exc, RunCancelled | KeyboardInterrupt | SystemExit)
        text = redact(_one_line(exc)) if not cancelled else (
            f"stopped before it finished ({exc or type(exc).__name__}); nothing it read was kept and the next run "
            "starts over")
        try:
            with store.begin() as repo:
                repo.runs.finish_run(run_id, "interrupted" if cancelled else "failed", now_iso(), duration, counts,
                                     text)
        except Exception:  # noqa: BLE001 - the next run reaps it as interrupted; keep the original error
            log.exception("could not record the end of run %s", run_id)
        (log.warning if cancelled else log.error)("run %s of %s %s: %s", run_id, name,
                                                  "stopped" if cancelled else "failed", text)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        if cancelled:
            raise RunInterrupted(f"sync of {name!r} stopped (run {run_id}): {text}", run_id) from exc
        raise SyncFailed(f"sync of {name!r} failed (run {run_id}): {text}", run_id) from exc
    finally:
        if connector is not None:
            connector.close()
    seen = sum(v.get("seen", 0) for k, v in counts.items() if not k.startswith("_") and isinstance(v, dict))
    log.info("%s run %s of %s: %s in %.2f s (%d records read)", mode, run_id, name, status, duration, seen,
             extra={"run_id": run_id, "connector": name, "mode": mode, "status": status,
                    "duration_s": round(duration, 3), "records": seen, "totals": counts.get("_total", {})})
    for w in warnings:
        log.warning("run %s of %s: %s", run_id, name, w, extra={"run_id": run_id, "connector": name})
    return RunResult(run_id, name, mode, status, counts, message, duration, warnings)


def merge_pending(settings: Settings, store: Store, actor: str | None = None, *, lease_wait: float | None = None,
                  on_lease_wait: Callable[[LeaseInfo], None] | None = None,
                  stop: threading.Event | None = None, pool: WorkerPool | None = None) -> MergeStats:
    """Merge every queued (dirty) entity and entities whose overrides expired: golden records + merge log.

    Holds the `merge` lease (waiting up to `lease_wait` seconds, None: as long as it takes), so merging never
    runs twice at once across workers; a worker that waited then finds the queue drained and merges nothing.
    """
    lease = Lease(store, MERGE_LEASE, settings.service.lease_ttl_s)
    own_pool = pool is None
    pool = pool or WorkerPool(settings.sync.workers)
    try:
        lease.acquire(lease_wait, on_lease_wait, stop)
    except LeaseBusy as exc:
        raise SyncFailed(f"merge not started: {exc}") from None
    lease.start_renewal()
    try:
        at = now_iso()
        t0 = time.perf_counter()
        with store.begin(immediate=True) as repo:
            ids = repo.entities.dirty_ids()
            expired = repo.overrides.expired_override_entities(at)
            if not ids and not expired:
                return MergeStats()
            run_id = repo.runs.create_run("(merge)", "merge", "merge", at, os.getpid(), socket.gethostname())
            rules = Rules(settings.precedence, settings.connector_types(), clock.now())
            stats = apply_merge(repo, ids + expired, rules, run_id, at, actor=actor, pool=pool,
                                parallel_min=settings.sync.parallel_min)
            repo.entities.clear_dirty(ids)
            if not repo.leases.lease_held(lease.name, lease.holder):
                raise LeaseLost("lost the merge lease to another worker while merging; nothing was kept, the queue "
                                "is merged by the next run")
            repo.runs.finish_run(run_id, "success", now_iso(), time.perf_counter() - t0, {"_total": stats.as_dict()},
                            None)
        return stats
    finally:
        lease.release()
        if own_pool:
            pool.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ConnectorError | ConfigError | MappingError | LeaseLost):
        return text + _advice(exc)
    return f"{type(exc).__name__}: {text}"


def _advice(exc: BaseException) -> str:
    """What to do about a failed run, where the error itself does not say (config errors already do)."""
    if not isinstance(exc, HttpError) or exc.kind == "config":
        return ""
    if exc.status == 429:
        return (" -- the source kept rate-limiting us: run this connector less often or ask the vendor for a "
                "higher API limit; nothing was changed and the next run retries")
    if exc.status is None or exc.status >= 500:
        return (" -- the source looks down or unreachable: nothing was changed and the next run retries; if it "
                "persists, check the vendor's status page, then the URL, DNS, proxy and firewall")
    return " -- nothing was changed and the next run retries; if it persists, try `itam-sync check --connector NAME`"


def _sync(repo: Repos, settings: Settings, conn_cfg: ConnectorConfig, connector: Connector,
          mapping_work: MappingWork, policy: IdentityPolicy, run_id: int, full: bool,
          allow_shrink: bool, counts: dict[str, Any],
          track: _Track, at: str, actor: str | None, locked: bool = True, *, warnings: list[str] | None = None,
          accept_drops: bool = False) -> tuple[str, str]:
    name = conn_cfg.name
    mapping, mapping_path, pool = mapping_work
    parallel_min = settings.sync.parallel_min
    progress = track.progress
    cancel = track.cancel
    warnings = [] if warnings is None else warnings
    cursors = {} if full else repo.runs.get_cursors(name)
    stage = _Staging(repo, name, run_id, policy, settings.sync.batch_size, at, locked=locked)
    new_cursors: dict[str, Any] = {}
    quarantined: list[tuple[tuple[int, int], tuple[Any, ...]]] = []  # ((stream no, record no), row)
    open_q = repo.quarantine.open_items(name)  # usually empty: then no record pays for the look-up
    fixed: list[tuple[str, str]] = []  # quarantined items that map again
    incomplete: dict[str, str] = {}  # stream -> why it was not read to its end
    trackers: list[StreamTracker] = []
    interned: dict[str, str] = {}
    # [records still mapped inline before the run starts the workers (from a thread: it maps on meanwhile)]
    budget = [parallel_min]
    for n_stream, stream in enumerate(connector.streams()):
        smap = mapping.stream(stream.name)
        tracker = StreamTracker(smap)
        trackers.append(tracker)
        key_fields = [*policy.key_fields[smap.entity]] + (
            ["hostname"] if smap.entity is EntityType.ASSET and policy.hostname_weak_key else [])
        state = StreamState(cursor=cursors.get(stream.name), full=full, required=tracker.paths.required(key_fields))
        c = counts.setdefault(stream.name, {"seen": 0, "new": 0, "changed": 0, "unchanged": 0, "reappeared": 0,
                                            "quarantined": 0})
        cursor_get = _getter(stream.cursor_field) if stream.cursor_field else None
        max_cursor = state.cursor
        index: dict[tuple[str, str], Indexed] | None = None
        sname = track.stream = stream.name
        filled_of = tracker.filled_of.append  # each staged record's non-empty fields, counted at the end
        watch = bool(tracker.pending)  # source paths not seen yet in this run
        bad = 0
        mapper = StreamMapper(pool, smap, policy, sname, _spec(mapping_path, sname, policy), budget,
                              send_json=stream.json_records)
        in_flight = mapper.in_flight

        def apply(done: Mapped, meta: tuple[Any, ...], c: dict[str, int] = c, sname: str = sname,
                  filled_of: Callable[[str], None] = filled_of) -> None:
            """Stage one mapped record, in the order records were read (or quarantine it)."""
            nonlocal max_cursor
            key, digest, raw_json, existing, cv, seq = meta
            if isinstance(done, str):
                c["quarantined"] += 1
                pos = seq[2]
                quarantined.append(((seq[0], seq[1]), (run_id, name, sname, "key:" + key, key,
                                    pos or place(None, seq[1], "")[0], f"{done} (at {pos})" if pos else done,
                                    raw_json, at)))
                if existing is not None:
                    stage.seen.add(existing[0])  # the source still has it: never mark it missing
                return  # a quarantined record never moves the cursor (its value may be garbage)
            etype, fields_json, keys, keys_json, observed_at, filled = done
            filled = interned.setdefault(filled, filled)
            filled_of(filled)
            c[stage.add(sname, key, digest, raw_json, ENTITY_TYPES[etype], fields_json, keys, keys_json,
                        observed_at, existing, filled)] += 1
            if open_q and (sname, "key:" + key) in open_q:
                fixed.append((sname, "key:" + key))
            if cv is not None and (max_cursor is None or str(cv) > str(max_cursor)):
                max_cursor = cv

        for raw in stream.records(state):
            c["seen"] += 1
            if progress is not None and c["seen"] % 5000 == 0:
                progress(name, sname, c["seen"])
            if cancel is not None and not c["seen"] & 255 and cancel.is_set():
                raise RunCancelled("shutting down")
            if isinstance(raw, BadRecord):
                bad += 1
                c["quarantined"] += 1
                where, item = place(raw.position or stream.position(), c["seen"], raw.raw)
                item = "key:" + raw.source_key if raw.source_key else item
                quarantined.append(((n_stream, c["seen"]), (run_id, name, sname, item, raw.source_key, where,
                                                            raw.reason, raw.raw, at)))
                if raw.incomplete:
                    incomplete.setdefault(sname, raw.reason)
                if raw.source_key in in_flight:
                    for done in mapper.drain():
                        apply(*done)
                known = stage.index.get((sname, raw.source_key)) if raw.source_key else None
                if known is not None:
                    stage.seen.add(known[0])  # the source still has it, only unreadable: never mark it missing
                continue
            if watch and type(raw) is dict:
                watch = tracker.see(raw)
            raw_bytes = dumps_bytes(raw)  # hashed as written: no second encode
            digest = hashlib.blake2b(raw_bytes, digest_size=16).hexdigest()
            raw_json = raw_bytes.decode()
            try:
                key = smap.source_key(raw)
            except MappingError as exc:
                c["quarantined"] += 1
                where, item = place(stream.position(), c["seen"], raw_json)
                quarantined.append(((n_stream, c["seen"]), (run_id, name, sname, item, None, where,
                                                            f"{exc} (at {where})", raw_json, at)))
                continue
            if key in in_flight:  # the same key twice in one pull: the first is staged before the second is judged
                for done in mapper.drain():
                    apply(*done)
            if index is None:
                index = stage.index
            existing = index.get((sname, key))
            cv = cursor_get(raw) if cursor_get is not None else None
            if existing is not None and existing[1] == digest and not existing[3]:
                stage.seen.add(existing[0])
                c["unchanged"] += 1
                filled_of(existing[4])
                if open_q and (sname, "key:" + key) in open_q:
                    fixed.append((sname, "key:" + key))
                if cv is not None and (max_cursor is None or str(cv) > str(max_cursor)):
                    max_cursor = cv
            else:
                for done in mapper.put(raw, raw_bytes, key, (key, digest, raw_json, existing, cv,
                                                  (n_stream, c["seen"], stream.position()))):
                    apply(*done)
        for done in mapper.drain():
            apply(*done)
        tracker.raws = c["seen"] - bad
        if progress is not None:
            progress(name, sname, c["seen"])
        new_cursor = state.new_cursor if state.new_cursor is not None else max_cursor
        if new_cursor is not None:
            new_cursors[sname] = new_cursor
    if cancel is not None and cancel.is_set():
        raise RunCancelled("shutting down")
    stage.flush()
    quarantined.sort(key=lambda q: q[0])  # in the order records were read, however mapping was spread
    record_quarantine(repo, name, [q[1] for q in quarantined], open_q, fixed,
                      {t.stream for t in trackers} if full else set(), incomplete, run_id, at)
    status, message = "success", ""
    missing = 0
    if full:
        stage.lock()
        # What could not be read is not gone: a stream not read to its end marks nothing missing.
        live = [v for k, v in stage.index.items() if not v[3] and k[0] not in incomplete]
        unseen = [v[0] for v in live if v[0] not in stage.seen]
        guard = conn_cfg.deletion_guard if conn_cfg.deletion_guard is not None else settings.sync.deletion_guard
        if unseen and not allow_shrink and (not stage.seen or len(unseen) > guard * len(live)):
            status = "guarded"
            share = len(unseen) / len(live)
            message = (f"deletion guard: this full run would mark {len(unseen)} of {len(live)} records "
                       f"({share:.0%}) missing, over the {guard:.0%} limit; nothing was marked missing. "
                       f"If the source really shrank, run again with --allow-shrink")
            log.warning("%s: %s", name, message)
        elif unseen:
            stage.dirty.update(repo.records.mark_missing(unseen, at))
            missing = len(unseen)
    if stage.dirty:
        stage.lock()
    repo.entities.add_dirty(stage.dirty, run_id)
    for sname, cur in new_cursors.items():
        repo.runs.save_cursor(name, sname, cur, run_id, at)
    counts["_total"] = {"missing_marked": missing, "quarantined": len(quarantined), "conflicts": stage.conflicts,
                        "entities_touched": len(stage.dirty), "log_rows": stage.log_rows}
    contract = [t.stats() for t in trackers]
    counts["_contract"] = contract  # a list: tables of per-stream counts pass over it
    for sname, why in incomplete.items():
        warnings.append(f"{name} {sname}: {why}" + ("; nothing of this stream was marked missing" if full else ""))
    if full:
        baseline = repo.runs.last_successful(name, "full", before=run_id)
        verdict = evaluate(name, contract, (baseline[0], baseline[1].get("_contract") or []) if baseline else None,
                           settings.sync.fill_rate_drop, accept_drops, skip=incomplete)
        warnings += verdict.problems
        for note in verdict.notes:
            log.warning("run %s of %s: %s", run_id, name, note)
    if warnings and status == "success":
        status, message = "degraded", "; ".join(warnings)
    elif warnings:
        message = f"{message}; also: {'; '.join(warnings)}"
    return status, message


def _spec(mapping_path: str, stream: str, policy: IdentityPolicy) -> MapSpec | None:
    """What a worker needs to map `stream`; None (map inline) when the mapping is not a file it can read."""
    try:
        return MapSpec.make(mapping_path, stream, policy)
    except OSError:
        return None


def _getter(path: str) -> Callable[[dict[str, Any]], Any]:
    parts = path.split(".")

    def get(rec: dict[str, Any]) -> Any:
        cur: Any = rec
        for p in parts:
            if not isinstance(cur, dict):
                return None
            cur = cur.get(p)
        return cur
    return get
