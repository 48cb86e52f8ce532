"""`itam-sync report`: the ITAM reports (itam_sync/insight/) as a table, JSON or CSV."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from itam_sync.audit.chain import parse_time
from itam_sync.cli.common import config_option, handle_errors, load_config, open_store
from itam_sync.engine.operations import OperationError
from itam_sync.insight.reports import ReportFilters, ReportResult, list_reports, run_report

log = logging.getLogger(__name__)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ", ".join(map(str, v))
    if isinstance(v, float):
        return f"{v:,.2f}".rstrip("0").rstrip(".") if v != int(v) else f"{v:,.0f}"
    return str(v)


def _table(title: str, columns: list[str], rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*(_cell(r[c]) for c in columns))
    return table


def print_report(result: ReportResult, out: Console) -> None:
    """A report as a rich table, its totals (when it has them) and its notes."""
    params = ", ".join(f"{k} {v}" for k, v in result.params.items())
    out.print(_table(f"{result.title} ({len(result.rows)} rows{', ' + params if params else ''})", result.columns,
                     result.as_dicts()))
    if result.totals_columns:
        out.print(_table(result.totals_title, result.totals_columns, result.totals_dicts()))
    for n in result.notes:
        out.print(f"note: {n}", markup=False)


@click.command("report")
@config_option
@click.argument("name", required=False)
@click.option("--list", "list_only", is_flag=True, help="List the reports and what --days means for each.")
@click.option("--days", type=int, default=None, help="The report's window in days (see --list).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="File (default stdout).")
@click.option("--as-of", "--now", "now_text", default=None, metavar="TIME",
              help="Evaluate as of this time instead of the clock (YYYY-MM-DD[THH:MM:SSZ]): windows, ages, book "
                   "values.")
@click.option("--totals", "totals_only", is_flag=True,
              help="Output the report's totals (per department, quarter, state ...) instead of its rows.")
@click.option("--kind", default=None, help="Only assets of this kind (laptop, mobile, server ...).")
@click.option("--department", default=None, help="Only this department (the asset's, else its holder's).")
@click.option("--source", default=None, help="Only records fed by this connector instance.")
@click.option("--location", default=None, help="Only assets at this location.")
@handle_errors
def report(config_path: str, name: str | None, list_only: bool, days: int | None, fmt: str, output: str | None,
           now_text: str | None, totals_only: bool, kind: str | None, department: str | None, source: str | None,
           location: str | None) -> None:
    """Run report NAME over the golden records (`--list` names and describes them all)."""
    if list_only:
        table = Table(title="reports")
        for col in ("name", "title", "--days", "what"):
            table.add_column(col, overflow="fold")
        for info in list_reports():
            days_text = (f"{info.days_help}" + (f" (default {info.days_default})" if info.days_default else "")
                         if info.takes_days else "")
            table.add_row(info.name, info.title, days_text, info.description)
        Console(highlight=False, width=160 if not sys.stdout.isatty() else None).print(table)
        return
    if not name:
        raise OperationError("give a report NAME, or --list to see them")
    settings = load_config(config_path)
    now = datetime.fromisoformat(parse_time(now_text).replace("Z", "+00:00")) if now_text else None
    store = open_store(settings)
    try:
        result = run_report(store, settings, name, days=days, now=now,
                            filters=ReportFilters(kind, department, source, location))
    finally:
        store.close()
    if totals_only:
        if not result.totals_columns:
            raise OperationError(f"report {name!r} has no totals")
        result = result.totals_only()
    fh = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout  # noqa: SIM115 - not ours
    try:
        if fmt == "json":
            fh.write(json.dumps(result.to_json(), indent=2, default=str) + "\n")
        elif fmt == "csv":
            result.write_csv(fh)
        else:
            # A terminal folds long cells to its width; a file or pipe gets whole lines.
            wide = output is not None or not sys.stdout.isatty()
            print_report(result, Console(file=fh, highlight=False, width=200 if wide else None))
    finally:
        if output:
            fh.close()
    if output:
        click.echo(f"wrote {len(result.rows)} rows of {name} to {output}", err=True)
