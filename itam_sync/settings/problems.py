"""How a config problem is written: `file:line: dotted.key: what is wrong (fix: what to do)`."""

from __future__ import annotations

from typing import Any

Lines = dict[tuple[Any, ...], int]  # a YAML location (keys and list indexes) -> its line number


def line_of(lines: Lines, loc: tuple[Any, ...]) -> int | None:
    """The YAML line of `loc`, or of its nearest parent that has one."""
    for n in range(len(loc), -1, -1):
        if tuple(loc[:n]) in lines:
            return lines[tuple(loc[:n])]
    return None


def format_problem(file: str, lines: Lines, loc: tuple[Any, ...], msg: str, hint: str = "") -> str:
    """One problem with where it is (file and line), which key, and the fix when there is one."""
    line = line_of(lines, loc)
    where = f"{file}:{line}" if line else file
    key = ".".join(str(p) for p in loc) or "(top level)"
    text = f"{where}: {key}: {msg}"
    return f"{text} (fix: {hint})" if hint else text
