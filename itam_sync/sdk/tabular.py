"""Rows of CSV and XLSX files as a spreadsheet user sees them, for connectors that import exported files.

`csv_rows` and `xlsx_rows` yield (1-based line or row number, cell values); `cell_text` renders a cell the
way a CSV export of the same sheet would hold it; `header_names` turns a header row into record keys.
CSV needs only the standard library; XLSX needs openpyxl (`pip install itam-sync[xlsx]`), imported on first use.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable
from typing import Any

from itam_sync.sdk.connector import ConnectorError
from itam_sync.sdk.extras import MissingExtra

Row = tuple[int, list[Any]]  # (1-based row or line number, cell values)
# A formula that failed, never data: Excel's error values (openpyxl.cell.cell.ERROR_CODES, without openpyxl).
EXCEL_ERRORS = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"})


def normalize_header(name: str) -> str:
    """'PO Number' -> 'po_number', 'Serial #' -> 'serial', 'Cost (EUR)' -> 'cost_eur'."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def cell_text(value: Any) -> str:
    """An XLSX cell as the text a CSV export would hold: ISO dates, integers without '.0', '' for empty."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def header_names(cells: list[Any], normalize: bool = True) -> list[str]:
    """Record keys from a header row: snake_case (unless `normalize` is off), trailing unnamed columns
    dropped (",," at the end of every line is no data), a repeated name suffixed `_2`, `_3` ..."""
    names = [cell_text(c).strip() for c in cells]
    if normalize:
        names = [normalize_header(h) for h in names]
    while names and not names[-1]:
        names.pop()
    seen: dict[str, int] = {}
    out = []
    for h in names:  # a repeated column name gets a suffix instead of overwriting the first
        seen[h] = seen.get(h, 0) + 1
        out.append(h if seen[h] == 1 or not h else f"{h}_{seen[h]}")
    return out


def csv_rows(data: bytes, encoding: str = "utf-8-sig", delimiter: str = ",") -> Iterable[Row]:
    """The lines of a CSV file with their line numbers (a quoted value may span lines)."""
    reader = csv.reader(io.StringIO(data.decode(encoding), newline=""), delimiter=delimiter)
    for cells in reader:
        yield reader.line_num, list(cells)


def xlsx_rows(data: bytes, sheet: str | None = None) -> Iterable[Row]:
    """The rows of one sheet (default the first) of an XLSX workbook, values as cached by Excel.
    Without openpyxl: a config error saying which extra to install (CSV files still work)."""
    try:
        from openpyxl import load_workbook
    except ImportError as exc:
        raise ConnectorError(f"reading XLSX files {MissingExtra('xlsx')} (or export the sheet as CSV)",
                             kind="config") from exc
    book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise ConnectorError(f"no sheet {sheet!r} (sheets: {', '.join(book.sheetnames)}); "
                                 "fix settings.sheet", kind="config")
        ws = book[sheet] if sheet is not None else book.worksheets[0]
        for n, values in enumerate(ws.iter_rows(values_only=True), 1):
            yield n, list(values)
    finally:
        book.close()
