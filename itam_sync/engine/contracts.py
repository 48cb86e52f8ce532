"""Data contracts: what a run says about the shape of its data, and when that shape is wrong.

Each run records, per stream, how many records it mapped, per mapped canonical field how many of them had a
value (its fill rate), and per source path the mapping reads whether it appeared in any record at all
(`counts["_contract"]` of the run, a list so that tables of per-stream counts pass over it). The runner
feeds it cheaply while it stages (see `StreamTracker`):

* fill rates come from the set of non-empty fields of each record, which staging already knows: a mapped
  record gives it, and a record skipped as unchanged by hash brings it from the store (`source_records.filled`),
  so counting costs one list append per record (the few distinct sets are counted at the end);
* path presence is checked on the raw record only until each path has been seen once, usually on the first
  record; a path absent from every record is checked on every record (the case worth the cost).

A full run is `degraded` (a status between success and failed: the data was staged, but look at it) when:

* every source path of a mapped field (or of the source key) is absent from every record of a stream while
  one of them appeared in the last successful full run ("okta users: manager: source path profile.manager
  absent from all 12,000 records (present on run 41)"), or
* a field's fill rate dropped by more than `sync.fill_rate_drop` (default 0.20, 20 points) against the last
  successful full run ("entra users: manager empty in 100% of 12,000 records (filled in 94% on run 41)"),
* unless the run was told that the change is deliberate (`itam-sync run --full --accept-drops`: it ends
  success and becomes the baseline), or
* a stream could not be read to its end (a truncated or refused file: `BadRecord(incomplete=True)`).

A path absent from every record of the first full run is a warning only: many sources leave out attributes
that do not apply (a Windows-only platform field, an IMEI on laptops), so only a path that was there and is
gone is a break. A field marked `optional: true` in the mapping is not reported absent at all, and a file
source does not require its column; its fill rate is still recorded.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from itam_sync.mapping.engine import StreamMapping
from itam_sync.mapping.paths import StreamPaths, path_text, presence_check

log = logging.getLogger(__name__)
KEY = "(source key)"  # how the source key is named among a stream's fields


class StreamTracker:
    """One stream's contract counters during one run; `see` and `filled_of` are the hot path."""

    __slots__ = ("stream", "paths", "pending", "present", "filled_of", "raws", "optional", "field_names")

    def __init__(self, smap: StreamMapping) -> None:
        self.stream = smap.name
        self.paths = StreamPaths.of(smap)
        self.optional = self.paths.optional
        self.field_names = [r.name for r in smap.rules]
        self.pending: list[tuple[str, Callable[[Any], bool]]] = [
            (path_text(p), presence_check(p)) for p in self.paths.all_paths()]
        self.present: set[str] = set()
        # per record ",".join(its non-empty field names): interned, records share few distinct ones
        self.filled_of: list[str] = []
        self.raws = 0  # records that reached the mapping (BadRecords never do)

    def see(self, raw: dict[str, Any]) -> bool:
        """Check the paths not seen yet in this run against one raw record; False once every path was seen."""
        still = []
        for text, has in self.pending:
            if has(raw):
                self.present.add(text)
            else:
                still.append((text, has))
        self.pending = still
        return bool(still)

    def stats(self) -> dict[str, Any]:
        """This stream's part of `counts["_contract"]` (JSON-able)."""
        filled = dict.fromkeys(self.field_names, 0)
        records = 0
        for names, n in Counter(self.filled_of).items():
            records += n
            for f in names.split(",") if names else ():
                if f in filled:
                    filled[f] += n
        groups = {KEY: self.paths.key, **self.paths.fields}
        return {
            "stream": self.stream, "records": records, "read": self.raws, "fields": filled,
            "paths": {path_text(p): path_text(p) in self.present for p in self.paths.all_paths()},
            "field_paths": {f: [[path_text(p) for p in g] for g in gs] for f, gs in groups.items()},
            "optional": sorted(self.optional),
        }


@dataclass
class Verdict:
    """What the contracts say about one run: problems that degrade it, and notes that only inform."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _pct(n: int, d: int) -> str:
    """A share as whole percent, never rounding a non-zero share to 0% or a partial one to 100%."""
    if d == 0:
        return "0%"
    p = 100 * n / d
    if 0 < p < 1:
        return "<1%"
    if 99 < p < 100:
        return ">99%"
    return f"{p:.0f}%"


def evaluate(connector: str, streams: Iterable[dict[str, Any]], baseline: tuple[int, list[dict[str, Any]]] | None,
             drop: float, accept_drops: bool = False, skip: Iterable[str] = ()) -> Verdict:
    """Judge a full run's contract stats against the last successful full run (`baseline`: its id and
    stats). Streams in `skip` (read incompletely: already degraded, with a better reason) are not judged.

    A field whose source paths all are absent degrades the run when one of them appeared in the baseline (it
    vanished); without a baseline it is a note (the first full run: a misspelt path shows here), and absent
    in both it says nothing new. `accept_drops` turns vanished paths and fill-rate drops into notes."""
    verdict = Verdict()
    skipped = set(skip)
    before = {s["stream"]: s for s in baseline[1]} if baseline else {}
    run = baseline[0] if baseline else 0
    for s in streams:
        name, n = s["stream"], s["records"]
        if name in skipped:
            continue
        prev = before.get(name)
        read = s.get("read", n)
        absent: set[str] = set()  # fields reported as absent: their fill rate says nothing new
        for fname, groups in s["field_paths"].items() if read else ():
            if fname in s.get("optional", ()):
                continue
            for g in groups:
                if not g or any(s["paths"].get(p) for p in g):
                    continue
                absent.add(fname)
                was = [p for p in g if prev and prev["paths"].get(p)]
                text = (f"{connector} {name}: {fname}: source path{'s' if len(g) > 1 else ''} {' / '.join(g)} "
                        f"absent from all {read:,} records")
                if was and not accept_drops:
                    verdict.problems.append(f"{text} (present on run {run}; fix: correct the path in the mapping, "
                                            "or drop the field, or mark it `optional: true` if the source may "
                                            "leave it out, or accept with --accept-drops)")
                elif was:
                    verdict.notes.append(f"{text} (present on run {run}); accepted as the new normal "
                                         "(--accept-drops)")
                elif prev is None:
                    verdict.notes.append(f"{text}: check the path in the mapping (mark the field `optional: "
                                         "true` if the source leaves it out when empty)")
        if not (prev and prev.get("records") and n):
            continue
        for fname, filled in s["fields"].items():
            if fname not in prev["fields"] or fname in absent:
                continue
            now, then = filled / n, prev["fields"][fname] / prev["records"]
            if then - now > drop + 1e-9:
                text = (f"{connector} {name}: {fname} empty in {_pct(n - filled, n)} of {n:,} records (filled in "
                        f"{_pct(prev['fields'][fname], prev['records'])} on run {run})")
                if accept_drops:
                    verdict.notes.append(text + "; accepted as the new normal (--accept-drops)")
                else:
                    verdict.problems.append(text)
    return verdict


__all__ = ["KEY", "StreamTracker", "Verdict", "evaluate"]
