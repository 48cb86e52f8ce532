"""CSV and JSON Lines files read record by record, with every failure named by file and line.

`csv_records` and `jsonl_records` yield (line number, record) pairs, or a `BadRecord` naming file and line in
place of a record they could not read:

* a row or line that does not parse (wrong number of CSV columns, invalid JSON, a JSON value that is not an
  object): quarantined, and the rest of the file is read;
* a file that cannot be read to its end is `incomplete` (what could not be read is not "gone", so a full run
  marks nothing of the stream missing and ends `degraded`): a file cut off while being written or copied (a
  last line without its line end that does not parse, a short last CSV row, a quoted value never closed),
  bytes that are not in the configured encoding and a CSV value over the csv module's field limit (the rest
  of that file cannot be read; files are decoded line by line so that the line can be named: a text-mode
  file decodes in blocks and cannot say where);
* a file without a column for its mapping's source key or a match-key field (`required`) is refused whole,
  before any of its records is yielded (itam_sync/sdk/required.py), and is `incomplete` too.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from itam_sync.model.jsoncodec import loads as json_loads
from itam_sync.sdk.connector import BadRecord
from itam_sync.sdk.required import Required, header_unmet, record_has, refusal, unmet

Item = tuple[int, dict[str, Any] | BadRecord]
_TRUNCATED = ("the file ends in the middle of this record (truncated while being written or copied?), so it "
              "could not be read (fix: copy the whole file again)")


class _Lines:
    """A binary file's lines, decoded one at a time and counted; with `keep`, the lines of the current record
    are kept (a CSV reader never reads ahead, so they are exactly the record's lines)."""

    def __init__(self, fh: Any, encoding: str, keep: bool = False) -> None:
        self.fh = fh
        self.decode = codecs.getincrementaldecoder(encoding)().decode
        self.n = 0
        self.keep = keep
        self.record: list[str] = []

    def __iter__(self) -> Iterator[str]:
        decode, record, keep = self.decode, self.record, self.keep
        for raw in self.fh:
            self.n += 1
            text = decode(raw)
            if keep:
                record.append(text)
            yield text
        decode(b"", final=True)  # raises for a multi-byte character cut off by the end of the file


def _bad(path: Path, line: int, why: str, raw: str = "", incomplete: bool = True) -> Item:
    where = f"{path}:{line}"
    return line, BadRecord(f"{where}: {why}", raw[:2000], incomplete=incomplete, position=where)


def _undecodable(path: Path, line: int, exc: UnicodeDecodeError, encoding: str) -> Item:
    return _bad(path, line, f"not {encoding} text ({exc.reason} near byte {exc.start + 1} of the line); the rest "
                "of the file was not read (fix: set the connector's settings.encoding to the file's encoding, "
                "e.g. cp1252 or utf-16, or export the file as UTF-8)")


def csv_records(path: Path, encoding: str, delimiter: str, required: Required = ()) -> Iterator[Item]:
    """The rows of a CSV file with a header row, as dicts keyed by the (stripped) header names."""
    with path.open("rb") as fh:
        lines = _Lines(fh, encoding, keep=True)
        reader = csv.reader(lines, delimiter=delimiter)
        start = 1
        try:
            header = next(reader, None)
            if not header:
                return
            header = [h.strip() for h in header]
            missing = header_unmet(required, header)
            if missing:
                where = f"{path}:{reader.line_num}"
                yield reader.line_num, BadRecord(refusal(where, missing, f"the header has: {', '.join(header)}"),
                                                 ",".join(header)[:2000], incomplete=True, position=where)
                return
            width, record = len(header), lines.record
            record.clear()
            start = reader.line_num + 1
            for row in reader:
                text = "".join(record)
                record.clear()
                line, start = start, reader.line_num + 1
                if not row:
                    continue
                # An odd number of quotes: a quoted value never closed, so the reader ran to the end of the
                # file. A short row without a line end: the file stops in the middle of it.
                if ('"' in text and text.count('"') % 2 == 1) or (
                        len(row) < width and not text.endswith(("\n", "\r"))):
                    yield _bad(path, line, _TRUNCATED, text)
                elif len(row) != width:
                    yield _bad(path, line, f"{len(row)} columns, header has {width}", delimiter.join(row), False)
                else:
                    yield line, dict(zip(header, row, strict=True))
        except UnicodeDecodeError as exc:
            yield _undecodable(path, lines.n, exc, encoding)
        except csv.Error as exc:
            why = (f"a value longer than the CSV field limit of {csv.field_size_limit():,} characters (often a "
                   "quote opened and never closed, which makes the rest of the file one value)"
                   if "field limit" in str(exc) else f"not valid CSV ({exc})")
            yield _bad(path, start, f"{why}; the rest of the file was not read (fix: correct the file there)")


def jsonl_records(path: Path, encoding: str, required: Required = ()) -> Iterator[Item]:
    """The objects of a JSON Lines file, one per non-blank line."""
    if required:
        missing = _jsonl_unmet(path, encoding, required)
        if missing:
            where = f"{path}:1"
            yield 1, BadRecord(refusal(where, missing, "no record of the file has them"), incomplete=True,
                               position=where)
            return
    loads = json_loads  # orjson, with json.loads's results and errors (model/jsoncodec.py)
    n = 0
    # Text mode (decoding in blocks) is the fast path; only a decoding error goes back to find its line.
    with path.open(encoding=encoding) as fh:
        try:
            for n, line in enumerate(fh, 1):  # noqa: B007 - n names the line of a decoding error below
                if not line.strip():
                    continue
                try:
                    rec = loads(line)
                except ValueError as exc:
                    cut = not line.endswith("\n")  # only the last line of a file can lack its line end
                    yield _bad(path, n, _TRUNCATED if cut else f"not valid JSON ({exc.args[0].split(':')[0]})",
                               line.strip(), cut)
                    continue
                if type(rec) is not dict:
                    yield _bad(path, n, f"expected a JSON object, got {type(rec).__name__}", line.strip(), False)
                    continue
                yield n, rec
        except UnicodeDecodeError as exc:
            line_no, line_exc = _first_undecodable(path, encoding)
            yield _undecodable(path, line_no or n + 1, line_exc or exc, encoding)


def _first_undecodable(path: Path, encoding: str) -> tuple[int, UnicodeDecodeError | None]:
    """The line number (and error) of the first line of `path` that does not decode (the slow path)."""
    with path.open("rb") as fh:
        lines = _Lines(fh, encoding)
        try:
            for _ in lines:
                pass
        except UnicodeDecodeError as exc:
            return lines.n, exc
    return 0, None


def _jsonl_unmet(path: Path, encoding: str, required: Required) -> list[str]:
    """Groups no record of the file has. Reads only until every group is met: usually the first line."""
    todo = list(required)
    with path.open("rb") as fh:
        try:
            for line in _Lines(fh, encoding):
                try:
                    rec = json_loads(line)
                except ValueError:
                    continue  # the reading pass reports it
                todo = [(what, g) for what, g in todo if not any(record_has(rec, p) for p in g)]
                if not todo:
                    return []
        except UnicodeDecodeError:
            return []  # the reading pass reports it, with its line
    return unmet(todo, lambda _p: False)


__all__ = ["csv_records", "jsonl_records"]
