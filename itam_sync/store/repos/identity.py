"""Identity state: which entities hold each key, ambiguous identifiers, operator decisions, suggestions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from itam_sync.store.repos.base import PG_CHUNK, RepoBase

# Identity reads a batch's keys and entities at once: larger IN lists than the default chunk (SQLite allows
# 32766 variables, PostgreSQL 65535) mean fewer round trips per batch.
BIG = 4000


class IdentityRepo(RepoBase):
    """Identity state: which entities hold each key, ambiguous identifiers, operator decisions, suggestions."""

    def _big_in(self, sql: str, items: Iterable[Any], prefix: tuple[Any, ...] = (), suffix: tuple[Any, ...] = ()
                ) -> Iterator[tuple[Any, ...]]:
        """Rows of `sql` (one `{in}` placeholder) over chunks of `items`, as plain tuples straight from the
        driver's cursor: identity reads a whole batch's keys and records, and SQLAlchemy's row objects would
        cost more than the query."""
        values = list(items)
        if not values:
            return
        cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if self.pg:  # one `= ANY(array)` parameter: psycopg would re-parse 4,000 placeholders per query
                sql = self._sql(sql.replace("IN ({in})", "= ANY({in})").format(**{"in": "?"}))
                for i in range(0, len(values), PG_CHUNK):
                    cursor.execute(sql, (*prefix, values[i:i + PG_CHUNK], *suffix))
                    yield from cursor.fetchall()
                return
            for i in range(0, len(values), BIG):
                chunk = values[i:i + BIG]
                cursor.execute(self._sql(sql.format(**{"in": ",".join("?" * len(chunk))})), (*prefix, *chunk, *suffix))
                yield from cursor.fetchall()
        finally:
            cursor.close()

    # -- key -> entities -------------------------------------------------------------------------------
    def key_entities(self, entity_type: str, keys: Iterable[str]) -> dict[str, set[int]]:
        """Every entity holding records with each key (keys nobody holds are left out)."""
        out: dict[str, set[int]] = {}
        for k, e in self._big_in("SELECT key, entity_id FROM entity_keys WHERE entity_type=? AND key IN ({in})",
                                 keys, (entity_type,)):
            have = out.get(k)
            if have is None:
                out[k] = {e}
            else:
                have.add(e)
        return out

    def has_keys(self, entity_type: str) -> bool:
        """Whether any entity of this type holds a key (one probe of the primary key)."""
        row = self._exec("SELECT 1 FROM entity_keys WHERE entity_type=? LIMIT 1", (entity_type,)).fetchone()
        return row is not None

    def keys_with_prefix(self, entity_type: str, prefix: str) -> list[str]:
        """Keys starting with `prefix` (a range scan of the primary key, not a LIKE)."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return [r[0] for r in self._exec("SELECT DISTINCT key FROM entity_keys WHERE entity_type=? AND key>=? AND "
                                         "key<?", (entity_type, prefix, upper)).fetchall()]

    def keys_after(self, entity_type: str, after: str, limit: int) -> list[str]:
        """Distinct keys of a type after `after`, in order (a re-check walks them in chunks)."""
        return [r[0] for r in self._exec("SELECT DISTINCT key FROM entity_keys WHERE entity_type=? AND key>? "
                                         "ORDER BY key LIMIT ?", (entity_type, after, limit)).fetchall()]

    def entity_members(self, entity_ids: Iterable[int]) -> list[tuple[Any, ...]]:
        """Every record of these entities: (id, entity_id, "connector/stream", source_key, match_keys JSON,
        missing)."""
        return list(self._big_in("SELECT id, entity_id, connector || '/' || stream, source_key, match_keys, missing "
                                 "FROM source_records WHERE entity_id IN ({in})", entity_ids))

    def entities_with_source(self, entity_ids: Iterable[int], connector: str, stream: str) -> set[int]:
        """Which of these entities hold a record of this connector stream."""
        # SQLite (no planner statistics) would pick the (connector, stream, source_key) index and scan every
        # record of the stream for each chunk: a first load of a source grew quadratically (250k devices: 4-6 s
        # per source). A unary `+` keeps those columns off the index choice, so it probes by entity id.
        cond = "connector=? AND stream=?" if self.pg else "+connector=? AND +stream=?"
        return {r[0] for r in self._big_in("SELECT DISTINCT entity_id FROM source_records WHERE entity_id IN ({in}) "
                                           f"AND {cond}", entity_ids, suffix=(connector, stream))}

    def pinned_entities(self) -> set[int]:
        """Entities holding a record an operator linked or unlinked."""
        return {r[0] for r in self._exec("SELECT DISTINCT r.entity_id FROM manual_links m JOIN source_records r ON "
                                         "r.id=m.record_id WHERE r.entity_id IS NOT NULL").fetchall()}

    def entity_keys_with(self, entity_ids: Iterable[int], prefixes: tuple[str, ...]) -> list[tuple[int, str]]:
        """(entity_id, key) of these entities' keys starting with one of `prefixes` ("serial_number:", ...)."""
        if not prefixes:
            return []
        ranges = " OR ".join("(key >= ? AND key < ?)" for _ in prefixes)
        bounds = tuple(b for p in prefixes for b in (p, p[:-1] + chr(ord(p[-1]) + 1)))
        return list(self._big_in(f"SELECT entity_id, key FROM entity_keys WHERE entity_id IN ({{in}}) AND ({ranges})",
                                 entity_ids, suffix=bounds))

    def explain_records(self, entity_id: int) -> list[tuple[Any, ...]]:
        """Every record of an entity for `explain`: (id, connector, stream, source_key, match_keys, fields, raw,
        missing, observed_at, missing_since), in reference order."""
        return [tuple(r) for r in self._exec(
            "SELECT id, connector, stream, source_key, match_keys, fields, raw, missing, observed_at, missing_since "
            "FROM source_records WHERE entity_id=? ORDER BY connector, stream, source_key", (entity_id,)).fetchall()]

    def set_key_pairs(self, entity_type: str, add: list[tuple[str, int]], remove: list[tuple[str, int]]) -> None:
        """Insert and delete (key, entity) rows of entity_keys."""
        if self.pg:  # a first load adds every key here: COPY through a temp table
            self.db.copy_delete("entity_keys", ("entity_type", "key", "entity_id"),
                                [(entity_type, k, e) for k, e in remove])
            self.db.copy_insert_ignore("entity_keys", ("entity_type", "key", "entity_id"),
                                       [(entity_type, k, e) for k, e in add], "")
            return
        self._many("DELETE FROM entity_keys WHERE entity_type=? AND key=? AND entity_id=?",
                   [(entity_type, k, e) for k, e in remove])
        self._many("INSERT INTO entity_keys (entity_type, key, entity_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                   [(entity_type, k, e) for k, e in add])

    def set_entities_of(self, rows: list[tuple[int, int]]) -> None:
        """rows: (entity_id, record_id)."""
        if self.pg:
            self.db.copy_update("source_records", ("entity_id", "id"), rows)
            return
        self._many("UPDATE source_records SET entity_id=? WHERE id=?", rows)

    def retire_entity(self, from_id: int, into_id: int, run_id: int | None, at: str) -> None:
        """An entity all of whose records joined another: merged into it, with its overrides and pins."""
        self._exec("UPDATE overrides SET entity_id=? WHERE entity_id=?", (into_id, from_id))
        self._exec("UPDATE manual_links SET entity_id=? WHERE entity_id=?", (into_id, from_id))
        self._exec("UPDATE entities SET status='merged', merged_into=?, golden='{}', updated_run=?, updated_at=? "
                   "WHERE id=?", (into_id, run_id, at, from_id))

    def revive_entities(self, entity_ids: Iterable[int], run_id: int | None, at: str) -> None:
        """Entities that hold records again after having been merged away (a split handing an id back)."""
        self._many("UPDATE entities SET status='active', merged_into=NULL, updated_run=?, updated_at=? WHERE id=? "
                   "AND status='merged'", [(run_id, at, e) for e in entity_ids])

    def entity_status(self, entity_ids: Iterable[int]) -> dict[int, str]:
        return {e: s for e, s in self._big_in("SELECT id, status FROM entities WHERE id IN ({in})", entity_ids)}

    # -- ambiguous identifiers -----------------------------------------------------------------------------
    def ambiguous(self, entity_type: str) -> dict[str, tuple[str, str, int, int]]:
        """key -> (origin, reason, records, entities) of every ambiguous value of a type (a small table)."""
        return {k: (o, r, n, e) for k, o, r, n, e in self._exec(
            "SELECT key, origin, reason, records, entities FROM ambiguous_identifiers WHERE entity_type=?",
            (entity_type,)).fetchall()}

    def upsert_ambiguous(self, rows: list[tuple[Any, ...]]) -> None:
        """rows: (entity_type, key, origin, reason, records, entities, since, run_id)."""
        self._many("INSERT INTO ambiguous_identifiers (entity_type, key, origin, reason, records, entities, since, "
                   "updated_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (entity_type, key) DO UPDATE "
                   "SET origin=excluded.origin, reason=excluded.reason, records=excluded.records, "
                   "entities=excluded.entities, updated_at=excluded.updated_at, run_id=excluded.run_id",
                   [(t, k, o, r, n, e, s, s, run) for t, k, o, r, n, e, s, run in rows])

    def drop_ambiguous(self, entity_type: str, keys: Iterable[str]) -> None:
        self._many("DELETE FROM ambiguous_identifiers WHERE entity_type=? AND key=?", [(entity_type, k) for k in keys])

    def list_ambiguous(self, entity_type: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT entity_type, key, origin, reason, records, entities, since, updated_at FROM "
               "ambiguous_identifiers")
        params: tuple[Any, ...] = ()
        if entity_type:
            sql += " WHERE entity_type=?"
            params = (entity_type,)
        cols = ("entity_type", "key", "origin", "reason", "records", "entities", "since", "updated_at")
        return [dict(zip(cols, r, strict=True)) for r in self._exec(sql + " ORDER BY entity_type, key", params)]

    # -- operator decisions ---------------------------------------------------------------------------------
    def decisions(self, entity_type: str | None = None) -> list[tuple[str, str, str, str, str | None, str]]:
        """(entity_type, key, action, reason, actor, at) of every block/allow."""
        sql = "SELECT entity_type, key, action, reason, actor, at FROM identifier_decisions"
        params: tuple[Any, ...] = ()
        if entity_type:
            sql += " WHERE entity_type=?"
            params = (entity_type,)
        return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in self._exec(sql + " ORDER BY entity_type, key", params)]

    def decide(self, entity_type: str, key: str, action: str, reason: str, actor: str | None, at: str) -> None:
        self._exec("INSERT INTO identifier_decisions (entity_type, key, action, reason, actor, at) VALUES "
                   "(?, ?, ?, ?, ?, ?) ON CONFLICT (entity_type, key) DO UPDATE SET action=excluded.action, "
                   "reason=excluded.reason, actor=excluded.actor, at=excluded.at",
                   (entity_type, key, action, reason, actor, at))

    # -- conflicts of identity (the conflicts table belongs to ConflictsRepo; these are identity's views) -------
    def open_conflict_keys(self, entity_type: str) -> set[str]:
        return {r[0] for r in self._exec("SELECT DISTINCT key FROM conflicts WHERE status='open' AND entity_type=?",
                                         (entity_type,)).fetchall()}

    def open_conflicts_on(self, entity_type: str, keys: Iterable[str]) -> set[tuple[int, str, int]]:
        """(record_id, key, other_entity_id) of the open conflicts on these keys."""
        return {(r, k, o) for r, k, o in self._big_in(
            "SELECT record_id, key, other_entity_id FROM conflicts WHERE status='open' AND entity_type=? AND key IN "
            "({in})", keys, (entity_type,))}

    def resolve_conflicts_on(self, entity_type: str, keys: Iterable[str]) -> None:
        self._many("UPDATE conflicts SET status='resolved' WHERE status='open' AND entity_type=? AND key=?",
                   [(entity_type, k) for k in keys])

    def conflicts_of(self, record_ids: Iterable[int]) -> list[tuple[int, str, int | None, int, str]]:
        """Open conflicts of records: (record_id, key, entity_id, other_entity_id, reason)."""
        return [(r[0], r[1], r[2], r[3], r[4]) for r in self._big_in(
            "SELECT record_id, key, entity_id, other_entity_id, reason FROM conflicts WHERE status='open' AND "
            "record_id IN ({in}) ORDER BY id", record_ids)]

    # -- suggestions -------------------------------------------------------------------------------------
    def suggestions(self, status: str | None = "open", entity_type: str | None = None) -> list[dict[str, Any]]:
        where, params = [], []
        for cond, val in (("status=?", status), ("entity_type=?", entity_type)):
            if val is not None:
                where.append(cond)
                params.append(val)
        sql = ("SELECT id, entity_type, entity_a, entity_b, score, evidence, status, reason, actor, created_at, "
               "decided_at FROM identity_suggestions")
        if where:
            sql += " WHERE " + " AND ".join(where)
        cols = ("id", "entity_type", "entity_a", "entity_b", "score", "evidence", "status", "reason", "actor",
                "created_at", "decided_at")
        out = []
        for r in self._exec(sql + " ORDER BY score DESC, id", tuple(params)).fetchall():
            d = dict(zip(cols, r, strict=True))
            d["evidence"] = json.loads(d["evidence"])
            out.append(d)
        return out

    def suggestion(self, suggestion_id: int) -> dict[str, Any] | None:
        rows = [s for s in self.suggestions(None) if s["id"] == suggestion_id]
        return rows[0] if rows else None

    def entity_connectors(self, entity_type: str) -> dict[int, set[str]]:
        """entity -> the connectors whose live records feed it."""
        out: dict[int, set[str]] = {}
        for e, c in self._exec("SELECT DISTINCT entity_id, connector FROM source_records WHERE entity_type=? AND "
                               "missing=? AND entity_id IS NOT NULL", (entity_type, False)).fetchall():
            out.setdefault(e, set()).add(c)
        return out

    def save_suggestions(self, rows: list[tuple[str, int, int, float, list[str]]], at: str) -> None:
        """Insert new open suggestions (entity_type, a, b, score, evidence); refresh open ones' evidence; an open
        one no longer found becomes `gone`. Decided ones (accepted, dismissed) are never touched."""
        current = {(t, a, b) for t, a, b, _, _ in rows}
        for t, a, b in [(r[0], r[1], r[2]) for r in self._exec(
                "SELECT entity_type, entity_a, entity_b FROM identity_suggestions WHERE status IN ('open', 'gone')"
                ).fetchall()]:
            if (t, a, b) not in current:
                self._exec("UPDATE identity_suggestions SET status='gone' WHERE entity_type=? AND entity_a=? AND "
                           "entity_b=? AND status='open'", (t, a, b))
        self._many("INSERT INTO identity_suggestions (entity_type, entity_a, entity_b, score, evidence, status, "
                   "created_at) VALUES (?, ?, ?, ?, ?, 'open', ?) ON CONFLICT (entity_type, entity_a, entity_b) DO "
                   "UPDATE SET score=excluded.score, evidence=excluded.evidence, status=CASE WHEN "
                   "identity_suggestions.status IN ('open', 'gone') THEN 'open' ELSE identity_suggestions.status END",
                   [(t, a, b, s, json.dumps(ev), at) for t, a, b, s, ev in rows])

    def decide_suggestion(self, suggestion_id: int, status: str, reason: str, actor: str | None, at: str) -> None:
        self._exec("UPDATE identity_suggestions SET status=?, reason=?, actor=?, decided_at=? WHERE id=?",
                   (status, reason, actor, at, suggestion_id))
