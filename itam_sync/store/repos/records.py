"""Staged source records: the latest mapped fields and raw record of every source record."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from itam_sync.model.observation import SourceValues
from itam_sync.store.repos.base import RepoBase, chunks, loads


class RecordsRepo(RepoBase):
    """Staged source records: the latest mapped fields and raw record of every source record."""

    def source_index(self, connector: str) -> dict[tuple[str, str], tuple[int, str, int | None, bool, str]]:
        """(stream, source_key) -> (record id, content hash, entity id, missing, filled) for one connector.

        `filled` names the record's non-empty mapped fields, comma-separated (a run counts fill rates of
        records it skips as unchanged from it); records share few distinct values, so they are interned."""
        rows = self._exec("SELECT stream, source_key, id, content_hash, entity_id, missing, filled "
                          "FROM source_records WHERE connector=?", (connector,))
        intern = sys.intern
        return {(r[0], r[1]): (r[2], r[3], r[4], bool(r[5]), intern(r[6] or "")) for r in rows}

    _INSERT_COLUMNS = ("id", "connector", "stream", "source_key", "entity_type", "content_hash", "raw", "fields",
                       "match_keys", "observed_at", "filled", "first_seen_run", "entity_id", "last_seen_run", "missing")
    _UPDATE_COLUMNS = ("content_hash", "raw", "fields", "match_keys", "observed_at", "filled", "last_seen_run",
                       "entity_id", "missing", "id")

    def insert_records(self, rows: list[tuple[Any, ...]]) -> None:
        """rows: (id, connector, stream, source_key, entity_type, hash, raw, fields, keys, observed_at, filled,
        run, entity_id)."""
        if self.pg:  # COPY: a first sync writes every source record here
            self.db.copy_rows("source_records", self._INSERT_COLUMNS, [(*r, r[-2], False) for r in rows])
            self.db.grew("source_records", len(rows))
            return
        self._many("INSERT INTO source_records (id, connector, stream, source_key, entity_type, content_hash, raw, "
                   "fields, match_keys, observed_at, filled, first_seen_run, entity_id, last_seen_run, missing) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [(*r, r[-2], False) for r in rows])

    def update_records(self, rows: list[tuple[Any, ...]]) -> None:
        """rows: (hash, raw, fields, keys, observed_at, filled, run, entity_id, id)."""
        if self.pg:
            self.db.copy_update("source_records", self._UPDATE_COLUMNS, [(*r[:8], False, r[8]) for r in rows],
                                ", missing_since=NULL")
            return
        self._many("UPDATE source_records SET content_hash=?, raw=?, fields=?, match_keys=?, observed_at=?, "
                   "filled=?, last_seen_run=?, entity_id=?, missing=?, missing_since=NULL WHERE id=?",
                   [(*r[:8], False, r[8]) for r in rows])

    def mark_missing(self, record_ids: list[int], at: str) -> list[int]:
        """Mark records missing; returns the entities they fed."""
        entity_ids: list[int] = []
        for chunk in chunks(record_ids):
            marks = ",".join("?" * len(chunk))
            entity_ids += [r[0] for r in self._exec(
                f"SELECT DISTINCT entity_id FROM source_records WHERE id IN ({marks}) AND entity_id IS NOT NULL",
                tuple(chunk)).fetchall()]
            self._exec(f"UPDATE source_records SET missing=?, missing_since=? WHERE id IN ({marks})",
                       (True, at, *chunk))
            # A record the source no longer has cannot be in conflict any more (a re-imaged host's old agent).
            self._exec(f"UPDATE conflicts SET status='resolved' WHERE status='open' AND record_id IN ({marks})",
                       tuple(chunk))
        return entity_ids

    def find_record(self, connector: str, stream: str | None, source_key: str) -> list[tuple[Any, ...]]:
        sql = "SELECT id, connector, stream, source_key, entity_id, entity_type FROM source_records " \
              "WHERE connector=? AND source_key=?"
        params: tuple[Any, ...] = (connector, source_key)
        if stream:
            sql += " AND stream=?"
            params += (stream,)
        return [tuple(r) for r in self._exec(sql, params).fetchall()]

    def find_record_trimmed(self, connector: str, stream: str | None, source_key: str) -> list[tuple[Any, ...]]:
        """Like find_record, for keys stored with surrounding spaces before keys were stripped (a full scan of
        the connector's records; operators' look-ups only)."""
        sql = "SELECT id, connector, stream, source_key, entity_id, entity_type FROM source_records " \
              "WHERE connector=? AND TRIM(source_key)=?"
        params: tuple[Any, ...] = (connector, source_key)
        if stream:
            sql += " AND stream=?"
            params += (stream,)
        return [tuple(r) for r in self._exec(sql, params).fetchall()]

    def record(self, record_id: int) -> tuple[Any, ...] | None:
        r = self._exec("SELECT id, connector, stream, source_key, entity_id, entity_type, match_keys "
                       "FROM source_records WHERE id=?", (record_id,)).fetchone()
        return tuple(r) if r else None

    def records_of_entity(self, entity_id: int) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._exec(
            "SELECT id, connector, stream, source_key, match_keys, missing, observed_at FROM source_records "
            "WHERE entity_id=? ORDER BY connector, stream, source_key", (entity_id,)).fetchall()]

    def records_for_remap(self, after_id: int, limit: int) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._exec(
            "SELECT id, connector, stream, raw, fields, entity_id FROM source_records WHERE id > ? ORDER BY id "
            "LIMIT ?", (after_id, limit)).fetchall()]

    def set_record_fields(self, rows: list[tuple[str, int]]) -> None:
        """rows: (fields JSON, id): a re-mapped record's fields, and with them its `filled` field names."""
        self._many("UPDATE source_records SET fields=?, filled=? WHERE id=?",
                   [(f, ",".join(json.loads(f)), rid) for f, rid in rows])

    def record_entities(self, record_ids: Iterable[int]) -> dict[int, int | None]:
        """record id -> its entity now (a run that read its index before taking the writer lock re-reads it)."""
        return {r: e for r, e in self._in("SELECT id, entity_id FROM source_records WHERE id IN ({in})", record_ids)}

    def entity_sources(self, entity_ids: Iterable[int]) -> dict[int, list[SourceValues]]:
        """Live (not missing) source values of each entity."""
        out: dict[int, list[SourceValues]] = {}
        for e, conn, fields, at, rid in self.live_source_rows(entity_ids):
            out.setdefault(e, []).append(SourceValues(conn, loads(fields), at, rid))
        return out

    def live_source_rows(self, entity_ids: Iterable[int]) -> Iterator[tuple[Any, ...]]:
        """(entity id, connector, fields JSON text, observed_at, record id) of each live source record, undecoded
        (the merge decodes them where it decides: in its worker processes on a large merge)."""
        yield from self.db.in_chunks("SELECT entity_id, connector, fields, observed_at, id FROM source_records "
                                     "WHERE entity_id IN ({in}) AND missing=?", entity_ids, (), (False,))
