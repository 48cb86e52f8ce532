"""What the web UI and the REST API show, read from the store: lists with search and filters, explained
golden records, merge history, conflicts and runs. One place, so a page and its API endpoint agree.

Every read is its own short transaction; nothing here writes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from itam_sync.audit.explain import explain
from itam_sync.engine.identity import WEAK_PREFIX
from itam_sync.engine.operations import OperationError, find_entity
from itam_sync.http_guard import MAX_DB_INT
from itam_sync.model.canonical import (
    ASSET_KINDS,
    FIELDS,
    LIFECYCLE_STATES,
    PERSON_STATUSES,
    EntityType,
)
from itam_sync.model.identifiers import normalize_mac
from itam_sync.settings import Settings
from itam_sync.store import Store
from itam_sync.web.models import (
    AsOfDetail,
    AsOfFieldOut,
    Competitor,
    ConflictOut,
    ConflictPage,
    EntityDetail,
    EntityPage,
    EntitySummary,
    FieldOut,
    LogPage,
    LogRow,
    Overview,
    RecordOut,
    RunOut,
    RunPage,
    SourceRef,
    VerifyOut,
)

log = logging.getLogger(__name__)

# URL segment -> entity type, and back.
COLLECTIONS: dict[str, EntityType] = {"assets": EntityType.ASSET, "people": EntityType.PERSON,
                                      "subscriptions": EntityType.SUBSCRIPTION}
COLLECTION_OF: dict[EntityType, str] = {v: k for k, v in COLLECTIONS.items()}
# The golden field the "status" filter reads, and its choices.
STATUS_FIELD: dict[EntityType, tuple[str, tuple[str, ...]] | None] = {
    EntityType.ASSET: ("lifecycle_state", LIFECYCLE_STATES),
    EntityType.PERSON: ("status", PERSON_STATUSES),
    EntityType.SUBSCRIPTION: ("billing_period", ("monthly", "annual", "other")),
}
KIND_CHOICES: dict[EntityType, tuple[str, ...]] = {EntityType.ASSET: ASSET_KINDS}
# Fields whose value names a person: linked to that person's page.
PERSON_REF_FIELDS = frozenset({"assigned_to", "manager", "owner"})
COUNT_CAP = 10_000


class NotFound(Exception):
    """No such entity, run or report; the message says what was asked for."""


class BadInput(Exception):
    """A parameter that cannot be used (a malformed date or anchor); the message says which and why."""


@dataclass
class ListQuery:
    """Search and filters of an entity list, and where the page starts."""

    q: str = ""
    kind: str | None = None
    status: str | None = None
    source: str | None = None
    presence: str | None = None  # active | missing
    conflict: bool | None = None
    after: int | None = None
    before: int | None = None
    limit: int = 50

    def filters(self) -> dict[str, Any]:
        """The filters as URL parameters (no paging), for links that keep them."""
        out: dict[str, Any] = {}
        for k in ("q", "kind", "status", "source", "presence"):
            v = getattr(self, k)
            if v:
                out[k] = v
        if self.conflict is not None:
            out["conflict"] = "yes" if self.conflict else "no"
        return out


def search_terms(etype: EntityType, q: str) -> dict[str, Any] | None:
    """What a search box text matches, per entity type (all of these are index lookups):

    assets: id, the start of the serial number, host name or assigned-to e-mail; an instance id, MAC or IMEI;
    people: id, the start of the e-mail or employee id, or any part of the name;
    subscriptions: id, SKU id, the start of vendor, or any part of the product name."""
    q = q.strip()
    if not q:
        return None
    digits = q.isascii() and q.isdigit()
    terms: dict[str, Any] = {"ids": [int(q)] if digits and len(q) < 18 else []}
    if etype is EntityType.ASSET:
        keys = [f"serial_number:{''.join(q.split()).upper()}", f"instance_id:{q}", f"{WEAK_PREFIX}hostname:{q.lower()}"]
        mac = normalize_mac(q)
        if mac:
            keys.append(f"mac:{mac}")
        if digits and len(q) >= 8:
            keys.append(f"imei:{q}")
        terms["key_prefixes"] = keys
        terms["field_prefixes"] = [("hostname", q.lower()), ("assigned_to", q.lower())]
    elif etype is EntityType.PERSON:
        terms["key_prefixes"] = [f"email:{q.lower()}", f"employee_id:{q}"]
        terms["field_contains"] = [("display_name", q.lower())]
    else:
        terms["key_prefixes"] = [f"sku_id:{q}", f"product:{q.lower()}"]
        terms["field_contains"] = [("product", q.lower())]
    return terms


def _summary(eid: int, etype: str, golden: dict[str, Any], status: str, sources: list[tuple[str, str, str, bool]],
             conflicted: bool) -> EntitySummary:
    return EntitySummary(
        id=eid, type=etype, status=status,
        fields={f: v[0] for f, v in golden.items()},
        field_sources={f: v[1] for f, v in golden.items()},
        observed_at={f: v[2] if len(v) > 2 else None for f, v in golden.items()},
        sources=[SourceRef(connector=c, stream=s, source_key=k, missing=m) for c, s, k, m in sources],
        in_conflict=conflicted)


def _log_row(d: dict[str, Any]) -> LogRow:
    return LogRow(**d)


def _conflict(d: dict[str, Any]) -> ConflictOut:
    rec = f"{d['connector']}/{d['stream']}/{d['source_key']}" if d.get("connector") else None
    return ConflictOut(id=d["id"], run_id=d["run_id"], entity_type=d["entity_type"], key=d["key"],
                       record_id=d["record_id"], record=rec, entity_id=d["entity_id"],
                       other_entity_id=d["other_entity_id"], reason=d["reason"], status=d["status"],
                       created_at=d["created_at"])


# An entity reference from a URL: an id, a match key or a bare identifier; no control characters.
def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


_REF = re.compile(r"^[^\x00-\x1f\x7f]{1,600}$")


class WebService:
    """Read-only queries behind the UI and the API, over one opened store."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    # -- lists ----------------------------------------------------------------------------------
    def sources(self) -> list[str]:
        """Source names for the filter: the configured connectors (and `manual`)."""
        return [c.name for c in self.settings.connectors]

    def list_entities(self, etype: EntityType, query: ListQuery, count: bool = True) -> EntityPage:
        """One page of golden records matching the search and filters."""
        equals: dict[str, str] = {}
        if query.kind and etype in KIND_CHOICES:
            equals["kind"] = query.kind
        spec = STATUS_FIELD.get(etype)
        if query.status and spec:
            equals[spec[0]] = query.status
        kwargs: dict[str, Any] = dict(search=search_terms(etype, query.q), equals=equals,
                                      source=query.source or None, presence=query.presence or None,
                                      conflict=query.conflict)
        limit = query.limit
        with self.store.begin() as repo:
            rows = repo.web.web_entity_page(etype.value, after=query.after, before=query.before, limit=limit, **kwargs)
            has_more = len(rows) > limit
            rows = rows[:limit]
            if query.before is not None:
                rows.reverse()
            ids = [r[0] for r in rows]
            sources = repo.web.web_sources_of(ids)
            conflicted = repo.web.web_conflicted(ids)
            total = repo.web.web_entity_count(etype.value, cap=COUNT_CAP, **kwargs) if count else None
        items = [_summary(eid, etype.value, g, s, sources.get(eid, []), eid in conflicted) for eid, g, s in rows]
        if query.before is not None:
            next_after = ids[-1] if ids else None
            prev_before = ids[0] if ids and has_more else None
        else:
            next_after = ids[-1] if ids and has_more else None
            prev_before = ids[0] if ids and query.after is not None else None
        return EntityPage(items=items, limit=limit, next_after=next_after, prev_before=prev_before,
                          total=None if total is None else min(total, COUNT_CAP),
                          total_is_lower_bound=total is not None and total > COUNT_CAP)

    # -- one entity -----------------------------------------------------------------------------
    def resolve(self, etype: EntityType | None, ref: str) -> tuple[int, str]:
        """An entity id and type from an id, a match key or a bare serial / e-mail / employee id."""
        if not _REF.match(ref):
            raise NotFound(f"no entity matches {ref!r}")
        if ref.isdigit() and not (ref.isascii() and int(ref) <= MAX_DB_INT):  # an id no database row can have
            raise NotFound(f"no entity with id {ref}")
        with self.store.begin() as repo:
            try:
                eid = find_entity(repo, ref, etype.value if etype else None)
            except OperationError as exc:
                raise NotFound(str(exc)) from None
            row = repo.web.web_entity(eid)
        if row is None:
            raise NotFound(f"no entity with id {eid}")
        return eid, row["entity_type"]

    def entity(self, etype: EntityType, ref: str, history_before: int | None = None,
               history_limit: int = 50) -> EntityDetail:
        """A golden record with every field explained, its sources, conflicts and merge history."""
        eid, actual = self.resolve(etype, ref)
        if actual != etype.value:
            raise NotFound(f"entity {eid} is {_a(actual)}, not {_a(etype.value)}")
        ex = explain(self.store, self.settings, str(eid), history=0)
        with self.store.begin() as repo:
            row = repo.web.web_entity(eid)
            records = repo.web.web_records(eid)
            conflicts = repo.web.web_conflicts(status="open", entity_id=eid, limit=100)[:100]
            hist = repo.web.web_history(eid, history_before, history_limit)
            links = self._person_links(repo, [f for f in ex.fields if f.field in PERSON_REF_FIELDS])
            held: list[EntitySummary] = []
            if etype is EntityType.PERSON and row is not None:
                held = self._assets_held(repo, row["golden"])
        assert row is not None
        specs = FIELDS[etype]
        order = {name: i for i, name in enumerate(specs)}
        fields = [FieldOut(field=f.field, description=specs[f.field].description if f.field in specs else "",
                           value=f.value, source=f.source, observed_at=f.observed_at, age=f.age, rule=f.rule,
                           rule_detail=f.rule_detail, competitors=[Competitor(**c) for c in f.competitors],
                           link=links.get(f.field), override=f.override)
                  for f in sorted(ex.fields, key=lambda f: (order.get(f.field, len(order)), f.field))]
        return EntityDetail(
            id=eid, type=etype.value, status=row["status"], merged_into=row["merged_into"],
            created_at=row["created_at"], updated_at=row["updated_at"], fields=fields,
            records=[RecordOut(**r) for r in records], conflicts=[_conflict(c) for c in conflicts],
            history=self._log_page(hist, history_limit), assets_held=held)

    def history(self, etype: EntityType, ref: str, before: int | None, limit: int) -> LogPage:
        """A page of an entity's merge log, newest first."""
        eid, actual = self.resolve(etype, ref)
        if actual != etype.value:
            raise NotFound(f"entity {eid} is {_a(actual)}, not {_a(etype.value)}")
        with self.store.begin() as repo:
            return self._log_page(repo.web.web_history(eid, before, limit), limit)

    @staticmethod
    def _log_page(rows: list[dict[str, Any]], limit: int) -> LogPage:
        shown = limit
        while 0 < shown < len(rows) and rows[shown]["id"] == rows[shown - 1]["id"]:
            shown += 1  # a first merge's fields share one log id: a page never splits them
        more = len(rows) > shown
        rows = rows[:shown]
        return LogPage(items=[_log_row(r) for r in rows], limit=limit,
                       next_before=rows[-1]["id"] if rows and more else None)

    @staticmethod
    def _person_links(repo: Any, fields: list[Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for f in fields:
            if not isinstance(f.value, str) or not f.value:
                continue
            ref = f.value.strip()
            key = f"email:{ref.lower()}" if "@" in ref else f"employee_id:{ref}"
            pid = repo.entities.entity_by_key(EntityType.PERSON.value, key)
            if pid is not None:
                out[f.field] = f"/people/{pid}"
        return out

    @staticmethod
    def _assets_held(repo: Any, golden: dict[str, Any]) -> list[EntitySummary]:
        refs: list[str] = []
        for f in ("email", "email_aliases", "employee_id"):
            v = golden.get(f, [None])[0]
            for item in v if isinstance(v, list) else [v]:
                if isinstance(item, str) and item:
                    refs += [item, item.lower()] if "@" in item else [item]
        rows = repo.web.web_assets_held(sorted(set(refs)))
        sources = repo.web.web_sources_of([r[0] for r in rows])
        conflicted = repo.web.web_conflicted([r[0] for r in rows])
        return [_summary(eid, "asset", g, s, sources.get(eid, []), eid in conflicted) for eid, g, s in rows]

    def as_of(self, etype: EntityType, ref: str, at: str) -> AsOfDetail:
        """The record as it stood at `at` (a date means the end of that day), rebuilt from the merge log."""
        from itam_sync.audit.chain import parse_time
        from itam_sync.audit.timetravel import explain_as_of

        eid, actual = self.resolve(etype, ref)
        if actual != etype.value:
            raise NotFound(f"entity {eid} is {_a(actual)}, not {_a(etype.value)}")
        try:
            when = parse_time(at, end_of_day=True)
            ex = explain_as_of(self.store, str(eid), when, history=200)
        except OperationError as exc:
            raise BadInput(str(exc)) from None
        return AsOfDetail(
            id=ex.entity_id, type=ex.entity_type, as_of=ex.as_of, status=ex.status, merged_into=ex.merged_into,
            merged_from=ex.merged_from, merged_later=ex.merged_later, records=ex.records,
            fields=[AsOfFieldOut(field=f.field, value=f.value, source=f.source, rule=f.rule, logged_at=f.logged_at,
                                 run_id=f.run_id, log_id=f.log_id, actor=f.actor) for f in ex.fields],
            history=[LogRow(**h) for h in reversed(ex.history)], note=ex.note)

    def verify(self, anchor: str | None = None) -> VerifyOut:
        """Walk the merge log's hash chain (every row: seconds on a large store)."""
        import time

        from itam_sync.audit.chain import parse_anchor, verify_store

        try:
            parsed = parse_anchor(anchor) if anchor else None
        except OperationError as exc:
            raise BadInput(str(exc)) from None
        t0 = time.perf_counter()
        res = verify_store(self.store, anchor=parsed)
        took = time.perf_counter() - t0
        log.info("merge log verified: ok=%s, %d rows in %.1fs", res.ok, res.checked, took)
        p = res.problem
        return VerifyOut(ok=res.ok, checked=res.checked, legacy=res.legacy, first_id=res.first_id,
                         head_id=res.head_id, head_hash=res.head_hash, anchor=res.anchor,
                         broken_row=p.row_id if p else None, break_kind=p.kind if p else None,
                         message=p.message if p else None, seconds=round(took, 3))

    # -- conflicts and runs ---------------------------------------------------------------------
    def conflicts(self, status: str | None, after: int | None, limit: int) -> ConflictPage:
        with self.store.begin() as repo:
            rows = repo.web.web_conflicts(status=status, after=after, limit=limit)
        more = len(rows) > limit
        rows = rows[:limit]
        return ConflictPage(items=[_conflict(r) for r in rows], limit=limit,
                            next_after=rows[-1]["id"] if rows and more else None)

    def runs(self, before: int | None, limit: int, connector: str | None = None,
             status: str | None = None) -> RunPage:
        with self.store.begin() as repo:
            rows = repo.web.web_runs(before=before, limit=limit, connector=connector, status=status)
        more = len(rows) > limit
        rows = rows[:limit]
        return RunPage(items=[RunOut(**r) for r in rows], limit=limit,
                       next_before=rows[-1]["id"] if rows and more else None)

    def run(self, run_id: int) -> RunOut:
        with self.store.begin() as repo:
            rows = repo.web.web_runs(run_id=run_id, limit=1)
        if not rows:
            raise NotFound(f"no sync run {run_id}")
        return RunOut(**rows[0])

    def overview(self) -> Overview:
        with self.store.begin() as repo:
            o = repo.web.web_overview()
            latest = repo.web.web_runs(limit=10)[:10]
        ent = o["entities"]
        return Overview(
            assets=ent.get("asset:active", 0), assets_missing=ent.get("asset:missing", 0),
            people=ent.get("person:active", 0), people_missing=ent.get("person:missing", 0),
            subscriptions=ent.get("subscription:active", 0),
            subscriptions_missing=ent.get("subscription:missing", 0),
            open_conflicts=o["open_conflicts"], quarantined=o["quarantined"],
            merge_log_rows=o["merge_log_last_id"], latest_runs=[RunOut(**r) for r in latest])
