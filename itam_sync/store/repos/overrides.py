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
        """Set the override of (entity, field); the one it replaces stops being active."""
        self._exec("UPDATE overrides SET active=? WHERE entity_id=? AND field=? AND active=?",
                   (False, entity_id, field, True))
        self._exec("INSERT INTO overrides (entity_id, field, value, reason, actor, created_at, expires_at, active) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (entity_id, field, dumps(value), reason, actor, at, expires,
                                                       True))

    def current_override(self, entity_id: int, field: str, now: str) -> dict[str, Any] | None:
        """The override of (entity, field) in force at `now`, or None."""
        rows = self.list_overrides(now, entity_id=entity_id, field=field)
        return rows[0] if rows else None

    def list_overrides(self, now: str, entity_id: int | None = None, field: str | None = None,
                       include_inactive: bool = False) -> list[dict[str, Any]]:
        """Overrides, oldest first, with who, why and expiry; `state` is active, expired or ended (replaced or
        removed). Without `include_inactive` only those in force at `now`."""
        where, params = [], []
        for cond, val in (("entity_id=?", entity_id), ("field=?", field)):
            if val is not None:
                where.append(cond)
                params.append(val)
        if not include_inactive:
            where.append("active=?")
            params.append(True)
        sql = ("SELECT id, entity_id, field, value, reason, actor, created_at, expires_at, active FROM overrides"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id")
        out = []
        for oid, eid, f, v, reason, actor, created, expires, active in self._exec(sql, tuple(params)).fetchall():
            expired = bool(expires and expires <= now)
            if not include_inactive and expired:
                continue
            state = "expired" if expired else ("active" if active else "ended")
            out.append({"id": oid, "entity_id": eid, "field": f, "value": json.loads(v), "reason": reason,
                        "actor": actor, "created_at": created, "expires_at": expires, "state": state})
        return out

    def end_override(self, override_id: int) -> None:
        """Stop an override applying (removed by an operator); the row stays for the record."""
        self._exec("UPDATE overrides SET active=? WHERE id=?", (False, override_id))
