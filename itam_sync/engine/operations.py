"""Operator actions outside a sync run: manual links and splits, overrides, and re-merging under new rules.

Each action is one transaction that re-merges the entities it touches and writes its merge-log rows with
the actor and reason, so an auditor sees who decided what.
"""

from __future__ import annotations

import difflib
import getpass
import json
import logging
from dataclasses import dataclass
from typing import Any

from itam_sync import clock
from itam_sync.engine.merge.apply import MergeStats, apply_merge
from itam_sync.engine.merge.rules import MANUAL, Rules
from itam_sync.engine.registry import Registry
from itam_sync.engine.resolution import policy_for, reresolve_records
from itam_sync.mapping.engine import MappingError, kind_check
from itam_sync.mapping.loader import load_mapping
from itam_sync.mapping.transforms import TransformError
from itam_sync.model.canonical import FIELDS, EntityType, FieldKind
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


def _is_id(ref: str) -> bool:
    """A store id: ASCII digits that fit a 64-bit integer (Unicode digits and huge numbers are keys, not ids)."""
    return ref.isascii() and ref.isdigit() and len(ref) <= 18


def find_record(repo: Repos, ref: str) -> tuple[Any, ...]:
    """A source record by id or by `connector/stream/source_key` (or `connector/source_key`)."""
    if _is_id(ref):
        row = repo.records.record(int(ref))
        if row is None:
            raise OperationError(f"no source record with id {ref}")
        return row
    parts = ref.split("/", 2)
    if len(parts) < 2:
        raise OperationError(f"record {ref!r}: give a record id or connector/stream/source_key")
    conn, stream, key = (parts[0], None, parts[1]) if len(parts) == 2 else (parts[0], parts[1], parts[2])
    key = key.strip()  # source keys are stored stripped; one stored before that is still found by its text
    rows = repo.records.find_record(conn, stream, key) or repo.records.find_record_trimmed(conn, stream, key)
    if not rows:
        raise OperationError(f"no source record {ref!r} (see `itam-sync explain` for an entity's record keys)")
    if len(rows) > 1:
        raise OperationError(f"record {ref!r} is ambiguous; name the stream: connector/stream/source_key")
    return repo.records.record(rows[0][0]) or rows[0]


def find_entity(repo: Repos, ref: str, entity_type: str | None = None) -> int:
    """An entity by id, by a match key (`serial_number:C02...`), or by a bare serial / e-mail / hostname."""
    if _is_id(ref):
        return int(ref)
    candidates = [ref] if ":" in ref else [f"serial_number:{ref.upper()}", f"email:{ref.lower()}",
                                            f"employee_id:{ref}", f"instance_id:{ref}", f"~hostname:{ref.lower()}"]
    types = [entity_type] if entity_type else [t.value for t in EntityType]
    for key in candidates:
        for t in types:
            eid = repo.entities.entity_by_key(t, key)
            if eid is not None:
                return eid
    for key in candidates:
        for t in types:
            why = repo.identity.ambiguous(t).get(key)
            if why is not None:
                raise OperationError(f"{key} identifies no one {t}: it is ambiguous ({why[1]}; held by {why[3]} "
                                     f"entities, listed by `itam-sync identifiers`); use an entity id or another key")
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
            raise OperationError(f"entity {eid} is not {'an' if etype[:1] in 'aeiou' else 'a'} {etype}")
        if gold[2] == "merged":
            raise OperationError(f"entity {eid} was merged away; link to its successor instead")
        at = _now()
        repo.conflicts.pin(rid, eid, "link", reason, actor, at)
        repo.conflicts.resolve_conflicts_for(rid)
        repo.log.insert_log([(None, at, etype, eid, "link", None, dumps(old_eid),
                          dumps({"record": f"{conn}/{stream}/{key}", "entity": eid}), "manual",
                          f"manual link: {reason or 'no reason given'}", actor)])
        # Identity moves the record, re-decides what it leaves behind and merges an entity it left empty (e.g.
        # a link undoing an unlink) into the target with its overrides, instead of leaving an empty record.
        res = reresolve_records(repo, policy_for(settings), [rid], at=at, actor=actor, quiet={rid})
        apply_merge(repo, sorted(res.dirty | {eid}), _rules(settings), None, at, actor=actor)
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
        repo.conflicts.pin(rid, new_eid, "unlink", reason, actor, at)
        repo.conflicts.resolve_conflicts_for(rid)
        repo.log.insert_log([(None, at, etype, old_eid or new_eid, "unlink", None, dumps(old_eid),
                          dumps({"record": f"{conn}/{stream}/{key}", "entity": new_eid}), "manual",
                          f"manual split: {reason or 'no reason given'}", actor)])
        # Identity moves the record and its keys, and re-decides the records it leaves behind.
        res = reresolve_records(repo, policy_for(settings), [rid], at=at, actor=actor, quiet={rid})
        apply_merge(repo, sorted(res.dirty | {new_eid}), _rules(settings), None, at, actor=actor)
    return rid, new_eid


def override(store: Store, settings: Settings, entity_ref: str, field: str, value: Any, reason: str,
             expires: str | None = None, actor: str | None = None) -> int:
    """Set a manual value for a field (the `manual` source, above every connector).

    The value is checked against the canonical field's type and vocabulary (`purchase_cost abc` and
    `lifecycle_state broken` are refused) and stored in canonical form. An expiry must lie ahead: a past one
    would only end the override it replaces. The merge log gets an `override` row with the reason and
    expiry (hash-chained), then the golden field's `set` row."""
    actor = actor or current_actor()
    if not reason.strip():
        raise OperationError("an override needs --reason: auditors will ask why")
    at = _now()
    if expires is not None and expires <= at:
        raise OperationError(f"--expires {expires} is in the past (now {at}): it would end at once and only replace "
                             "the current override (fix: give a later time, or remove an override with "
                             "`itam-sync override ENTITY FIELD --remove --reason ...`)")
    with store.begin(immediate=True) as repo:
        eid, etype = _live_entity(repo, entity_ref)
        canonical = canonical_override_value(etype, field, value)
        before = repo.overrides.current_override(eid, field, at)
        repo.overrides.add_override(eid, field, canonical, reason, actor, at, expires)
        why = f"override: {reason.strip()}" + (f" (expires {expires})" if expires else "")
        repo.log.insert_log([(None, at, etype.value, eid, "override", field,
                              None if before is None else dumps(before["value"]), dumps(canonical), MANUAL, why,
                              actor)])
        apply_merge(repo, [eid], _rules(settings), None, at, actor=actor)
    return eid


def remove_override(store: Store, settings: Settings, entity_ref: str, field: str, reason: str,
                    actor: str | None = None) -> tuple[int, dict[str, Any]]:
    """End the override of FIELD on an entity; the sources decide the field again. Logged as `unoverride` with
    the reason. Returns (entity id, the override that ended)."""
    actor = actor or current_actor()
    if not reason.strip():
        raise OperationError("removing an override needs --reason: auditors will ask why")
    at = _now()
    with store.begin(immediate=True) as repo:
        eid, etype = _live_entity(repo, entity_ref)
        current = repo.overrides.current_override(eid, field, at)
        if current is None:
            raise OperationError(f"{etype.value} {eid} has no override of {field!r} in force (see `itam-sync "
                                 "overrides`)")
        repo.overrides.end_override(current["id"])
        repo.log.insert_log([(None, at, etype.value, eid, "unoverride", field, dumps(current["value"]), None, MANUAL,
                              f"override removed: {reason.strip()}", actor)])
        apply_merge(repo, [eid], _rules(settings), None, at, actor=actor)
    return eid, current


def _live_entity(repo: Repos, entity_ref: str) -> tuple[int, EntityType]:
    eid = find_entity(repo, entity_ref)
    gold = repo.entities.goldens([eid]).get(eid)
    if gold is None:
        raise OperationError(f"no entity {eid}")
    if gold[2] == "merged":
        raise OperationError(f"entity {eid} was merged into another; use the entity it was merged into")
    return eid, EntityType(gold[0])


_KIND_WORDS = {FieldKind.NUMBER: "a number, e.g. 1299.00", FieldKind.INTEGER: "a whole number, e.g. 25",
               FieldKind.DATE: "a date, YYYY-MM-DD", FieldKind.DATETIME: "a time, YYYY-MM-DDTHH:MM:SSZ",
               FieldKind.BOOL: "true or false", FieldKind.LIST: "a list, comma-separated or a JSON list",
               FieldKind.TEXT: "text"}


def canonical_override_value(etype: EntityType, field: str, value: Any) -> Any:
    """`value` in the canonical form of `field` (what a source's mapping would produce); OperationError naming
    the field's type or vocabulary when it does not fit."""
    spec = FIELDS[etype].get(field)
    if spec is None:
        close = difflib.get_close_matches(field, FIELDS[etype], n=1)
        raise OperationError(f"{etype.value} has no field {field!r}"
                             + (f" (fix: did you mean {close[0]!r}?)" if close else "")
                             + f"; fields: {', '.join(FIELDS[etype])}")
    if spec.kind is FieldKind.ENUM:
        text = str(value).strip().lower() if isinstance(value, str) else value
        if text not in spec.choices:
            close = difflib.get_close_matches(str(text), spec.choices, n=1)
            raise OperationError(f"{field} must be one of {', '.join(spec.choices)}; {value!r} is not"
                                 + (f" (fix: did you mean {close[0]!r}?)" if close else ""))
        return text
    if spec.kind is FieldKind.LIST and isinstance(value, str):
        value = value.split(",")
    try:
        out = kind_check(spec)(value)
    except TransformError as exc:
        raise OperationError(f"{field} takes {_KIND_WORDS[spec.kind]}; {value!r} is not ({exc.message})") from None
    if out is None or out == "":
        raise OperationError(f"{field} takes {_KIND_WORDS[spec.kind]}; {value!r} is empty (to stop overriding it, "
                             "use --remove)")
    return out


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
            stats = apply_merge(repo, repo.entities.entity_ids(), _rules(settings), None, at, dry_run=dry_run,
                                actor=actor)
            if dry_run:
                tx.rollback()
            else:
                tx.commit()
        except BaseException:
            tx.rollback()
            raise
    return RemergeResult(stats, remapped, errors)
