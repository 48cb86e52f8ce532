"""Entities (golden records), their match keys and the dirty-entity merge queue."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from itam_sync.model.canonical import EntityType
from itam_sync.store.repos.base import RepoBase, chunks, loads


class EntitiesRepo(RepoBase):
    """Entities (golden records), their match keys and the dirty-entity merge queue."""

    def owners(self, entity: EntityType, keys: Iterable[str]) -> dict[str, int]:
        return {k: e for k, e in self._in("SELECT key, entity_id FROM entity_keys WHERE entity_type=? AND key "
                                          "IN ({in})", keys, (entity.value,))}

    def keys_of(self, entity_ids: Iterable[int]) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        for e, k in self._in("SELECT entity_id, key FROM entity_keys WHERE entity_id IN ({in})", entity_ids):
            out.setdefault(e, set()).add(k)
        return out

    def insert_entities(self, rows: list[tuple[int, str]], run_id: int | None, at: str) -> None:
        if self.pg:  # COPY: a first sync creates most entities here
            self.db.copy_rows("entities", ("id", "entity_type", "golden", "status", "created_run", "updated_run",
                                           "created_at", "updated_at"),
                              [(i, t, "{}", "active", run_id, run_id, at, at) for i, t in rows])
            return
        self._many("INSERT INTO entities (id, entity_type, golden, status, created_run, updated_run, created_at, "
                   "updated_at) VALUES (?, ?, '{}', 'active', ?, ?, ?, ?)",
                   [(i, t, run_id, run_id, at, at) for i, t in rows])

    def set_record_entities(self, rows: list[tuple[int, int]]) -> None:
        """rows: (entity_id, record_id)."""
        self._many("UPDATE source_records SET entity_id=? WHERE id=?", rows)

    def entity_ids(self, entity_type: str | None = None, status: tuple[str, ...] = ("active", "missing")
                   ) -> list[int]:
        marks = ",".join("?" * len(status))
        sql = f"SELECT id FROM entities WHERE status IN ({marks})"
        params: tuple[Any, ...] = status
        if entity_type:
            sql += " AND entity_type=?"
            params += (entity_type,)
        return [r[0] for r in self._exec(sql + " ORDER BY id", params).fetchall()]

    def source_keys_of(self, entity_ids: Iterable[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for e, c, s, k, m in self._in("SELECT entity_id, connector, stream, source_key, missing FROM source_records "
                                      "WHERE entity_id IN ({in}) ORDER BY connector, stream, source_key", entity_ids):
            out.setdefault(e, []).append(f"{c}/{s}/{k}" + (" (missing)" if m else ""))
        return out

    def entity_by_key(self, entity_type: str, key: str) -> int | None:
        """The entity a key identifies: None for an unknown or ambiguous key (it identifies no one thing)."""
        r = self._exec("SELECT entity_id FROM entity_keys k WHERE entity_type=? AND key=? AND NOT EXISTS (SELECT 1 "
                       "FROM ambiguous_identifiers a WHERE a.entity_type=k.entity_type AND a.key=k.key) "
                       "ORDER BY entity_id LIMIT 1", (entity_type, key)).fetchone()
        return r[0] if r else None

    def entity_row(self, entity_id: int) -> tuple[str, str, int | None, str | None] | None:
        """(entity_type, status, merged_into, created_at) of one entity."""
        r = self._exec("SELECT entity_type, status, merged_into, created_at FROM entities WHERE id=?",
                       (entity_id,)).fetchone()
        return (r[0], r[1], r[2], r[3]) if r else None

    def entity_ids_created(self, entity_type: str, until: str, after_id: int, limit: int) -> list[int]:
        """Ids of entities of a type created at or before `until` (merged-away ones too), in id order."""
        return [r[0] for r in self._exec(
            "SELECT id FROM entities WHERE entity_type=? AND (created_at IS NULL OR created_at<=?) AND id>? "
            "ORDER BY id LIMIT ?", (entity_type, until, after_id, limit)).fetchall()]

    def iter_entities(self, entity_type: str, batch: int = 1000) -> Iterator[tuple[int, dict[str, Any], str]]:
        """Golden records of one type (not merged-away ones), streamed in id order."""
        last = 0
        while True:
            rows = self._exec("SELECT id, golden, status FROM entities WHERE entity_type=? AND status<>'merged' "
                              "AND id>? ORDER BY id LIMIT ?", (entity_type, last, batch)).fetchall()
            if not rows:
                return
            for i, g, s in rows:
                yield i, loads(g), s
            last = rows[-1][0]

    def goldens(self, entity_ids: Iterable[int]) -> dict[int, tuple[str, dict[str, Any], str]]:
        return {i: (t, loads(g), s) for i, t, g, s in self.golden_rows(entity_ids)}

    def golden_rows(self, entity_ids: Iterable[int]) -> Iterator[tuple[Any, ...]]:
        """(id, entity type, golden JSON text, status) of each entity, undecoded (see `goldens`)."""
        return self._in("SELECT id, entity_type, golden, status FROM entities WHERE id IN ({in})", entity_ids)

    def update_goldens(self, rows: list[tuple[str, str, int | None, str, int]]) -> None:
        """rows: (golden json, status, run_id, at, entity id)."""
        if self.pg:
            self.db.copy_update("entities", ("golden", "status", "updated_run", "updated_at", "id"), rows)
            return
        self._many("UPDATE entities SET golden=?, status=?, updated_run=?, updated_at=? WHERE id=?", rows)

    def add_dirty(self, entity_ids: Iterable[int], run_id: int | None) -> None:
        if self.pg:
            self.db.copy_insert_ignore("dirty_entities", ("entity_id", "run_id"), [(e, run_id) for e in entity_ids],
                                       "entity_id")
            return
        self._many("INSERT INTO dirty_entities (entity_id, run_id) VALUES (?, ?) ON CONFLICT (entity_id) DO NOTHING",
                   [(e, run_id) for e in entity_ids])

    def dirty_ids(self) -> list[int]:
        return [r[0] for r in self._exec("SELECT entity_id FROM dirty_entities ORDER BY entity_id").fetchall()]

    def clear_dirty(self, entity_ids: list[int]) -> None:
        for chunk in chunks(entity_ids):
            self._exec(f"DELETE FROM dirty_entities WHERE entity_id IN ({','.join('?' * len(chunk))})", tuple(chunk))

    def counts(self) -> dict[str, Any]:
        ent = {f"{t}:{s}": n for t, s, n in self._exec(
            "SELECT entity_type, status, count(*) FROM entities GROUP BY entity_type, status").fetchall()}
        return {
            "entities": ent,
            "source_records": self._exec("SELECT count(*) FROM source_records").scalar(),
            "missing_records": self._exec("SELECT count(*) FROM source_records WHERE missing=?", (True,)).scalar(),
            "open_conflicts": self._exec("SELECT count(*) FROM conflicts WHERE status='open'").scalar(),
            "quarantined": self._exec("SELECT count(*) FROM quarantine WHERE status='open'").scalar(),
            "merge_log_rows": self._exec("SELECT count(*) FROM merge_log").scalar(),
        }
