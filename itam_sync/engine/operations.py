"""Operator actions outside a sync run: manual links and splits, overrides, and re-merging under new rules.

Each action is one transaction that re-merges the entities it touches and writes its merge-log rows with
the actor and reason, so an auditor sees who decided what.
"""

from __future__ import annotations

import getpass
import json
import logging
from dataclasses import dataclass
from typing import Any

from itam_sync import clock
from itam_sync.engine.merge.apply import MergeStats, apply_merge
from itam_sync.engine.merge.rules import Rules
from itam_sync.engine.registry import Registry
from itam_sync.mapping.engine import MappingError
from itam_sync.mapping.loader import load_mapping
from itam_sync.model.canonical import FIELDS, EntityType
from itam_sync.settings import Settings
from itam_sync.store import Store
from itam_sync.store.repos import Repos
from itam_sync.store.repos.base import dumps

log = logging.getLogger(__name__)


class OperationError(Exception):
    """An operator action cannot be done as asked; the message says why and what to do."""


def current_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"


def _now() -> str:
    return clock.now_iso()


def _rules(settings: Settings) -> Rules:
    return Rules(settings.precedence, settings.connector_types(), clock.now())


def find_record(repo: Repos, ref: str) -> tuple[Any, ...]:
    """A source record by id or by `connector/stream/source_key` (or `connector/source_key`)."""
    if ref.isdigit():
        row = repo.records.record(int(ref))
        if row is None:
            raise OperationError(f"no source record with id {ref}")
        return row
    parts = ref.split("/", 2)
    if len(parts) < 2:
        raise OperationError(f"record {ref!r}: give a record id or connector/stream/source_key")
    conn, stream, key = (parts[0], None, parts[1]) if len(parts) == 2 else (parts[0], parts[1], parts[2])
    rows = repo.records.find_record(conn, stream, key)
    if not rows:
        raise OperationError(f"no source record {ref!r} (see `itam-sync explain` for an entity's record keys)")
    if len(rows) > 1:
        raise OperationError(f"record {ref!r} is ambiguous; name the stream: connector/stream/source_key")
    return repo.records.record(rows[0][0]) or rows[0]


def find_entity(repo: Repos, ref: str, entity_type: str | None = None) -> int:
    """An entity by id, by a match key (`serial_number:C02...`), or by a bare serial / e-mail / hostname."""
    if ref.isdigit():
        return int(ref)
    candidates = [ref] if ":" in ref else [f"serial_number:{ref.upper()}", f"email:{ref.lower()}",
                                            f"employee_id:{ref}", f"instance_id:{ref}", f"~hostname:{ref.lower()}"]
    types = [entity_type] if entity_type else [t.value for t in EntityType]
    for key in candidates:
        for t in types:
            eid = repo.entities.entity_by_key(t, key)
            if eid is not None:
                return eid
    raise OperationError(f"no entity matches {ref!r}; use an entity id or a key such as serial_number:ABC123")


def link(store: Store, settings: Settings, record_ref: str, entity_ref: str, reason: str | None,
         actor: str | None = None) -> tuple[int, int]:
    """Pin a record to an entity; the decision holds across later runs. Returns (record id, entity id)."""
    actor = actor or current_actor()
    with store.begin(immediate=True) as repo:
        rec = find_record(repo, record_ref)
        rid, conn, stream, key, old_eid, etype = rec[:6]
        eid = find_entity(repo, entity_ref, etype)
        gold = repo.entities.goldens([eid]).get(eid)
        if gold is None or gold[0] != etype:
            raise OperationError(f"entity {eid} is not a {etype}")
        if gold[2] == "merged":
            raise OperationError(f"entity {eid} was merged away; link to its successor instead")
        at = _now()
        repo.conflicts.pin(rid, eid, "link", reason, actor, at)
        repo.entities.set_record_entities([(eid, rid)])
        repo.conflicts.resolve_conflicts_for(rid)
        repo.log.insert_log([(None, at, etype, eid, "link", None, dumps(old_eid),
                          dumps({"record": f"{conn}/{stream}/{key}", "entity": eid}), "manual",
                          f"manual link: {reason or 'no reason given'}", actor)])
        apply_merge(repo, [e for e in (old_eid, eid) if e is not None], _rules(settings), None, at, actor=actor)
    return rid, eid


def unlink(store: Store, settings: Settings, record_ref: str, reason: str | None,
           actor: str | None = None) -> tuple[int, int]:
    """Split a record off its entity into one of its own; holds across later runs. Returns (record, new entity)."""
    actor = actor or current_actor()
    with store.begin(immediate=True) as repo:
        rec = find_record(repo, record_ref)
        rid, conn, stream, key, old_eid, etype, keys_json = rec
        at = _now()
        new_eid = repo.db.allocate_ids("entities", 1)[0]
        repo.entities.insert_entities([(new_eid, etype)], None, at)
        # Keys that only this record brings move with it; shared keys stay with the old entity.
        others = {k for r in repo.records.records_of_entity(old_eid) if r[0] != rid for k in json.loads(r[4])} \
            if old_eid is not None else set()
        mine = [k for k in json.loads(keys_json) if k not in others]
        repo.entities.move_keys(mine, etype, new_eid)
        repo.conflicts.pin(rid, new_eid, "unlink", reason, actor, at)
        repo.entities.set_record_entities([(new_eid, rid)])
        repo.conflicts.resolve_conflicts_for(rid)
        repo.log.insert_log([(None, at, etype, old_eid or new_eid, "unlink", None, dumps(old_eid),
                          dumps({"record": f"{conn}/{stream}/{key}", "entity": new_eid}), "manual",
                          f"manual split: {reason or 'no reason given'}", actor)])
        apply_merge(repo, [e for e in (old_eid, new_eid) if e is not None], _rules(settings), None, at,
                    actor=actor)
    return rid, new_eid


def override(store: Store, settings: Settings, entity_ref: str, field: str, value: Any, reason: str,
             expires: str | None = None, actor: str | None = None) -> int:
    """Set a manual value for a field (the `manual` source, above every connector)."""
    actor = actor or current_actor()
    if not reason.strip():
        raise OperationError("an override needs --reason: auditors will ask why")
    with store.begin(immediate=True) as repo:
        eid = find_entity(repo, entity_ref)
        gold = repo.entities.goldens([eid]).get(eid)
        if gold is None:
            raise OperationError(f"no entity {eid}")
        etype = EntityType(gold[0])
        if field not in FIELDS[etype]:
            raise OperationError(f"{etype.value} has no field {field!r}; fields: {', '.join(FIELDS[etype])}")
        at = _now()
        repo.overrides.add_override(eid, field, value, reason, actor, at, expires)
        apply_merge(repo, [eid], _rules(settings), None, at, actor=actor)
    return eid


@dataclass
class RemergeResult:
    stats: MergeStats
    remapped_records: int
    remap_errors: list[str]


def remerge(store: Store, settings: Settings, dry_run: bool = True, registry: Registry | None = None,
            actor: str | None = None) -> RemergeResult:
    """Re-map every stored raw record with the current mappings and re-merge every entity under the current
    rules, without calling any API. With dry_run the transaction is rolled back: nothing changes."""
    registry = registry or Registry()
    actor = actor or current_actor()
    mappings = {}
    for c in settings.connectors:
        mappings[c.name] = load_mapping(settings.mapping_path(c, registry.get(c.type).mapping_name()))
    at = _now()
    errors: list[str] = []
    remapped = 0
    with store.engine.connect() as conn:
        conn = conn.execution_options(sqlite_immediate=True)
        tx = conn.begin()
        try:
            repo = Repos(conn)
            last = 0
            while True:
                rows = repo.records.records_for_remap(last, 5000)
                if not rows:
                    break
                last = rows[-1][0]
                changes = []
                for rid, cname, stream, raw, fields, _eid in rows:
                    mapping = mappings.get(cname)
                    if mapping is None:
                        continue  # a connector no longer configured keeps its stored values
                    try:
                        obs = mapping.stream(stream).map(json.loads(raw), stream)
                    except MappingError as exc:
                        if len(errors) < 20:
                            errors.append(f"{cname}/{stream} record {rid}: {exc}")
                        continue
                    new_fields = dumps(obs.fields)
                    if new_fields != fields:
                        changes.append((new_fields, rid))
                repo.records.set_record_fields(changes)
                remapped += len(changes)
            stats = apply_merge(repo, repo.entities.entity_ids(), _rules(settings), None, at, dry_run=dry_run, actor=actor)
            if dry_run:
                tx.rollback()
            else:
                tx.commit()
        except BaseException:
            tx.rollback()
            raise
    return RemergeResult(stats, remapped, errors)
