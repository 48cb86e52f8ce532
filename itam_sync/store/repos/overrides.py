"""Operator overrides of golden fields, with who, why and expiry."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from itam_sync.model.observation import Override
from itam_sync.store.repos.base import RepoBase, dumps


class OverridesRepo(RepoBase):
    """Operator overrides of golden fields, with who, why and expiry."""

    def active_overrides(self, entity_ids: Iterable[int], now: str) -> dict[int, list[Override]]:
        out: dict[int, list[Override]] = {}
        for e, f, v, reason, actor, created, expires in self._in(
                "SELECT entity_id, field, value, reason, actor, created_at, expires_at FROM overrides "
                "WHERE active=? AND entity_id IN ({in}) ORDER BY id", entity_ids, (True,)):
            if expires and expires <= now:
                continue
            out.setdefault(e, []).append(Override(f, json.loads(v), reason, actor, created))
        return out

    def expired_override_entities(self, now: str) -> list[int]:
        """Entities with an override that has expired; their overrides are deactivated."""
        rows = self._exec("SELECT DISTINCT entity_id FROM overrides WHERE active=? AND expires_at IS NOT NULL "
                          "AND expires_at <= ?", (True, now)).fetchall()
        if rows:
            self._exec("UPDATE overrides SET active=? WHERE active=? AND expires_at IS NOT NULL AND expires_at <= ?",
                       (False, True, now))
        return [r[0] for r in rows]

    def add_override(self, entity_id: int, field: str, value: Any, reason: str, actor: str | None, at: str,
                     expires: str | None) -> None:
        self._exec("UPDATE overrides SET active=? WHERE entity_id=? AND field=? AND active=?",
                   (False, entity_id, field, True))
        self._exec("INSERT INTO overrides (entity_id, field, value, reason, actor, created_at, expires_at, active) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (entity_id, field, dumps(value), reason, actor, at, expires,
                                                       True))
