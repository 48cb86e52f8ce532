"""`itam-sync audit verify|export`: check the merge log's hash chain; export a stretch of it as evidence."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict

import click

from itam_sync.audit.chain import (
    VerifyResult,
    export_evidence,
    parse_anchor,
    verify_file,
    verify_store,
)
from itam_sync.cli.common import config_option, err_console, handle_errors, load_config, open_store, plural
from itam_sync.engine.operations import OperationError
from itam_sync.settings.times import parse_when_iso

log = logging.getLogger(__name__)


@click.group("audit")
def audit() -> None:
    """Verify the merge log's hash chain, and export it as evidence an auditor can keep."""


def _report(res: VerifyResult, what: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(asdict(res), indent=2))
    elif res.ok:
        legacy = f" (+{res.legacy} unchained rows from before the chain)" if res.legacy else ""
        span = f"rows {res.first_id}..{res.head_id}" if res.head_id is not None else "no rows"
        anchor = f"; passes through anchor {res.anchor.split(':')[0]}" if res.anchor else ""
        click.echo(f"ok: {what}: chain intact, {plural(res.checked, 'row')} verified{legacy} ({span}){anchor}")
        if res.head_id is not None:
            click.echo(f"chain head: {res.head_id}:{res.head_hash}")
    if not res.ok and res.problem is not None:
        err = err_console()
        where = f"row {res.problem.row_id}" if res.problem.row_id is not None else what
        err.print(f"[red]error:[/red] {what}: chain broken at {where} ({res.problem.kind}): {res.problem.message}")
        sys.exit(1)


@audit.command("verify")
@config_option
@click.option("--file", "file_path", type=click.Path(dir_okay=False), default=None,
              help="Verify an `audit export` file on its own instead of the store (no config needed).")
@click.option("--anchor", default=None, metavar="ID:HASH",
              help="A row id and hash kept from an earlier export's chain head: the chain must still pass through it.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@handle_errors
def verify(config_path: str, file_path: str | None, anchor: str | None, as_json: bool) -> None:
    """Walk the merge log's hash chain in id order; exit 1 naming the first altered, inserted or deleted row."""
    if file_path:
        if anchor:
            raise OperationError("--anchor applies to the store, not to --file")
        _report(verify_file(file_path), file_path, as_json)
        return
    settings = load_config(config_path)
    store = open_store(settings, read_only=True)
    try:
        res = verify_store(store, parse_anchor(anchor) if anchor else None)
    finally:
        store.close()
    _report(res, "merge log", as_json)


@audit.command("export")
@config_option
@click.option("--since", default=None, metavar="TIME",
              help="From this time: YYYY-MM-DD, an ISO time, yesterday, 30d ... (default: the start).")
@click.option("--until", default=None, metavar="TIME",
              help="Up to this time; a bare date (or today, yesterday) includes that whole day (default: now).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True, help="The JSON-lines file to write.")
@handle_errors
def export(config_path: str, since: str | None, until: str | None, output: str) -> None:
    """Write the merge-log rows between two times as JSON lines: a header (with the hash the first row chains
    from), the rows, and a final line with the chain head. `audit verify --file` checks it on its own."""
    settings = load_config(config_path)
    lo = parse_when_iso(since, what="--since") if since else None
    hi = parse_when_iso(until, end_of_day=True, what="--until") if until else None
    store = open_store(settings, read_only=True)
    try:
        with open(output, "w", encoding="utf-8") as fh:
            res = export_evidence(store, lo, hi, fh, output)
    finally:
        store.close()
    if res.rows:
        click.echo(f"wrote {plural(res.rows, 'row')} ({res.first_id}..{res.last_id}) to {output}")
        click.echo(f"chain head: {res.last_id}:{res.head_hash}  (keep it: `audit verify --anchor` checks it later)")
    else:
        click.echo(f"wrote 0 rows to {output}: no merge-log rows in that range")
