"""Streaming read queries behind the reports."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from itam_sync.store.repos.base import RepoBase


class ReportQueries(RepoBase):
    """Streaming read queries behind the reports."""

    def report_record_sources(self, entity_type: str) -> Iterator[tuple[int, str, str, bool]]:
        """(entity id, connector, stream, missing) of every source record feeding an entity of this type,
        streamed."""
        # The missing flag sits after the large raw/fields columns: read it through the (connector, missing)
        # index instead of from every row, and read only the leading columns of the table itself.
        connectors = [r[0] for r in self._exec("SELECT DISTINCT connector FROM source_records").fetchall()]
        missing: set[int] = set()
        for c in connectors:
            missing.update(r[0] for r in self._exec("SELECT id FROM source_records WHERE connector=? AND missing=?",
                                                    (c, True)).fetchall())
        result = self._exec("SELECT id, entity_id, connector, stream FROM source_records WHERE entity_type=?",
                            (entity_type,))
        while True:
            rows = result.fetchmany(5000)
            if not rows:
                return
            for i, e, c, s in rows:
                if e is not None:
                    yield e, c, s, i in missing

    def report_values(self, entity_type: str, fields: Sequence[str], batch: int = 5000
                      ) -> Iterator[tuple[int, str, list[Any]]]:
        """(id, status, [the golden entry [value, source, observed_at] or None, per field]) of every entity of a
        type that was not merged away, in id order. The database extracts the fields from the golden JSON:
        much cheaper than decoding every whole golden record in Python."""
        for f in fields:
            if not f.isidentifier():
                raise ValueError(f"not a field name: {f!r}")
        if self.pg:
            sql = ("SELECT id, status, jsonb_build_array(" + ", ".join(f"g->'{f}'" for f in fields) + ")::text "
                   "FROM (SELECT id, status, golden::jsonb AS g FROM entities WHERE entity_type=? AND "
                   "status<>'merged' AND id>? ORDER BY id LIMIT ?) s ORDER BY id")
        else:
            sql = ("SELECT id, status, json_array(" + ", ".join(f"json_extract(golden, '$.{f}')" for f in fields)
                   + ") FROM entities WHERE entity_type=? AND status<>'merged' AND id>? ORDER BY id LIMIT ?")
        loads = json.loads
        last = 0
        while True:
            rows = self._exec(sql, (entity_type, last, batch)).fetchall()
            if not rows:
                return
            for i, st, values in rows:
                yield i, st, loads(values)
            last = rows[-1][0]
