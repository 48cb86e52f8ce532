"""The quarantine side of a run: one row per record that could not be read or mapped, named where it is.

A quarantined record is an *item*: its source key when it has one ("key:00u1broken"), else its place in a
file ("at:exports/hr.csv:17"), else a digest of its content ("raw:..."), so a record that stays broken keeps
one row across runs (its reason, count and latest run updated) instead of adding one per run. A row is
resolved when its record maps again, and, after a full run that read a stream to its end, when the run did
not meet the record at all (fixed or gone).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from itam_sync.store.repos import Repos


def place(position: str | None, n: int, raw: str) -> tuple[str, str]:
    """(where a bad record is, the item naming its quarantine row when it has no source key): its place in a
    file when the stream knows it, else its number in this run's read and a digest of its content."""
    if position:
        return position, "at:" + position
    return (f"record {n} of the stream in this run",
            "raw:" + hashlib.blake2b(raw.encode(), digest_size=16).hexdigest())


def record_quarantine(repo: Repos, connector: str, rows: list[tuple[Any, ...]], open_items: set[tuple[str, str]],
                      fixed: Iterable[tuple[str, str]], read_in_full: set[str], incomplete: Iterable[str],
                      run_id: int, at: str) -> None:
    """Write a run's quarantine rows (run, connector, stream, item, source key, where, reason, raw, at) and
    resolve the rows of records that map again (`fixed`) and, in the streams a full run read (`read_in_full`)
    to their end (not `incomplete`), every open row the run did not quarantine again."""
    repo.quarantine.quarantine(rows)
    hit = {(r[2], r[3]) for r in rows}
    resolved = {f for f in fixed if f not in hit}
    complete = read_in_full - set(incomplete)
    resolved |= {(s, i) for s, i in open_items if s in complete and (s, i) not in hit}
    if resolved:
        repo.quarantine.resolve(connector, sorted(resolved), run_id, at)


__all__ = ["place", "record_quarantine"]
