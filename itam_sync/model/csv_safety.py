"""Spreadsheet-safe CSV cells: the one place exports and reports turn a value into a CSV cell.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read as a formula by Excel,
LibreOffice and Google Sheets, so a device model or a job title fed by a source (`=HYPERLINK(...)`,
`=cmd|' /C calc'!A0`) would run when someone opens the export. Such text cells get a leading single quote
(OWASP "CSV Injection"): spreadsheets show the text as typed and run nothing. Real numbers (int and float
values, negative ones included) stay numbers: only text is escaped.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(text: str) -> str:
    """`text` prefixed with a single quote when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: None -> "", a list joined with ';', numbers as they are, text made formula-safe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | Decimal):
        return value
    if isinstance(value, list):
        return escape_formula(";".join(map(str, value)))
    return escape_formula(str(value))
