"""Read-only, keyset-paged queries of the web UI and REST API."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from itam_sync.model.canonical import EntityType
from itam_sync.store.repos.base import RepoBase
from itam_sync.store.repos.merge_log import as_dicts, expand_rows


class WebQueries(RepoBase):
    """Read-only, keyset-paged queries of the web UI and REST API."""

    # Read-only queries of the web UI and REST API (itam_sync/web). Lists page by id (keyset), so page 2,000
    # costs what page 1 costs; searches use entity_keys and the golden-field indexes of migration 0004.
    def _gx(self, field: str) -> str:
        """SQL for the golden value of canonical field `field` (a field name, never user text).

        Written exactly as the expression indexes of migration 0004 so that they serve these queries."""
        if not field.isidentifier():
            raise ValueError(f"not a field name: {field!r}")
        return f"(golden::jsonb -> '{field}' ->> 0)" if self.pg else f"json_extract(golden, '$.{field}[0]')"

    def _prefix(self, expr: str, prefix: str) -> tuple[str, list[Any]]:
        """`expr` starts with `prefix`, in a form the dialect's index serves: a range on SQLite (binary
        collation), LIKE on PostgreSQL (text_pattern_ops indexes, right in any locale)."""
        if self.pg:
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return f"{expr} LIKE ?", [escaped + "%"]
        return f"{expr} >= ? AND {expr} < ?", [prefix, prefix + "\U0010ffff"]

    def _web_where(self, entity_type: str, search: dict[str, Any] | None, equals: dict[str, str],
                   source: str | None, presence: str | None, conflict: bool | None) -> tuple[str, list[Any]]:
        """WHERE clause over `entities e` for the list filters; `search` terms are OR'ed, the rest AND'ed.

        search: {"ids": [int], "key_prefixes": [str], "field_prefixes": [(field, prefix)],
                 "field_contains": [(field, lower-case text)]}  (contains scans: keep it to small sets)."""
        # The type is written as a literal (one of three known names): SQLite uses a partial index only when
        # the query's WHERE names the index's entity type itself, not through a parameter.
        etype = EntityType(entity_type).value
        where = [f"e.entity_type='{etype}'", "e.status<>'merged'"]
        params: list[Any] = []
        if presence:
            where.append("e.status=?")
            params.append(presence)
        for f, v in equals.items():
            where.append(f"{self._gx(f)}=?")
            params.append(v)
        if source:
            where.append("EXISTS (SELECT 1 FROM source_records r WHERE r.entity_id=e.id AND r.connector=?)")
            params.append(source)
        if conflict is not None:
            # Open conflicts are few; the entities on either side of one are "in conflict".
            sub = ("SELECT entity_id FROM conflicts WHERE status='open' AND entity_id IS NOT NULL "
                   "UNION SELECT other_entity_id FROM conflicts WHERE status='open'")
            where.append(f"e.id {'IN' if conflict else 'NOT IN'} ({sub})")
        if search is not None:
            subs: list[str] = []
            sub_params: list[Any] = []
            for kp in search.get("key_prefixes", []):
                cond, p = self._prefix("key", kp)
                subs.append(f"SELECT entity_id FROM entity_keys WHERE entity_type='{etype}' AND {cond}")
                sub_params += p
            for f, fp in search.get("field_prefixes", []):
                cond, p = self._prefix(self._gx(f), fp)
                subs.append(f"SELECT id FROM entities WHERE entity_type='{etype}' AND {cond}")
                sub_params += p
            ors = [f"e.id IN ({' UNION '.join(subs)})"] if subs else []
            ids = list(search.get("ids", []))
            if ids:
                ors.append(f"e.id IN ({','.join('?' * len(ids))})")
                sub_params += ids
            for f, text in search.get("field_contains", []):
                escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                ors.append(f"lower({self._gx(f)}) LIKE ? ESCAPE '\\'")
                sub_params.append(f"%{escaped}%")
            where.append("(" + " OR ".join(ors) + ")" if ors else "1=0")
            params += sub_params
        return " AND ".join(where), params

    def web_entity_page(self, entity_type: str, *, search: dict[str, Any] | None = None,
                        equals: dict[str, str] | None = None, source: str | None = None,
                        presence: str | None = None, conflict: bool | None = None, after: int | None = None,
                        before: int | None = None, limit: int = 50) -> list[tuple[int, dict[str, Any], str]]:
        """One page of golden records in id order: ids > `after`, or the page ending just before `before`.

        Returns up to `limit` + 1 rows (the extra one says another page exists), always in ascending id order
        for `after` and descending for `before` (the caller reverses)."""
        where, params = self._web_where(entity_type, search, equals or {}, source, presence, conflict)
        order = "ASC"
        if before is not None:
            where += " AND e.id<?"
            params.append(before)
            order = "DESC"
        elif after is not None:
            where += " AND e.id>?"
            params.append(after)
        rows = self._exec(f"SELECT e.id, e.golden, e.status FROM entities e WHERE {where} ORDER BY e.id {order} "
                          "LIMIT ?", (*params, limit + 1)).fetchall()
        return [(r[0], json.loads(r[1]), r[2]) for r in rows]

    def web_entity_count(self, entity_type: str, *, search: dict[str, Any] | None = None,
                         equals: dict[str, str] | None = None, source: str | None = None,
                         presence: str | None = None, conflict: bool | None = None, cap: int = 10_000) -> int:
        """How many records match, counting at most `cap` + 1 (a filter over JSON fields scans)."""
        where, params = self._web_where(entity_type, search, equals or {}, source, presence, conflict)
        return int(self._exec(f"SELECT count(*) FROM (SELECT 1 FROM entities e WHERE {where} LIMIT ?) m",
                              (*params, cap + 1)).scalar() or 0)

    def web_entity(self, entity_id: int) -> dict[str, Any] | None:
        """The entity row: type, status, merged_into, golden, created/updated run and time."""
        r = self._exec("SELECT id, entity_type, status, merged_into, golden, created_run, updated_run, created_at, "
                       "updated_at FROM entities WHERE id=?", (entity_id,)).fetchone()
        if r is None:
            return None
        keys = ("id", "entity_type", "status", "merged_into", "golden", "created_run", "updated_run", "created_at",
                "updated_at")
        d = dict(zip(keys, r, strict=True))
        d["golden"] = json.loads(d["golden"] or "{}")
        return d

    def web_sources_of(self, entity_ids: Iterable[int]) -> dict[int, list[tuple[str, str, str, bool]]]:
        """(connector, stream, source key, missing) of the source records feeding each entity."""
        out: dict[int, list[tuple[str, str, str, bool]]] = {}
        for e, c, s, k, m in self._in("SELECT entity_id, connector, stream, source_key, missing FROM source_records "
                                      "WHERE entity_id IN ({in}) ORDER BY connector, stream, source_key", entity_ids):
            out.setdefault(e, []).append((c, s, k, bool(m)))
        return out

    def web_conflicted(self, entity_ids: Iterable[int]) -> set[int]:
        """The entities among `entity_ids` on either side of an open conflict."""
        ids = set(entity_ids)
        rows = self._exec("SELECT entity_id, other_entity_id FROM conflicts WHERE status='open'").fetchall()
        return {e for r in rows for e in r if e in ids}

    def web_records(self, entity_id: int) -> list[dict[str, Any]]:
        """The source records feeding an entity, with their mapped fields and raw record."""
        rows = self._exec("SELECT id, connector, stream, source_key, observed_at, missing, missing_since, "
                          "first_seen_run, last_seen_run, fields, raw, match_keys FROM source_records "
                          "WHERE entity_id=? ORDER BY connector, stream, source_key", (entity_id,)).fetchall()
        keys = ("id", "connector", "stream", "source_key", "observed_at", "missing", "missing_since",
                "first_seen_run", "last_seen_run", "fields", "raw", "match_keys")
        out = []
        for r in rows:
            d = dict(zip(keys, r, strict=True))
            d["missing"] = bool(d["missing"])
            for k in ("fields", "raw", "match_keys"):
                d[k] = json.loads(d[k]) if d[k] else None
            out.append(d)
        return out

    def web_history(self, entity_id: int, before: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """An entity's merge-log entries, newest first, with ids below `before`: up to `limit` + 1 stored rows,
        each create row expanded to its per-field set entries (sharing its id; last field first, as the set rows
        of older databases, one per field, list newest first)."""
        sql = ("SELECT id, run_id, at, entity_type, entity_id, action, field, old_value, new_value, source, rule, "
               "actor FROM merge_log WHERE entity_id=?")
        params: list[Any] = [entity_id]
        if before is not None:
            sql += " AND id<?"
            params.append(before)
        rows = self._exec(sql + " ORDER BY id DESC LIMIT ?", (*params, limit + 1)).fetchall()
        return as_dicts(e for r in rows for e in reversed(expand_rows((r,), decode=True)))

    def web_conflicts(self, status: str | None = "open", entity_id: int | None = None, after: int | None = None,
                      limit: int = 50) -> list[dict[str, Any]]:
        """Identity conflicts in id order (ids > `after`), optionally those touching one entity; up to
        `limit` + 1 rows."""
        where: list[str] = []
        params: list[Any] = []
        if status:
            where.append("c.status=?")
            params.append(status)
        if entity_id is not None:
            where.append("(c.entity_id=? OR c.other_entity_id=?)")
            params += [entity_id, entity_id]
        if after is not None:
            where.append("c.id>?")
            params.append(after)
        sql = ("SELECT c.id, c.run_id, c.entity_type, c.key, c.record_id, r.connector, r.stream, r.source_key, "
               "c.entity_id, c.other_entity_id, c.reason, c.status, c.created_at FROM conflicts c "
               "LEFT JOIN source_records r ON r.id=c.record_id")
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._exec(sql + " ORDER BY c.id LIMIT ?", (*params, limit + 1)).fetchall()
        keys = ("id", "run_id", "entity_type", "key", "record_id", "connector", "stream", "source_key", "entity_id",
                "other_entity_id", "reason", "status", "created_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def web_runs(self, before: int | None = None, limit: int = 50, connector: str | None = None,
                 status: str | None = None, run_id: int | None = None) -> list[dict[str, Any]]:
        """Sync runs, newest first (ids below `before`); up to `limit` + 1 rows."""
        where: list[str] = []
        params: list[Any] = []
        for cond, val in (("connector=?", connector), ("status=?", status), ("id<?", before), ("id=?", run_id)):
            if val is not None:
                where.append(cond)
                params.append(val)
        sql = ("SELECT id, connector, connector_type, mode, status, started_at, finished_at, duration_s, counts, "
               "error, host FROM sync_runs")
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._exec(sql + " ORDER BY id DESC LIMIT ?", (*params, limit + 1)).fetchall()
        keys = ("id", "connector", "type", "mode", "status", "started_at", "finished_at", "duration_s", "counts",
                "error", "host")
        out = []
        for r in rows:
            d = dict(zip(keys, r, strict=True))
            d["counts"] = json.loads(d["counts"] or "{}")
            out.append(d)
        return out

    def web_overview(self) -> dict[str, Any]:
        """Dashboard numbers that stay cheap on a large store (the log's size is its highest id: append-only)."""
        ent = {f"{t}:{s}": n for t, s, n in self._exec(
            "SELECT entity_type, status, count(*) FROM entities GROUP BY entity_type, status").fetchall()}
        return {
            "entities": ent,
            "open_conflicts": self._exec("SELECT count(*) FROM conflicts WHERE status='open'").scalar() or 0,
            "quarantined": self._exec("SELECT count(*) FROM quarantine WHERE status='open'").scalar() or 0,
            "merge_log_last_id": self._exec("SELECT max(id) FROM merge_log").scalar() or 0,
        }

    def web_assets_held(self, refs: list[str], limit: int = 200) -> list[tuple[int, dict[str, Any], str]]:
        """Assets whose golden `assigned_to` is one of `refs` (a person's e-mails and employee id)."""
        if not refs:
            return []
        marks = ",".join("?" * len(refs))
        rows = self._exec(f"SELECT id, golden, status FROM entities WHERE entity_type='asset' AND status<>'merged' "
                          f"AND {self._gx('assigned_to')} IN ({marks}) ORDER BY id LIMIT ?",
                          (*refs, limit)).fetchall()
        return [(r[0], json.loads(r[1]), r[2]) for r in rows]
