"""Required columns of file sources: a file that cannot hold its records' source key or match keys is refused.

The engine hands a stream the groups of source paths its mapping needs (`StreamState.required`: the source
key and every mapped match-key field, each a group of alternatives). A CSV or XLSX file must have a header
column for at least one path of every group; a JSONL file must have each group in at least one of its
records. Otherwise the file is refused as a whole, before any of its records is staged: a CSV without its
serial column would otherwise stage EDR records matched only by MAC, onto whatever asset shares the MAC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

Required = Sequence[tuple[str, tuple[tuple[str, ...], ...]]]  # (what, alternatives), see StreamState.required


def unmet(required: Required, has: Callable[[tuple[str, ...]], bool]) -> list[str]:
    """What is missing, one phrase per unmet group ("serial_number (one of serial_number, serial)")."""
    out = []
    for what, group in required:
        if group and not any(has(p) for p in group):
            names = ", ".join(".".join(p) for p in group)
            out.append(f"{what} ({'one of ' if len(group) > 1 else 'column '}{names})")
    return out


def header_unmet(required: Required, header: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """Unmet groups for a file with a header row: a path is there when it is one column of the header
    (`extra`: keys the reader adds to every record itself, such as `_file`)."""
    columns = set(header) | set(extra)
    return unmet(required, lambda p: len(p) == 1 and p[0] in columns)


def record_has(rec: Any, path: tuple[str, ...]) -> bool:
    """Does `path` exist in a JSON record (whatever its value, null included)?"""
    v = rec
    for p in path:
        if not isinstance(v, dict) or p not in v:
            return False
        v = v[p]
    return True


def refusal(where: str, missing: list[str], found: str) -> str:
    """The one-line reason a file is refused, naming what it lacks, what it has and the fix."""
    return (f"{where}: file refused, nothing of it was staged: no {'; no '.join(missing)}; {found} "
            "(fix: export the file with these columns, or point the connector's `mapping:` at a mapping "
            "that names the columns this file has)")


__all__ = ["Required", "header_unmet", "record_has", "refusal", "unmet"]
