"""Verifying the merge log's hash chain, and exporting a stretch of it as evidence an auditor can keep.

The chain itself (canonical row form, hashes) is defined in itam_sync/store/chain.py and written by
Repos.insert_log. Here:

- verify_store() walks the log in id order (streamed in batches) and stops at the first row that breaks
  the chain, naming it: an altered row fails its own hash; a deleted row shows as a prev_hash mismatch at
  the next row; an inserted row shows as a row the following row does not chain from.
- export_evidence() writes the rows between two times as JSON lines: a header line (with the prev_hash the
  first row chains from), one line per row as stored (so it verifies; a `create` row holds every field of an
  entity's first merge, see store/repos/merge_log.py), and a final line with the chain head (last row id and hash).
- verify_file() checks such a file stands on its own, without the database.

An unkeyed hash chain proves the rows up to a known head are unchanged; it cannot tell a correctly forged
row appended after the last head someone kept. Keep the head of each export (or `verify --anchor`) where the
database's writers cannot change it.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from itam_sync import clock
from itam_sync.engine.operations import OperationError
from itam_sync.settings.times import BadTime, parse_when_iso
from itam_sync.store import Store
from itam_sync.store.chain import CONTENT_COLUMNS, GENESIS, row_hash

log = logging.getLogger(__name__)
EXPORT_KIND = "itam-sync-merge-log-export"
HEAD_KIND = "chain-head"
ROW_COLUMNS = ("id", *CONTENT_COLUMNS, "prev_hash", "row_hash")
BATCH = 5000


def parse_time(text: str, end_of_day: bool = False) -> str:
    """An operator's time to the log's form, UTC "YYYY-MM-DDTHH:MM:SSZ", by the one parser
    (itam_sync.settings.times: ISO dates and times, today/yesterday, 2d ...).

    A bare date is the start of that day, or its last second with end_of_day (so `--as-of 2026-06-30` and
    `--until 2026-06-30` include the whole day). Times without an offset are UTC; fractions are dropped.
    """
    try:
        return parse_when_iso(text, end_of_day=end_of_day)
    except BadTime as exc:
        raise OperationError(str(exc)) from None


@dataclass
class ChainBreak:
    """The first row that breaks the chain, and how."""

    row_id: int | None
    kind: str  # altered | deleted | inserted | foreign | order | anchor | file
    message: str


@dataclass
class VerifyResult:
    """What a verification walked and whether the chain held."""

    ok: bool
    checked: int  # chained rows whose hashes were recomputed
    legacy: int  # leading rows written before the chain existed (no hash)
    first_id: int | None
    head_id: int | None  # the last row walked
    head_hash: str | None
    problem: ChainBreak | None = None
    anchor: str | None = None  # "ID:HASH" checked on the way, if any


class _Walker:
    """Checks rows one by one in id order; remembers recent hashes to tell an insertion from a deletion."""

    def __init__(self, start_prev: str | None, anchor: tuple[int, str] | None = None) -> None:
        self.start_prev = start_prev  # None: leading legacy (unhashed) rows are allowed, then GENESIS
        self.head: str | None = None
        self.head_id: int | None = None
        self.first_id: int | None = None
        self.checked = 0
        self.legacy = 0
        self.recent: deque[tuple[str, int]] = deque(maxlen=4096)
        self.anchor = anchor
        self.anchor_seen = anchor is None

    def expected_prev(self) -> str:
        if self.head is not None:
            return self.head
        return self.start_prev if self.start_prev is not None else GENESIS

    def feed(self, row: tuple[Any, ...]) -> ChainBreak | None:
        rid, content, prev, rh = row[0], row[1:12], row[12], row[13]
        if self.first_id is None:
            self.first_id = rid
        if self.head_id is not None and rid <= self.head_id:
            return ChainBreak(rid, "order", f"row {rid} comes after row {self.head_id}: rows are out of order")
        last = self.head_id
        if self.anchor is not None and not self.anchor_seen and rid > self.anchor[0]:
            return ChainBreak(self.anchor[0], "anchor", f"anchor row {self.anchor[0]} is gone: rows were deleted")
        if rh is None:
            if self.head is None and prev is None and self.start_prev is None:
                self.legacy += 1  # written before the chain existed: unchained legacy
                self.head_id = rid
                return None
            return ChainBreak(rid, "inserted", f"row {rid} has no hash but follows chained rows: it was inserted "
                                               "after the chain began (or its hash was removed)")
        content_ok = row_hash(prev or "", content) == rh
        expected = self.expected_prev()
        if prev != expected:
            if not content_ok:
                return ChainBreak(rid, "foreign", f"row {rid} does not belong to the chain: neither its prev_hash nor "
                                                  "its content match (an inserted row, or one whose hashes were "
                                                  "edited)")
            source = next((i for h, i in reversed(self.recent) if h == prev), None)
            if source is not None:
                inserted = next(i for h, i in self.recent if i > source)
                return ChainBreak(inserted, "inserted",
                                  f"row {inserted} was inserted: row {rid} chains from row {source}, so the rows "
                                  f"{inserted}..{last} between them are not part of the chain")
            after = f"after row {last}" if last is not None else "at the start of the log"
            return ChainBreak(rid, "deleted", f"row {rid}: its prev_hash matches no earlier row: rows were deleted "
                                              f"before it ({after})")
        if not content_ok:
            return ChainBreak(rid, "altered", f"row {rid} was altered: its content does not match its row_hash")
        if self.anchor is not None and rid == self.anchor[0]:
            self.anchor_seen = True
            if rh != self.anchor[1]:
                return ChainBreak(rid, "anchor", f"row {rid} has hash {rh}, not the anchor's {self.anchor[1]}: the "
                                                 "chain up to it was rewritten")
        self.recent.append((rh, rid))
        self.head, self.head_id = rh, rid
        self.checked += 1
        return None

    def result(self, problem: ChainBreak | None) -> VerifyResult:
        if problem is None and not self.anchor_seen and self.anchor is not None:
            problem = ChainBreak(self.anchor[0], "anchor", f"anchor row {self.anchor[0]} is not in the log (it ends at "
                                                           f"row {self.head_id}): rows were deleted")
        anchor = f"{self.anchor[0]}:{self.anchor[1]}" if self.anchor else None
        return VerifyResult(problem is None, self.checked, self.legacy, self.first_id, self.head_id, self.head,
                            problem, anchor)


def parse_anchor(text: str) -> tuple[int, str]:
    """"ID:HASH" (the head line of an earlier export) -> (id, hash)."""
    rid, _, h = text.partition(":")
    if not rid.strip().isdigit() or len(h.strip()) != 64:
        raise OperationError(f"--anchor {text!r}: use ROW_ID:SHA256_HEX, e.g. the last_id and last_hash of an export")
    return int(rid), h.strip().lower()


def verify_rows(rows: Iterable[tuple[Any, ...]], start_prev: str | None = None,
                anchor: tuple[int, str] | None = None) -> VerifyResult:
    """Verify (id, 11 content values, prev_hash, row_hash) rows in id order; stops at the first break."""
    walker = _Walker(start_prev, anchor)
    for row in rows:
        problem = walker.feed(row)
        if problem is not None:
            return walker.result(problem)
    return walker.result(None)


def _store_rows(store: Store, batch: int, progress: Callable[[int], None] | None) -> Iterable[tuple[Any, ...]]:
    last, seen = 0, 0
    while True:
        with store.begin() as repo:
            rows = repo.log.log_chain_batch(last, batch)
        if not rows:
            return
        yield from rows
        last = rows[-1][0]
        seen += len(rows)
        if progress is not None:
            progress(seen)


def verify_store(store: Store, anchor: tuple[int, str] | None = None, batch: int = BATCH,
                 progress: Callable[[int], None] | None = None) -> VerifyResult:
    """Walk the whole merge log of a store in id order, streamed in batches."""
    return verify_rows(_store_rows(store, batch, progress), None, anchor)


@dataclass
class ExportResult:
    """What an evidence export wrote."""

    path: str
    rows: int
    first_id: int | None
    last_id: int | None
    prev_hash: str | None  # what the first row chains from
    head_hash: str | None  # the last row's hash


def export_evidence(store: Store, since: str | None, until: str | None, fh: IO[str], path: str = "-",
                    batch: int = BATCH) -> ExportResult:
    """Write the log's rows from the first at/after `since` to the last at/before `until` (a contiguous stretch
    of the chain, so it verifies on its own) as JSON lines with a header and a chain-head line."""
    with store.begin() as repo:
        first, last = repo.log.log_id_range(since, until)
        if first is not None and last is not None and first <= last:
            head_rows = repo.log.log_chain_batch(first - 1, 1, last)
        else:
            head_rows = []
    prev = head_rows[0][12] if head_rows else None
    first_id: int | None = head_rows[0][0] if head_rows else None
    header = {"kind": EXPORT_KIND, "version": 1, "since": since, "until": until,
              "exported_at": clock.now_iso(),
              "first_id": first_id, "last_id": last if head_rows else None,
              "prev_hash": prev,
              "hash": "row_hash = sha256(prev_hash + '\\x1e' + canonical(row)); see itam_sync/store/chain.py",
              "create": "a create row (an entity's first merge) stands for one set row from null per field: "
                        "its new_value is {field: [value, source, rule]}"}
    fh.write(json.dumps(header) + "\n")
    n, head_id, head_hash = 0, None, None
    if head_rows:
        after = head_rows[0][0] - 1
        while True:
            with store.begin() as repo:
                rows = repo.log.log_chain_batch(after, batch, last)
            if not rows:
                break
            for r in rows:
                fh.write(json.dumps(dict(zip(ROW_COLUMNS, r, strict=True)), ensure_ascii=False) + "\n")
            n += len(rows)
            after = rows[-1][0]
            head_id, head_hash = rows[-1][0], rows[-1][13]
    fh.write(json.dumps({"kind": HEAD_KIND, "last_id": head_id, "last_hash": head_hash, "rows": n}) + "\n")
    return ExportResult(path, n, first_id, head_id, prev, head_hash)


def verify_file(path: str | Path) -> VerifyResult:
    """Verify an evidence export on its own: its rows chain from the header's prev_hash to the head line."""
    p = Path(path)
    try:
        fh = p.open(encoding="utf-8")
    except OSError as exc:
        raise OperationError(f"cannot read {path}: {exc.strerror}") from None
    with fh:
        lines = iter(enumerate(fh, 1))
        try:
            _, first_line = next(lines)
            header = json.loads(first_line)
        except (StopIteration, ValueError):
            header = None
        if not isinstance(header, dict) or header.get("kind") != EXPORT_KIND:
            raise OperationError(f"{path}: not a merge-log export (no {EXPORT_KIND} header line)")
        walker = _Walker(header.get("prev_hash"))
        head: dict[str, Any] | None = None
        for lineno, line in lines:
            try:
                obj = json.loads(line)
            except ValueError:
                return walker.result(ChainBreak(None, "file", f"{path}:{lineno}: not JSON"))
            if head is not None:
                return walker.result(ChainBreak(None, "file", f"{path}:{lineno}: lines after the chain-head line"))
            if obj.get("kind") == HEAD_KIND:
                head = obj
                continue
            try:
                row = tuple(obj[c] for c in ROW_COLUMNS)
            except KeyError as exc:
                return walker.result(ChainBreak(obj.get("id"), "file", f"{path}:{lineno}: row without {exc}"))
            problem = walker.feed(row)
            if problem is not None:
                return walker.result(problem)
        if head is None:
            return walker.result(ChainBreak(None, "file", f"{path}: no chain-head line: the file is truncated"))
        if walker.checked + walker.legacy != head.get("rows") or head.get("last_id") != walker.head_id \
                or head.get("last_hash") != walker.head:
            return walker.result(ChainBreak(walker.head_id, "file",
                                            f"{path}: the chain-head line (row {head.get('last_id')}, "
                                            f"{head.get('rows')} rows) does not match the rows (last row "
                                            f"{walker.head_id}, {walker.checked + walker.legacy} rows)"))
        if header.get("first_id") != walker.first_id:
            return walker.result(ChainBreak(walker.first_id, "file",
                                            f"{path}: the header says the first row is {header.get('first_id')}, "
                                            f"the file starts at row {walker.first_id}"))
        return walker.result(None)
