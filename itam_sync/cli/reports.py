"""`itam-sync report`: the ITAM reports (itam_sync/reports.py) as a table, JSON or CSV."""

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
from itam_sync.insight.reports import ReportResult, list_reports, run_report

log = logging.getLogger(__name__)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ", ".join(map(str, v))
    if isinstance(v, float):
        return f"{v:,.2f}".rstrip("0").rstrip(".") if v != int(v) else f"{v:,.0f}"
    return str(v)


def print_report(result: ReportResult, out: Console) -> None:
    """A report as a rich table, then its notes."""
    params = ", ".join(f"{k} {v}" for k, v in result.params.items())
    table = Table(title=f"{result.title} ({len(result.rows)} rows{', ' + params if params else ''})")
    for c in result.columns:
        table.add_column(c, overflow="fold")
    for r in result.as_dicts():
        table.add_row(*(_cell(r[c]) for c in result.columns))
    out.print(table)
    for n in result.notes:
        out.print(f"note: {n}", markup=False)


@click.command("report")
@config_option
@click.argument("name", required=False)
@click.option("--list", "list_only", is_flag=True, help="List the reports and what --days means for each.")
@click.option("--days", type=int, default=None, help="The report's window in days (see --list).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="File (default stdout).")
@click.option("--now", "now_text", default=None, metavar="TIME",
              help="Evaluate as of this time instead of the clock (YYYY-MM-DD[THH:MM:SSZ]), for stale/windows.")
@handle_errors
def report(config_path: str, name: str | None, list_only: bool, days: int | None, fmt: str, output: str | None,
           now_text: str | None) -> None:
    """Run report NAME (coverage-gaps, stale-devices, offboarding, unowned, warranty, renewals, seats, spend,
    kpis) over the golden records; `--list` describes them."""
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
        result = run_report(store, settings, name, days=days, now=now)
    finally:
        store.close()
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
