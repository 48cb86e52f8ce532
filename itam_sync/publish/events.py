"""Change events: every golden-record change and identity event as one JSON document with a stable schema.

The merge log is the change feed: one event per merge-log row, and the event id IS the merge-log id, so a
consumer resumes exactly where it stopped by asking for the events after the last id it processed
(`itam-sync events --since-id N`, or a sink's saved position). An entity's first merge is one `create` row
and so one `entity_created` event: `new` holds every field's value, `fields` each field's change as a
`field_changed` event would give it (field, old, new, source, rule). Events are emitted to the webhook sink and
as JSON lines (`itam-sync events`) for log shippers. The schema (`EVENT_JSON_SCHEMA`, documented in the README)
only grows: new optional keys may appear, existing keys keep their meaning.

Ordering: ids are handed out in commit order because every merge-log writer holds the store's write lock
(SQLite) or the hash-chain lock of the audit module (PostgreSQL) until it commits.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from itam_sync.settings import Settings
from itam_sync.store import Store
from itam_sync.store.repos import Repos
from itam_sync.store.repos.merge_log import CREATE, create_fields

log = logging.getLogger(__name__)

SCHEMA_ID = "itam-sync/change-event/v1"

# merge-log action -> event type. `set` and `clear` are both field changes (`clear`: new is null).
EVENT_TYPES: dict[str, str] = {
    "set": "field_changed",
    "clear": "field_changed",
    "link": "entity_linked",
    "merge": "entity_merged",
    "unlink": "record_split",
    "conflict": "conflict",
    "missing": "missing",
    "restored": "restored",
    CREATE: "entity_created",
    "override": "override_set",  # an operator's value, with the reason in `rule`
    "unoverride": "override_removed",
}
TYPES: tuple[str, ...] = ("field_changed", "entity_linked", "entity_merged", "record_split", "conflict", "missing",
                          "restored", "entity_created", "override_set", "override_removed", "other")

_DEFAULT_KEY_ORDER: dict[str, list[str]] = {
    "asset": ["instance_id", "serial_number", "hardware_uuid", "entra_device_id", "udid", "imei", "mac_addresses"],
    "person": ["employee_id", "email", "email_aliases"],
    "subscription": ["sku_id", "product"],
}

EVENT_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "itam-sync change event",
    "type": "object",
    "required": ["schema", "id", "type", "action", "entity", "field", "old", "new", "source", "rule", "run", "at",
                 "actor"],
    "properties": {
        "schema": {"const": SCHEMA_ID, "description": "Schema id and major version."},
        "id": {"type": "integer", "minimum": 1,
               "description": "The merge-log id: unique, increasing; resume after the last one processed."},
        "type": {"enum": list(TYPES), "description": "What happened (see the README table)."},
        "action": {"type": "string", "description": "The merge-log action: set, clear, link, merge, unlink, "
                                                    "conflict, missing, restored, create."},
        "entity": {
            "type": "object",
            "required": ["type", "id", "key"],
            "properties": {
                "type": {"enum": ["asset", "person", "subscription"]},
                "id": {"type": "integer", "description": "The golden record's entity id."},
                "key": {"type": ["string", "null"],
                        "description": "Its strongest match key, e.g. serial_number:C02FK1ABQ6L4 (null if none)."},
            },
        },
        "field": {"type": ["string", "null"], "description": "The golden field (field_changed only)."},
        "old": {"description": "Value before (any JSON; null when there was none)."},
        "new": {"description": "Value after (any JSON; null when cleared). entity_created: {field: value}."},
        "source": {"type": ["string", "null"], "description": "The connector (or `manual`) that decided."},
        "rule": {"type": ["string", "null"], "description": "The precedence rule or reason that decided."},
        "run": {"type": ["integer", "null"], "description": "The sync or merge run (sync_runs id); null for operator "
                                                            "actions."},
        "at": {"type": "string", "description": "When it was decided, UTC ISO-8601 (YYYY-MM-DDTHH:MM:SSZ)."},
        "actor": {"type": ["string", "null"], "description": "Who: the operator for manual actions, else null."},
        "fields": {
            "type": "array",
            "description": "entity_created only: every field set by the first merge, in order, as field_changed "
                           "events give them.",
            "items": {
                "type": "object",
                "required": ["field", "old", "new", "source", "rule"],
                "properties": {"field": {"type": "string"}, "old": {"type": "null"}, "new": {},
                               "source": {"type": ["string", "null"]}, "rule": {"type": ["string", "null"]}},
            },
        },
    },
    "additionalProperties": True,
}


@dataclass(frozen=True)
class ChangeEvent:
    """One change, as published. `to_dict()` is the documented JSON shape."""

    id: int
    type: str
    action: str
    entity_type: str
    entity_id: int
    entity_key: str | None
    field: str | None
    old: Any
    new: Any
    source: str | None
    rule: str | None
    run: int | None
    at: str
    actor: str | None
    fields: list[dict[str, Any]] | None = None  # entity_created: each field as a field_changed event gives it

    def to_dict(self) -> dict[str, Any]:
        out = {"schema": SCHEMA_ID, "id": self.id, "type": self.type, "action": self.action,
               "entity": {"type": self.entity_type, "id": self.entity_id, "key": self.entity_key},
               "field": self.field, "old": self.old, "new": self.new, "source": self.source, "rule": self.rule,
               "run": self.run, "at": self.at, "actor": self.actor}
        if self.fields is not None:
            out["fields"] = self.fields
        return out

    def to_json(self) -> str:
        """One line of JSON (no newline inside, keys in schema order)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"), default=str)


def key_order(settings: Settings | None) -> dict[str, list[str]]:
    """Per entity type, the match-key kinds from strongest to weakest (the identity config's order)."""
    if settings is None:
        return _DEFAULT_KEY_ORDER
    ident = settings.identity
    return {"asset": list(ident.asset_keys), "person": list(ident.person_keys),
            "subscription": list(ident.subscription_keys)}


def strongest_key(entity_type: str, keys: set[str] | None, order: Mapping[str, Sequence[str]]) -> str | None:
    """The key of the strongest kind in `order` (weak `~` keys last); None without keys."""
    if not keys:
        return None
    rank: dict[str, int] = {}
    for i, kind in enumerate(order.get(entity_type, ())):
        # Keys are stored under the identity module's kind names: MACs as `mac`, aliases as `email`.
        rank.setdefault({"mac_addresses": "mac", "email_aliases": "email"}.get(kind, kind), i)

    def score(key: str) -> tuple[int, int, str]:
        kind = key.split(":", 1)[0]
        return (1 if kind.startswith("~") else 0, rank.get(kind, len(rank)), key)
    return min(keys, key=score)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def events_from_rows(repo: Repos, rows: Sequence[tuple[Any, ...]],
                     order: Mapping[str, Sequence[str]] = _DEFAULT_KEY_ORDER) -> list[ChangeEvent]:
    """Merge-log rows (as `Repos.log_after` returns them) -> events, with each entity's strongest key.

    One event per row, so the event id stays the row's id: a first merge's create row is one entity_created
    event whose `fields` are its per-field changes (read by the store's one create-row reader)."""
    keys = repo.entities.keys_of({r[4] for r in rows}) if rows else {}
    out = []
    for rid, run_id, at, etype, eid, action, field, old, new, source, rule, actor in rows:
        key = strongest_key(etype, keys.get(eid), order)
        if action == CREATE:
            changes = [{"field": f, "old": None, "new": v, "source": s, "rule": r} for f, v, s, r in create_fields(new)]
            out.append(ChangeEvent(rid, EVENT_TYPES[CREATE], action, etype, eid, key, None, None,
                                   {c["field"]: c["new"] for c in changes}, source, rule, run_id, at, actor, changes))
            continue
        out.append(ChangeEvent(rid, EVENT_TYPES.get(action, "other"), action, etype, eid, key, field, _loads(old),
                               _loads(new), source, rule, run_id, at, actor))
    return out


def read_events(repo: Repos, after_id: int, limit: int = 1000, upto_id: int | None = None,
                order: Mapping[str, Sequence[str]] = _DEFAULT_KEY_ORDER) -> list[ChangeEvent]:
    """Up to `limit` events with id > after_id (and <= upto_id), oldest first."""
    return events_from_rows(repo, repo.log.log_after(after_id, limit, upto_id), order)


def iter_events(store: Store, after_id: int = 0, *, batch: int = 1000, upto_id: int | None = None,
                settings: Settings | None = None) -> Iterator[ChangeEvent]:
    """Every event after `after_id` (up to `upto_id`), streamed in id order, one short read per batch."""
    order = key_order(settings)
    last = after_id
    while True:
        with store.begin() as repo:
            events = read_events(repo, last, batch, upto_id, order)
        if not events:
            return
        yield from events
        last = events[-1].id


def follow_events(store: Store, after_id: int = 0, *, interval: float = 2.0, batch: int = 1000,
                  settings: Settings | None = None, sleep: Callable[[float], None] = time.sleep,
                  keep_going: Callable[[], bool] = lambda: True) -> Iterator[ChangeEvent]:
    """Like `iter_events`, then keep polling every `interval` seconds for new events while `keep_going()`."""
    last = after_id
    while True:
        for event in iter_events(store, last, batch=batch, settings=settings):
            last = event.id
            yield event
        if not keep_going():
            return
        sleep(interval)


def resume_file(path: str) -> int | None:
    """Prepare an events file for appending and return the id of its last event (None: empty or absent).

    A torn last line (the writer was killed mid-line) is cut off, so appending continues on a clean line and
    that event is written again. Reads backwards from the end: a large file costs a few small reads.
    """
    try:
        fh = open(path, "r+b")  # noqa: SIM115 - closed below; needs truncate
    except FileNotFoundError:
        return None
    with fh:
        fh.seek(0, 2)
        size = fh.tell()
        pos, tail = size, b""
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            fh.seek(pos)
            tail = fh.read(step) + tail
            if tail.count(b"\n") >= 2 or pos == 0:
                break
        cut = tail.rfind(b"\n")
        if cut + 1 < len(tail):  # bytes after the last newline: a torn line
            fh.truncate(pos + cut + 1)
            tail = tail[:cut + 1]
        for line in reversed(tail.split(b"\n")):
            if line.strip():
                try:
                    return int(json.loads(line)["id"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{path}: the last line is not an itam-sync event; pass --since-id") from exc
    return None
