"""One sync run of one connector instance, start to finish (DESIGN.md "Data flow").

pull -> map -> stage (skip unchanged by hash) -> identity -> merge dirty entities -> log, all in ONE
transaction with the new cursor and the run's final status, so a failed or killed run leaves the last good
state intact and marks nothing missing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from itam_sync.identity import IdentityPolicy, RecordToResolve, resolve
from itam_sync.mapping.engine import MappingError
from itam_sync.mapping.loader import load_mapping
from itam_sync.merge.apply import MergeStats, apply_merge
from itam_sync.merge.rules import Rules, iso
from itam_sync.model.canonical import EntityType
from itam_sync.registry import Registry
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorError, StreamState
from itam_sync.settings import ConfigError, ConnectorConfig, Settings, resolve_secrets
from itam_sync.store import Store
from itam_sync.store.repository import Repository, dumps

log = logging.getLogger(__name__)
Progress = Callable[[str, str, int], None]  # (connector, stream, records seen so far)


class SyncFailed(Exception):
    """The run failed; nothing it staged was committed."""

    def __init__(self, message: str, run_id: int | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class AlreadyRunning(SyncFailed):
    """Another run of the same connector is in progress."""


@dataclass
class RunResult:
    """What a run did."""

    run_id: int
    connector: str
    mode: str
    status: str  # success | guarded | failed
    counts: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    duration_s: float = 0.0


def now_iso() -> str:
    return iso(datetime.now(UTC))


def build_connector(settings: Settings, conn_cfg: ConnectorConfig, registry: Registry) -> Connector:
    """Instantiate a configured connector with its secrets resolved (in memory only)."""
    cls = registry.get(conn_cfg.type)
    resolved = resolve_secrets(conn_cfg.settings, f"connector {conn_cfg.name!r} settings")
    try:
        model = cls.settings_model.model_validate(resolved)
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


def _reap_stale_runs(repo: Repository, connector: str, at: str) -> None:
    host = socket.gethostname()
    for run_id, _, pid, run_host in repo.running_runs(connector):
        if run_host == host and pid and pid != os.getpid() and _pid_alive(pid):
            raise AlreadyRunning(f"connector {connector!r} is already running (run {run_id}, pid {pid})", run_id)
        repo.finish_run(run_id, "interrupted", at, 0.0, {}, "the process ended before the run finished")


class _Staging:
    """Per-run staging state: the connector's source index, id blocks and the records of the open batch."""

    def __init__(self, repo: Repository, connector: str, run_id: int, policy: IdentityPolicy, batch: int,
                 at: str) -> None:
        self.repo, self.connector, self.run_id, self.policy, self.batch, self.at = (
            repo, connector, run_id, policy, batch, at)
        self._index: dict[tuple[str, str], tuple[int, str, int | None, bool]] | None = None
        self.seen: set[int] = set()
        self.dirty: set[int] = set()
        self.use_pins = repo.has_pins()
        self._ids: list[int] = []
        self._eids: list[int] = []
        self.new_rows: list[tuple[Any, ...]] = []
        self.upd_rows: list[tuple[Any, ...]] = []
        self.resolve: list[RecordToResolve] = []
        self.refs: dict[int, str] = {}
        self.log_rows = 0
        self.conflicts = 0

    @property
    def index(self) -> dict[tuple[str, str], tuple[int, str, int | None, bool]]:
        """(stream, source key) -> (id, hash, entity, missing), loaded on first use: an incremental run that
        receives nothing never reads it."""
        if self._index is None:
            self._index = self.repo.source_index(self.connector)
        return self._index

    def _next_id(self) -> int:
        if not self._ids:
            self._ids = self.repo.allocate_ids("source_records", self.batch)[::-1]
        return self._ids.pop()

    def _next_entity_id(self, _entity: EntityType) -> int:
        if not self._eids:
            self._eids = self.repo.allocate_ids("entities", self.batch)[::-1]
        return self._eids.pop()

    def add(self, stream: str, key: str, digest: str, raw_json: str, entity: EntityType, fields: dict[str, Any],
            observed_at: str | None, existing: tuple[int, str, int | None, bool] | None) -> str:
        keys = self.policy.match_keys(entity, fields)
        fields_json, keys_json = dumps(fields), dumps(keys)
        if existing is None:
            rid = self._next_id()
            self.new_rows.append((rid, self.connector, stream, key, entity.value, digest, raw_json, fields_json,
                                  keys_json, observed_at, self.run_id))
            self.index[(stream, key)] = (rid, digest, None, False)
            current, outcome = None, "new"
        else:
            rid, _, current, was_missing = existing
            self.upd_rows.append((digest, raw_json, fields_json, keys_json, observed_at, self.run_id, rid))
            self.index[(stream, key)] = (rid, digest, current, False)
            outcome = "reappeared" if was_missing else "changed"
        self.seen.add(rid)
        self.resolve.append(RecordToResolve(rid, entity, keys, current))
        self.refs[rid] = f"{self.connector}/{stream}/{key}"
        if len(self.resolve) >= self.batch:
            self.flush()
        return outcome

    def flush(self) -> None:
        """Resolve the batch's identities, then write records (with their entity), keys, merges and log rows."""
        repo, at, run_id = self.repo, self.at, self.run_id
        if self.use_pins:
            pins = repo.pins([r.record_id for r in self.resolve])
            for r in self.resolve:
                r.pinned_to = pins.get(r.record_id)
        res = resolve(self.resolve, repo, self._next_entity_id)
        # Every record's entity is known before it is written: one write per record, no second UPDATE pass.
        entity_of = {r.record_id: r.entity_id for r in self.resolve}
        entity_of.update((rid, eid) for rid, eid, _, _ in res.links)
        repo.insert_entities(res.new_entities, run_id, at)
        repo.insert_records([(*row, entity_of[row[0]]) for row in self.new_rows])
        repo.update_records([(*row[:-1], entity_of[row[-1]], row[-1]) for row in self.upd_rows])
        repo.insert_keys(res.new_keys)
        etype = {r.record_id: r.entity.value for r in self.resolve}
        log_rows: list[tuple[Any, ...]] = []
        for rid, eid, prev, why in res.links:
            log_rows.append((run_id, at, etype[rid], eid, "link", None, None if prev is None else dumps(prev),
                             dumps({"record": self.refs[rid], "entity": eid}), self.connector, why, None))
        for from_id, into_id, via, merged_type in res.merges:
            repo.merge_entities(from_id, into_id, run_id, at)
            log_rows.append((run_id, at, merged_type, into_id, "merge", None, dumps(from_id), dumps(into_id),
                             self.connector, f"one record holds keys of both; joined on {via}", None))
        conflict_rows = []
        for rid, key, linked_to, other, reason in res.conflicts:
            conflict_rows.append((run_id, etype[rid], rid, key, linked_to, other, reason, at))
            log_rows.append((run_id, at, etype[rid], other, "conflict", None, None,
                             dumps({"record": self.refs[rid], "key": key}), self.connector,
                             f"link refused: {reason}", None))
        repo.insert_conflicts(conflict_rows)
        repo.insert_log(log_rows)
        self.log_rows += len(log_rows)
        self.conflicts += len(res.conflicts)
        self.dirty |= res.dirty
        self.new_rows, self.upd_rows, self.resolve, self.refs = [], [], [], {}


def run_connector(settings: Settings, name: str, *, full: bool = False, allow_shrink: bool = False,
                  store: Store | None = None, registry: Registry | None = None,
                  progress: Progress | None = None, actor: str | None = None, merge: bool = True) -> RunResult:
    """Run one sync of connector `name`. Raises SyncFailed (with the run recorded as failed) on error.

    Staging (pull, map, stage, identity, missing marks, cursor) commits as one transaction that also queues
    the touched entities; the merge of that queue follows in a second transaction (`merge_pending`). With
    merge=False the caller merges once after several connectors (what `itam-sync run` does), so an entity
    seen by four sources is merged once, not four times. A crash between the two loses nothing: the queue
    is durable and drained by the next merge.
    """
    registry = registry or Registry()
    conn_cfg = settings.connector(name)
    if not conn_cfg.enabled:
        raise ConfigError([f"connector {name!r} is disabled in the config (set enabled: true to run it)"])
    cls = registry.get(conn_cfg.type)
    mapping = load_mapping(settings.mapping_path(conn_cfg, cls.mapping_name()))
    policy = IdentityPolicy.from_config(settings.identity)
    own_store = store is None
    store = store or Store.open(settings.store.url)
    mode = "full" if full else "incremental"
    started = now_iso()
    t0 = time.perf_counter()
    with store.begin(immediate=True) as repo:
        _reap_stale_runs(repo, name, started)
        run_id = repo.create_run(name, conn_cfg.type, mode, started, os.getpid(), socket.gethostname())
    connector: Connector | None = None
    counts: dict[str, Any] = {}
    try:
        connector = build_connector(settings, conn_cfg, registry)
        with store.begin(immediate=True) as repo:
            status, message = _sync(repo, settings, conn_cfg, connector, mapping, policy, run_id, full,
                                    allow_shrink, counts, progress, started, actor)
            duration = time.perf_counter() - t0
            repo.finish_run(run_id, status, now_iso(), duration, counts, message or None)
    except BaseException as exc:
        duration = time.perf_counter() - t0
        text = _one_line(exc)
        with store.begin() as repo:
            repo.finish_run(run_id, "failed", now_iso(), duration, counts, text)
        log.error("run %s of %s failed: %s", run_id, name, text)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise SyncFailed(f"sync of {name!r} failed (run {run_id}): {text}", run_id) from exc
    finally:
        if connector is not None:
            connector.close()
    try:
        if merge:
            merge_pending(settings, store, actor=actor)
    except Exception as exc:
        # The staged data and the queue are committed; the next run or `itam-sync merge` retries the merge.
        raise SyncFailed(f"sync of {name!r} staged (run {run_id}) but the merge failed: {_one_line(exc)}; "
                         "the queued entities are kept and merged by the next run", run_id) from exc
    finally:
        if own_store:
            store.close()
    return RunResult(run_id, name, mode, status, counts, message, duration)


def merge_pending(settings: Settings, store: Store, actor: str | None = None) -> MergeStats:
    """Merge every queued (dirty) entity and entities whose overrides expired: golden records + merge log."""
    at = now_iso()
    t0 = time.perf_counter()
    with store.begin(immediate=True) as repo:
        ids = repo.dirty_ids()
        expired = repo.expired_override_entities(at)
        if not ids and not expired:
            return MergeStats()
        run_id = repo.create_run("(merge)", "merge", "merge", at, os.getpid(), socket.gethostname())
        rules = Rules(settings.precedence, settings.connector_types(), datetime.now(UTC))
        stats = apply_merge(repo, ids + expired, rules, run_id, at, actor=actor)
        repo.clear_dirty(ids)
        repo.finish_run(run_id, "success", now_iso(), time.perf_counter() - t0, {"_total": stats.as_dict()}, None)
    return stats


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if isinstance(exc, ConnectorError | ConfigError | MappingError) else f"{type(exc).__name__}: {text}"


def _sync(repo: Repository, settings: Settings, conn_cfg: ConnectorConfig, connector: Connector, mapping: Any,
          policy: IdentityPolicy, run_id: int, full: bool, allow_shrink: bool, counts: dict[str, Any],
          progress: Progress | None, at: str, actor: str | None) -> tuple[str, str]:
    name = conn_cfg.name
    cursors = {} if full else repo.get_cursors(name)
    stage = _Staging(repo, name, run_id, policy, settings.sync.batch_size, at)
    new_cursors: dict[str, Any] = {}
    quarantined: list[tuple[Any, ...]] = []
    for stream in connector.streams():
        smap = mapping.stream(stream.name)
        state = StreamState(cursor=cursors.get(stream.name), full=full)
        c = counts.setdefault(stream.name, {"seen": 0, "new": 0, "changed": 0, "unchanged": 0, "reappeared": 0,
                                            "quarantined": 0})
        cursor_get = _getter(stream.cursor_field) if stream.cursor_field else None
        max_cursor = state.cursor
        index: dict[tuple[str, str], tuple[int, str, int | None, bool]] | None = None
        sname = stream.name
        for raw in stream.records(state):
            c["seen"] += 1
            if progress is not None and c["seen"] % 5000 == 0:
                progress(name, sname, c["seen"])
            if isinstance(raw, BadRecord):
                c["quarantined"] += 1
                quarantined.append((run_id, name, sname, raw.source_key, raw.reason, raw.raw, at))
                known = stage.index.get((sname, raw.source_key)) if raw.source_key else None
                if known is not None:
                    stage.seen.add(known[0])  # the source still has it, only unreadable: never mark it missing
                continue
            raw_json = dumps(raw)
            digest = hashlib.blake2b(raw_json.encode(), digest_size=16).hexdigest()
            try:
                key = smap.source_key(raw)
            except MappingError as exc:
                c["quarantined"] += 1
                quarantined.append((run_id, name, sname, None, str(exc), raw_json, at))
                continue
            if index is None:
                index = stage.index
            existing = index.get((sname, key))
            if existing is not None and existing[1] == digest and not existing[3]:
                stage.seen.add(existing[0])
                c["unchanged"] += 1
            else:
                try:
                    obs = smap.map(raw, sname)
                except MappingError as exc:
                    c["quarantined"] += 1
                    quarantined.append((run_id, name, sname, key, str(exc), raw_json, at))
                    if existing is not None:
                        stage.seen.add(existing[0])  # the source still has it: never mark it missing
                    continue  # a quarantined record never moves the cursor (its value may be garbage)
                c[stage.add(sname, key, digest, raw_json, obs.entity, obs.fields, obs.observed_at, existing)] += 1
            if cursor_get is not None:
                cv = cursor_get(raw)
                if cv is not None and (max_cursor is None or str(cv) > str(max_cursor)):
                    max_cursor = cv
        if progress is not None:
            progress(name, sname, c["seen"])
        new_cursor = state.new_cursor if state.new_cursor is not None else max_cursor
        if new_cursor is not None:
            new_cursors[sname] = new_cursor
    stage.flush()
    repo.quarantine(quarantined)
    status, message = "success", ""
    missing = 0
    if full:
        live = [v for v in stage.index.values() if not v[3]]
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
            stage.dirty.update(repo.mark_missing(unseen, at))
            missing = len(unseen)
    repo.add_dirty(stage.dirty, run_id)
    for sname, cur in new_cursors.items():
        repo.save_cursor(name, sname, cur, run_id, at)
    counts["_total"] = {"missing_marked": missing, "quarantined": len(quarantined), "conflicts": stage.conflicts,
                        "entities_touched": len(stage.dirty), "log_rows": stage.log_rows}
    return status, message


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
