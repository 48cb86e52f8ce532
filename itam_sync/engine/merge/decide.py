"""One batch of a merge pass, decided: golden rows, merge-log rows and counts, from the batch's stored rows.

Pure computation (no store, no clock): `decide_batch` is what `apply_merge` runs per batch, inline or, on a
large merge, in worker processes (`decide_job`, the work function sent to `engine/workers.py`). The writer
reads each batch's rows (undecoded JSON text), and writes what comes back, in batch order; everything in
between (decoding, precedence, the golden JSON, the log rows' content) happens here. A batch's outcome
depends only on its rows and the pass's `PassContext`, so a merge with 1 worker or N writes the same rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from itam_sync.engine.merge.merger import merge_entity
from itam_sync.engine.merge.rules import Rules, RulesSpec
from itam_sync.engine.workers import cached
from itam_sync.model.canonical import EntityType
from itam_sync.model.jsoncodec import dumps, encode_value, loads
from itam_sync.model.observation import Override, SourceValues
from itam_sync.store.repos.merge_log import CREATE, CREATE_RULE


class MergeInputError(ValueError):
    """A stored row the merge cannot read (names the row and what to do)."""


@dataclass(frozen=True, slots=True)
class PassContext:
    """What every batch of one merge pass shares."""

    rules: RulesSpec | None  # how a worker rebuilds the rules (None: the pass runs inline)
    run_id: int | None
    at: str
    actor: str | None
    dry_run: bool
    examples: int  # dry run: how many example changes to keep per field


@dataclass(slots=True)
class Batch:
    """One batch's stored rows, as read (JSON undecoded): what a worker gets."""

    ids: list[int]  # sorted entity ids
    goldens: list[tuple[Any, ...]]  # (id, entity type, golden JSON, status)
    sources: list[tuple[Any, ...]]  # (entity id, connector, fields JSON, observed_at, record id), live records
    overrides: dict[int, list[Override]]  # active overrides per entity


@dataclass(slots=True)
class Outcome:
    """A batch decided: the rows to write, in order, and the batch's share of MergeStats."""

    updates: list[tuple[str, str, int | None, str, int]] = field(default_factory=list)  # update_goldens rows
    log_rows: list[tuple[Any, ...]] = field(default_factory=list)  # insert_log rows (content, unchained)
    entities: int = 0
    changed_entities: int = 0
    changed_fields: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def decide_job(job: tuple[PassContext, Batch]) -> Outcome:
    """A worker's task: one batch decided with the pass's rules (built once per worker process)."""
    ctx, batch = job
    if ctx.rules is None:
        raise ValueError("a merge batch sent to a worker needs PassContext.rules (the rules' spec)")
    return decide_batch(batch, cached(ctx.rules, ctx.rules.build), ctx)


def decide_batch(batch: Batch, rules: Rules, ctx: PassContext) -> Outcome:
    """Decode a batch's rows and decide every entity in it (see apply_merge for what the rows mean)."""
    goldens, sources = _decode(batch)
    return _decide(batch.ids, goldens, sources, batch.overrides, rules, ctx)


def _decode(batch: Batch) -> tuple[dict[int, tuple[str, dict[str, Any], str]], dict[int, list[SourceValues]]]:
    goldens: dict[int, tuple[str, dict[str, Any], str]] = {}
    for eid, etype, text, status in batch.goldens:
        try:
            goldens[eid] = (etype, loads(text), status)
        except ValueError as exc:
            raise MergeInputError(f"entity {eid}: its stored golden record is not valid JSON ({exc}); restore it "
                                  f"from a backup or reset it to '{{}}' and merge again") from None
    sources: dict[int, list[SourceValues]] = {}
    for eid, conn, text, at, rid in batch.sources:
        try:
            values = loads(text)
        except ValueError as exc:
            raise MergeInputError(f"source record {rid} of connector {conn!r} (entity {eid}): its stored fields are "
                                  f"not valid JSON ({exc}); run `itam-sync run {conn} --full` to restage it") from None
        sources.setdefault(eid, []).append(SourceValues(conn, values, at, rid))
    return goldens, sources


def _decide(ids: list[int], goldens: dict[int, tuple[str, dict[str, Any], str]],
            sources: dict[int, list[SourceValues]], overrides: dict[int, list[Override]], rules: Rules,
            ctx: PassContext) -> Outcome:
    out = Outcome()
    run_id, at, actor, dry_run, examples = ctx.run_id, ctx.at, ctx.actor, ctx.dry_run, ctx.examples
    changed_fields = out.changed_fields
    updates = out.updates
    add_log = out.log_rows.append
    for eid in ids:
        current = goldens.get(eid)
        if current is None or current[2] == "merged":
            continue
        etype, old, old_status = current
        out.entities += 1
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
                ex = out.examples.setdefault(f, [])
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
        out.changed_entities += 1
        # In the old golden's order: a set difference's order follows string hashes, which differ between
        # processes (and so would the log rows and their chain hashes between a merge with 1 worker and N).
        for f in [f for f in old if f not in new]:
            changed_fields[f] += 1
            if not dry_run:
                add_log((run_id, at, etype, eid, "clear", f, encode_value(old[f][0]), None, old[f][1],
                         "no live source has a value", actor))
        if status != old_status and not dry_run:
            add_log((run_id, at, etype, eid, "missing" if status == "missing" else "restored", None,
                     encode_value(old_status), encode_value(status), None,
                     "no live source record" if status == "missing" else "a source sees it again", actor))
        updates.append((dumps(new), status, run_id, at, eid))
    return out
