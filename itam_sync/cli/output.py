"""How commands print: consoles that keep whole lines when piped, `--format table|json|csv`, and English.

Rich wraps at 80 columns when stdout is not a terminal; a report piped to a file or `grep` must keep whole
lines, so `out_console()` is as wide as its content there. Every command that prints a table also offers
`--format json|csv` (`--json` stays as an alias), written by `emit_rows`.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console

from itam_sync.model.csv_safety import csv_cell

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("table", "json", "csv")
PIPE_WIDTH = 10_000  # wide enough that no table or line is wrapped when the output is not a terminal


def out_console() -> Console:
    """The console for a command's output (stdout): a terminal's width, or unwrapped lines in a pipe or file."""
    probe = Console(highlight=False)
    if probe.is_terminal:
        return Console(highlight=False, soft_wrap=True)
    return Console(highlight=False, soft_wrap=True, width=PIPE_WIDTH)


def err_console() -> Console:
    """The console for warnings, errors and progress (stderr); messages are never wrapped mid-line."""
    probe = Console(stderr=True, highlight=False)
    width = None if probe.is_terminal else PIPE_WIDTH
    return Console(stderr=True, highlight=False, soft_wrap=True, width=width)


def format_options(fn: F) -> F:
    """`--format table|json|csv` and its alias `--json` (for commands that had it)."""
    fn = click.option("--json", "as_json", is_flag=True,
                      help="Machine-readable JSON (the same as --format json).")(fn)
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                        help="table for people; json or csv for programs and spreadsheets.")(fn)


def chosen_format(fmt: str, as_json: bool) -> str:
    """The format asked for: --json wins over the default table."""
    return "json" if as_json else fmt


def emit_rows(rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str] | None = None) -> None:
    """`rows` as JSON (a list of objects, as `--json` always printed) or CSV (a header, one line per row;
    nested values as JSON text, lists joined with ';', text that a spreadsheet would run escaped)."""
    if fmt == "json":
        click.echo(json.dumps(list(rows), indent=2, default=str))
        return
    cols = list(columns or (rows[0].keys() if rows else []))
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(cols)
    for r in rows:
        writer.writerow([_csv_value(r.get(c)) for c in cols])
    sys.stdout.flush()


def _csv_value(v: Any) -> Any:
    if isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, dict | list) for x in v)):
        return csv_cell(json.dumps(v, default=str, sort_keys=True))
    return csv_cell(v)


def plural(n: int, noun: str, many: str | None = None) -> str:
    """'1 row', '2 rows', '0 entities' (give `many` for irregular nouns: plural(n, 'entity', 'entities'))."""
    if n == 1:
        return f"{n} {noun}"
    if many is None:
        many = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else (
            noun + "es" if noun.endswith(("s", "x", "ch", "sh")) else noun + "s")
    return f"{n:,} {many}"


def article(noun: str) -> str:
    """'an asset', 'a person', 'a subscription'."""
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun
