"""Time travel: golden records as they stood at a past time, rebuilt from the merge log alone.

For an entity, its `set` / `clear` rows with at <= T give each field's value, source and rule as logged;
`missing` / `restored` rows give its status. `merge` rows (logged on the surviving entity, old = the entity
merged away) decide identity: a merged-away entity's rows before the merge stay its own, and it counts as
merged only from the merge on. Which source records fed an entity comes from the link, unlink and merge
rows.

What the log does not hold cannot be rebuilt: competing (losing) values, the observed_at of a value, a
winning source that changed while the value stayed the same (no row is logged for that) and per-record
missing marks. The output says so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from itam_sync.engine.operations import OperationError, find_entity
from itam_sync.store import Store
from itam_sync.store.repos import Repos

log = logging.getLogger(__name__)
NOTE = ("rebuilt from the merge log: each field shows the value, source and rule logged when it last changed; "
        "competing values and their ages are not kept in the log, so they are not shown")
BATCH = 1000


@dataclass
class AsOfField:
    """One golden field as logged: the value and the source and rule that set it, and when."""

    field: str
    value: Any
    source: str | None
    rule: str | None
    logged_at: str
    run_id: int | None
    log_id: int
    actor: str | None = None


@dataclass
class AsOfEntity:
    """A golden record as it stood at `as_of`."""

    entity_id: int
    entity_type: str
    as_of: str
    status: str  # active | missing | merged
    fields: dict[str, AsOfField] = dc_field(default_factory=dict)
    merged_into: dict[str, Any] | None = None  # {"entity": id, "at": time} when merged away by then
    merged_from: list[dict[str, Any]] = dc_field(default_factory=list)  # entities merged into it by then
    records: list[str] = dc_field(default_factory=list)  # connector/stream/key, per the link rows
    exists: bool = False  # any merge-log row at or before as_of


@dataclass
class AsOfExplanation:
    """`explain --as-of`: the entity then, its feeding records then, and its history up to then."""

    entity_id: int
    entity_type: str
    as_of: str
    status: str
    merged_into: dict[str, Any] | None
    merged_from: list[dict[str, Any]]
    merged_later: list[dict[str, Any]]  # entities that were still separate then and were merged into it later
    records: list[str]
    fields: list[AsOfField]
    history: list[dict[str, Any]]
    note: str = NOTE


def _loads(v: str | None) -> Any:
    return json.loads(v) if v is not None else None


def replay(entity_id: int, entity_type: str, rows: Iterable[tuple[Any, ...]], as_of: str) -> AsOfEntity:
    """Apply one entity's log rows (id, run_id, at, entity_type, entity_id, action, field, old, new, source,
    rule, actor), in id order, to an empty record."""
    ent = AsOfEntity(entity_id, entity_type, as_of, "active")
    fields = ent.fields
    for rid, run_id, at, _t, _e, action, fname, old, new, source, rule, actor in rows:
        ent.exists = True
        if action == "set":
            fields[fname] = AsOfField(fname, _loads(new), source, rule, at, run_id, rid, actor)
        elif action == "clear":
            fields.pop(fname, None)
        elif action == "missing":
            ent.status = "missing"
        elif action == "restored":
            ent.status = "active"
        elif action == "merge":
            ent.merged_from.append({"entity": _loads(old), "at": at})
    return ent


def _history_row(r: tuple[Any, ...]) -> dict[str, Any]:
    keys = ("id", "run_id", "at", "entity_type", "entity_id", "action", "field", "old", "new", "source", "rule",
            "actor")
    d = dict(zip(keys, r, strict=True))
    d["old"], d["new"] = _loads(d["old"]), _loads(d["new"])
    return d


def _place_records(rows: Iterable[tuple[int, int, str, str | None, str | None]]
                   ) -> tuple[dict[str, int], dict[int, int]]:
    """Replay identity rows (id, entity_id, action, old, new) in id order: record -> entity it was linked to,
    and merged-away entity -> the entity it was merged into."""
    where: dict[str, int] = {}
    merged: dict[int, int] = {}
    for _id, eid, action, old, new in rows:
        if action == "merge":
            from_id = _loads(old)
            if isinstance(from_id, int):
                merged[from_id] = eid
            continue
        target = json.loads(new) if new else None
        if isinstance(target, dict) and "record" in target and "entity" in target:
            where[target["record"]] = target["entity"]
    return where, merged


def _live(eid: int, merged: dict[int, int]) -> int:
    """The entity `eid` ended up in, following merges."""
    seen = set()
    while eid in merged and eid not in seen:
        seen.add(eid)
        eid = merged[eid]
    return eid


def _record_order(ref: str) -> tuple[str, ...]:
    return tuple(ref.split("/", 2))


def explain_as_of(store: Store, entity_ref: str, as_of: str, history: int = 20) -> AsOfExplanation:
    """An entity as it stood at `as_of` (UTC "YYYY-MM-DDTHH:MM:SSZ"), from the merge log."""
    with store.begin() as repo:
        eid = find_entity(repo, entity_ref)
        info = repo.entities.entity_row(eid)
        if info is None:
            raise OperationError(f"no entity {eid}")
        etype, _status, merged_into_now, _created = info
        rows = repo.log.log_rows_of([eid], until=as_of)
        ent = replay(eid, etype, rows, as_of)
        later = [{"entity": _loads(r[7]), "at": r[2]} for r in repo.log.log_rows_of([eid], after=as_of, action="merge")]
        if not ent.exists:
            hint = (f"; entities merged into it later: {', '.join(str(m['entity']) for m in later)} (try "
                    f"`explain ID --as-of {as_of}` on those)") if later else ""
            raise OperationError(f"entity {eid} has no merge-log rows at or before {as_of}: it did not exist yet"
                                 + hint)
        if merged_into_now is not None:
            for r in repo.log.log_rows_of([merged_into_now], until=as_of, action="merge"):
                if _loads(r[7]) == eid:
                    ent.status, ent.merged_into = "merged", {"entity": merged_into_now, "at": r[2]}
        ent.records = _records_of_group(repo, eid, ent, as_of)
    return AsOfExplanation(eid, etype, as_of, ent.status, ent.merged_into, ent.merged_from, later, ent.records,
                           [ent.fields[f] for f in sorted(ent.fields)],
                           [_history_row(r) for r in rows[-history:]] if history else [])


def _records_of_group(repo: Repos, eid: int, ent: AsOfEntity, as_of: str) -> list[str]:
    """The records feeding `eid` at as_of: linked to it, or to an entity merged into it by then, and not moved
    away since."""
    group = {eid}
    todo = [m["entity"] for m in ent.merged_from]
    while todo:
        f = todo.pop()
        if f in group or not isinstance(f, int):
            continue
        group.add(f)
        todo += [_loads(r[7]) for r in repo.log.log_rows_of([f], until=as_of, action="merge")]
    rows = [r for r in repo.log.log_rows_of(sorted(group), until=as_of) if r[5] in ("link", "unlink", "merge")]
    rows += repo.log.log_links_leaving(sorted(group), as_of)
    rows.sort(key=lambda r: r[0])
    where, merged = _place_records((r[0], r[4], r[5], r[7], r[8]) for r in rows)
    # For an entity merged away by then, these are the records that fed it up to its merge.
    return sorted((rec for rec, e in where.items() if _live(e, merged) in group), key=_record_order)


def iter_as_of(store: Store, entity_type: str, as_of: str, batch: int = BATCH) -> Iterator[AsOfEntity]:
    """Every entity of a type as it stood at `as_of` (not merged away by then, with at least one log row),
    in id order, with the source records that fed it. Streams entities in batches; the record placement
    (one entry per source record) is held in memory."""
    with store.begin() as repo:
        where, merged = _place_records(repo.log.log_identity_rows(as_of))
        records: dict[int, list[str]] = {}
        for rec, e in where.items():
            records.setdefault(_live(e, merged), []).append(rec)
        after = 0
        while True:
            ids = repo.entities.entity_ids_created(entity_type, as_of, after, batch)
            if not ids:
                return
            after = ids[-1]
            by_entity: dict[int, list[tuple[Any, ...]]] = {}
            for r in repo.log.log_rows_of(ids, until=as_of):
                by_entity.setdefault(r[4], []).append(r)
            for eid in ids:
                rows = by_entity.get(eid)
                if not rows or eid in merged:
                    continue
                ent = replay(eid, entity_type, rows, as_of)
                ent.records = sorted(records.get(eid, []), key=_record_order)
                yield ent
