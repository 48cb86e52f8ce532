"""Per-record details remembered between runs, so a source that needs one request per record for its details
(Kandji's `/devices/{id}/details`) is asked again only for records whose list row changed.

A connector fingerprints each list row (leaving out fields that move on every check-in, like a last-seen
time), asks `get(key, fingerprint)` and fetches the details only on a miss: a new record, a changed row, or
details older than `max_age_s` (so what the list does not reflect, e.g. a new network card, is still read
now and then). A record whose row did not change comes out with the same details as last run, so the
engine's content hash sees it unchanged: not reported changed, and (being yielded) never missing.

Stored in a small SQLite file of its own (`path`); None keeps nothing between runs. The file is only a memo
of the vendor's answers: deleting it costs one details request per record on the next run, nothing else.
Expiry is staggered per key (75-100 % of `max_age_s`) so details fetched in one big first run do not all
fall due in the same later run.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

_SCHEMA = ("CREATE TABLE IF NOT EXISTS details (key TEXT PRIMARY KEY, fingerprint TEXT, fetched_at REAL, "
           "body TEXT)")


def fingerprint(row: Mapping[str, Any], ignore: Iterable[str] = (), extra: Any = None) -> str:
    """A short stable hash of `row` without the `ignore` keys (plus `extra`, e.g. the settings that shape
    the details kept)."""
    skip = set(ignore)
    kept = {k: v for k, v in row.items() if k not in skip}
    text = json.dumps([kept, extra], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class DetailCache:
    """Details by record key and list-row fingerprint; a miss means "fetch them"."""

    def __init__(self, path: str | Path | None, *, max_age_s: float, clock: Callable[[], float] = time.time,
                 commit_every: int = 200) -> None:
        self.max_age_s, self.clock, self.commit_every = max_age_s, clock, commit_every
        self.hits = self.misses = 0
        # Key order is kept as the vendor sent it (no sort_keys): the engine hashes the record's JSON text.
        self._pending = 0
        self._db: sqlite3.Connection | None = None
        if path is not None:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(Path(path).expanduser(), check_same_thread=False)
            self._db.execute(_SCHEMA)

    def _max_age(self, key: str) -> float:
        spread = int(hashlib.blake2b(key.encode(), digest_size=2).hexdigest(), 16) / 0xFFFF
        return self.max_age_s * (0.75 + 0.25 * spread)

    def get(self, key: str, print_: str) -> dict[str, Any] | None:
        """The remembered details of `key` if its row still has fingerprint `print_` and they are fresh."""
        row = None
        if self._db is not None:
            row = self._db.execute("SELECT fingerprint, fetched_at, body FROM details WHERE key = ?",
                                   (key,)).fetchone()
        if row is None or row[0] != print_ or self.clock() - row[1] > self._max_age(key):
            self.misses += 1
            return None
        self.hits += 1
        body = json.loads(row[2])
        return body if isinstance(body, dict) else None

    def put(self, key: str, print_: str, details: Mapping[str, Any]) -> None:
        """Remember the details just fetched for `key` (committed in batches and on close)."""
        if self._db is None:
            return
        self._db.execute("INSERT OR REPLACE INTO details VALUES (?, ?, ?, ?)",
                         (key, print_, self.clock(), json.dumps(details, default=str)))
        self._pending += 1
        if self._pending >= self.commit_every:
            self.flush()

    def flush(self) -> None:
        """Commit what was remembered so far."""
        if self._db is not None and self._pending:
            self._db.commit()
            self._pending = 0

    def close(self) -> None:
        """Commit and close the file."""
        if self._db is not None:
            self.flush()
            self._db.close()
            self._db = None
