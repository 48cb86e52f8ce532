"""Who is each user's manager: Graph's `manager@delta` ids turned into the manager's addresses.

A users delta query names a manager only by id: `"manager@delta": [{"@odata.type", "id"}]`, with an entry
marked `@removed` when the manager was taken away. The mapping needs an address, so ids are resolved from
the users read in the same run, and the few that are not there (a round from a delta link returns only
changed users) by one `GET /users/{id}` each.

A new round states the manager of every user that has one. A round from a delta link is not documented to
repeat an unchanged manager, so a changed user without the annotation gets its current manager from
`GET /users/{id}/manager` (404: none). Look-ups are capped per run: a delta-link round is read whole before
anything reaches the engine, so if it would need more than the cap, it is dropped (`TooManyLookups`) and
the caller reads a new round instead, whose managers are nearly all among its own users.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from itam_sync.sdk.connector import ConnectorError
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient

log = logging.getLogger(__name__)

Address = tuple[str | None, str | None]  # (mail, userPrincipalName)
UNSAID = "<unsaid>"  # the record has no manager@delta: unchanged (delta-link round) or none (new round)


class TooManyLookups(ConnectorError):
    """More managers to look up than `manager_lookups` allows."""

    def __init__(self, source: str, needed: int, limit: int) -> None:
        super().__init__(f"{source}: {needed} users name a manager this run did not read, more than "
                         f"manager_lookups={limit} look-ups (fix: raise manager_lookups in the connector's "
                         "settings)", kind="config")


def manager_ref(user: dict[str, Any]) -> str | None:
    """The manager's id; None when the manager was removed or none is set; UNSAID when not stated."""
    if "manager@delta" not in user:
        return UNSAID
    entries = user.get("manager@delta") or []
    alive = [e for e in entries if isinstance(e, dict) and e.get("id") and "@removed" not in e]
    return str(alive[-1]["id"]) if alive else None


def _is_user(user: Any) -> bool:
    """A live user record; anything else (a removed entry, a broken record) passes through untouched."""
    return isinstance(user, dict) and "@removed" not in user and bool(user.get("id"))


class ManagerResolver:
    """Adds `manager: {id, mail, userPrincipalName}` (or None) to each user of one run's delta round(s)."""

    def __init__(self, http: HttpClient, max_lookups: int, source: str) -> None:
        self.http, self.max_lookups, self.source = http, max_lookups, source
        self.known: dict[str, Address] = {}  # every user id read in this run -> its addresses
        self.lookups = 0
        self.read = 0  # delta records consumed so far (a 410 on the delta link leaves this at 0)

    def new_round(self, users: Iterable[Any]) -> Iterator[Any]:
        """Every user, each naming its manager if it has one. Users whose manager was not read yet wait,
        as JSON text to keep memory small, until the round has been read."""
        waiting: list[tuple[str, str]] = []
        for user in users:
            ref = self._note(user)
            if ref is None or ref == UNSAID or ref in self.known:
                yield self._attach(user, None if ref == UNSAID else ref)
            else:
                waiting.append((ref, json.dumps(user)))
        unknown = {ref for ref, _ in waiting} - self.known.keys()
        if self.lookups + len(unknown) > self.max_lookups:
            raise TooManyLookups(self.source, len(unknown), self.max_lookups)
        for ref, text in waiting:
            yield self._attach(json.loads(text), ref)

    def delta_round(self, users: Iterable[Any]) -> Iterator[Any]:
        """A round from a saved delta link, read whole here (raising TooManyLookups early, before anything
        is yielded, when it needs too many look-ups); the returned iterator attaches the managers."""
        texts: list[str] = []
        unsaid, refs = 0, set()
        for user in users:
            ref = self._note(user)
            if _is_user(user):
                unsaid += ref == UNSAID
                if ref not in (None, UNSAID):
                    refs.add(ref)
            texts.append(json.dumps(user))
            if unsaid > self.max_lookups:
                raise TooManyLookups(self.source, unsaid, self.max_lookups)
        needed = unsaid + len(refs - self.known.keys())
        if self.lookups + needed > self.max_lookups:
            raise TooManyLookups(self.source, needed, self.max_lookups)
        return (self._attach(user, manager_ref(user) if _is_user(user) else None) for user in map(json.loads, texts))

    def _note(self, user: Any) -> str | None:
        self.read += 1
        if not _is_user(user):
            return None
        self.known[str(user["id"])] = (user.get("mail"), user.get("userPrincipalName"))
        return manager_ref(user)

    def _attach(self, user: Any, ref: str | None) -> Any:
        if not _is_user(user):
            return user
        if ref == UNSAID:
            user["manager"] = self._manager_of(str(user["id"]))
        elif ref is None:
            user["manager"] = None
        else:
            mail, upn = self.known[ref] if ref in self.known else self._lookup(ref)
            user["manager"] = {"id": ref, "mail": mail, "userPrincipalName": upn}
        return user

    def _get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """One look-up; {} when Graph answers 404 (no such user, or no manager assigned)."""
        self.lookups += 1
        try:
            body = self.http.get_json(path, params=params)
        except HttpError as exc:
            if exc.status != 404:
                raise
            return {}
        return body if isinstance(body, dict) else {}

    def _lookup(self, manager_id: str) -> Address:
        body = self._get(f"/v1.0/users/{manager_id}", {"$select": "id,mail,userPrincipalName"})
        if not body:
            log.warning("%s: manager %s is not a user in the directory (deleted?); left empty", self.source,
                        manager_id)
        self.known[manager_id] = (body.get("mail"), body.get("userPrincipalName"))
        return self.known[manager_id]

    def _manager_of(self, user_id: str) -> dict[str, Any] | None:
        body = self._get(f"/v1.0/users/{user_id}/manager")
        if not body.get("id"):
            return None
        self.known[str(body["id"])] = (body.get("mail"), body.get("userPrincipalName"))
        return {"id": str(body["id"]), "mail": body.get("mail"), "userPrincipalName": body.get("userPrincipalName")}
