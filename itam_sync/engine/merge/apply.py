"""Re-merge dirty entities: read their live source values and overrides, decide, write golden + merge log."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from itam_sync.engine.merge.merger import merge_entity
from itam_sync.engine.merge.rules import Rules
from itam_sync.model.canonical import EntityType
from itam_sync.store.repos import Repos
from itam_sync.store.repos.base import dumps, encode_value
from itam_sync.store.repos.merge_log import CREATE, CREATE_RULE

log = logging.getLogger(__name__)
BATCH = 1000


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
                dry_run: bool = False, actor: str | None = None, examples: int = 3) -> MergeStats:
    """Merge `entity_ids` (sorted, in batches); write golden rows and one log row per changed field.

    A golden record is stored as {field: [value, source, observed_at]}. An entity's first merge (an active
    entity with no golden field yet) logs one `create` row, {field: [value, source, rule]}, in place of a
    `set` row from nothing per field (see store/repos/merge_log.py).
    """
    stats = MergeStats()
    changed_fields = stats.changed_fields
    ids = sorted(set(entity_ids))
    for i in range(0, len(ids), BATCH):
        chunk = ids[i:i + BATCH]
        sources = repo.records.entity_sources(chunk)
        goldens = repo.entities.goldens(chunk)
        overrides = repo.overrides.active_overrides(chunk, at)
        updates: list[tuple[str, str, int | None, str, int]] = []
        log_rows: list[tuple[Any, ...]] = []
        add_log = log_rows.append
        for eid in chunk:
            current = goldens.get(eid)
            if current is None or current[2] == "merged":
                continue
            etype, old, old_status = current
            stats.entities += 1
            recs = sources.get(eid, [])
            decisions = merge_entity(EntityType(etype), recs, overrides.get(eid, []), rules)
            status = "active" if recs else "missing"
            new: dict[str, list[Any]] = {}
            changed = status != old_status or len(decisions) != len(old)
            first = not old and old_status == status == "active" and not dry_run
            created: dict[str, list[Any]] | None = {} if first else None
            for f, d in decisions.items():
                value = d.value
                entry = [value, d.source, d.observed_at]
                new[f] = entry
                before = old.get(f)
                if before is not None and before[0] == value:
                    if not changed and before != entry:
                        changed = True  # same value, new winning source or age: store it, log nothing
                    continue
                changed = True
                changed_fields[f] += 1
                if dry_run:
                    ex = stats.examples.setdefault(f, [])
                    if len(ex) < examples:
                        ex.append({"entity": eid, "old": None if before is None else before[0], "new": value,
                                   "source": d.source, "rule": d.rule})
                    continue
                if created is not None:
                    created[f] = [value, d.source, d.rule]
                    continue
                add_log((run_id, at, etype, eid, "set", f, None if before is None else encode_value(before[0]),
                         encode_value(value), d.source, d.rule, actor))
            if not changed:
                continue
            if created:
                add_log((run_id, at, etype, eid, CREATE, None, None, dumps(created), None, CREATE_RULE, actor))
            stats.changed_entities += 1
            for f in old.keys() - new.keys():
                changed_fields[f] += 1
                if not dry_run:
                    add_log((run_id, at, etype, eid, "clear", f, encode_value(old[f][0]), None, old[f][1],
                             "no live source has a value", actor))
            if status != old_status and not dry_run:
                add_log((run_id, at, etype, eid, "missing" if status == "missing" else "restored", None,
                         encode_value(old_status), encode_value(status), None,
                         "no live source record" if status == "missing" else "a source sees it again", actor))
            updates.append((dumps(new), status, run_id, at, eid))
        if not dry_run:
            repo.entities.update_goldens(updates)
            repo.log.insert_log(log_rows)
            stats.log_rows += len(log_rows)
    return stats
