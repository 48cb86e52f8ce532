"""Re-merge dirty entities: read their live source values and overrides, decide, write golden + merge log."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from itam_sync.merge.merger import merge_entity
from itam_sync.merge.rules import Rules
from itam_sync.model.canonical import EntityType
from itam_sync.store.repository import Repository, dumps

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


def apply_merge(repo: Repository, entity_ids: list[int], rules: Rules, run_id: int | None, at: str,
                dry_run: bool = False, actor: str | None = None, examples: int = 3) -> MergeStats:
    """Merge `entity_ids` (sorted, in batches); write golden rows and one log row per changed field."""
    stats = MergeStats()
    ids = sorted(set(entity_ids))
    for i in range(0, len(ids), BATCH):
        chunk = ids[i:i + BATCH]
        sources = repo.entity_sources(chunk)
        goldens = repo.goldens(chunk)
        overrides = repo.active_overrides(chunk, at)
        updates: list[tuple[str, str, int | None, str, int]] = []
        log_rows: list[tuple[Any, ...]] = []
        for eid in chunk:
            current = goldens.get(eid)
            if current is None or current[2] == "merged":
                continue
            etype, old, old_status = current
            stats.entities += 1
            recs = sources.get(eid, [])
            decisions = merge_entity(EntityType(etype), recs, overrides.get(eid, []), rules)
            new = {f: {"v": d.value, "s": d.source, "at": d.observed_at} for f, d in decisions.items()}
            status = "active" if recs else "missing"
            if new == old and status == old_status:
                continue
            stats.changed_entities += 1
            for f, d in decisions.items():
                before = old.get(f)
                if before is not None and before["v"] == d.value:
                    continue
                stats.changed_fields[f] += 1
                old_v = before["v"] if before is not None else None
                if dry_run:
                    ex = stats.examples.setdefault(f, [])
                    if len(ex) < examples:
                        ex.append({"entity": eid, "old": old_v, "new": d.value, "source": d.source,
                                   "rule": d.rule})
                    continue
                log_rows.append((run_id, at, etype, eid, "set", f, None if before is None else dumps(old_v),
                                 dumps(d.value), d.source, d.rule, actor))
            for f in old.keys() - new.keys():
                stats.changed_fields[f] += 1
                if not dry_run:
                    log_rows.append((run_id, at, etype, eid, "clear", f, dumps(old[f]["v"]), None,
                                     old[f].get("s"), "no live source has a value", actor))
            if status != old_status and not dry_run:
                log_rows.append((run_id, at, etype, eid, "missing" if status == "missing" else "restored", None,
                                 json.dumps(old_status), json.dumps(status), None,
                                 "no live source record" if status == "missing" else "a source sees it again",
                                 actor))
            updates.append((dumps(new), status, run_id, at, eid))
        if not dry_run:
            repo.update_goldens(updates)
            repo.insert_log(log_rows)
            stats.log_rows += len(log_rows)
    return stats
