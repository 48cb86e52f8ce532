"""Read-only commands: runs, conflicts, log, explain, export, summary, quarantine.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from itam_sync.cli.common import (
    ENTITY_NAMES,
    _short,
    config_option,
    handle_errors,
    load_config,
    log_line,
    open_store,
    print_log,
)
from itam_sync.model.canonical import FIELDS, EntityType
from itam_sync.model.csv_safety import csv_cell
from itam_sync.settings import Settings

log = logging.getLogger(__name__)


@click.command()
@config_option
@click.option("--limit", default=20, show_default=True)
@click.option("--connector", default=None, help="Only this connector's runs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def runs(config_path: str, limit: int, connector: str | None, as_json: bool) -> None:
    """List sync runs: mode, status, counts, timings and errors."""
    settings = load_config(config_path)
    with open_store(settings).begin() as repo:
        rows = repo.runs.list_runs(limit, connector)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    # Compact columns (an 80-column terminal fits them); each error follows the table in full.
    table = Table(title="runs", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("id", "connector", "mode", "status", "started (UTC)", "secs", "seen", "changed"):
        table.add_column(col, justify="right" if col in ("id", "secs", "seen", "changed") else "left")
    for r in rows:
        streams = [v for k, v in r["counts"].items() if not k.startswith("_") and isinstance(v, dict)]
        table.add_row(str(r["id"]), r["connector"], {"incremental": "incr"}.get(r["mode"], r["mode"]),
                      r["status"] + (" *" if r["error"] else ""), (r["started_at"] or "")[5:16].replace("T", " "),
                      f"{r['duration_s']:.1f}" if r["duration_s"] is not None else "",
                      str(sum(s.get("seen", 0) for s in streams)),
                      str(sum(s.get("changed", 0) + s.get("new", 0) for s in streams)))
    out = Console(highlight=False, soft_wrap=True)
    out.print(table)
    # Errors in full, one per line: they say what to do, and a narrow table column would cut that off.
    for r in rows:
        if r["error"]:
            out.print(f"run {r['id']} ({r['connector']}, {r['status']}): {r['error']}", markup=False)

@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def conflicts(config_path: str, as_json: bool) -> None:
    """List refused identity links (records that share a key with an entity that contradicts them)."""
    settings = load_config(config_path)
    with open_store(settings).begin() as repo:
        rows = repo.conflicts.list_conflicts()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"open conflicts ({len(rows)})")
    for col in ("id", "record", "key", "linked to", "refused entity", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), f"{r['connector']}/{r['stream']}/{r['source_key']}", r["key"],
                      str(r["entity_id"] or ""), str(r["other_entity_id"]), r["reason"])
    Console(highlight=False).print(table)
    if rows:
        Console(highlight=False).print("Resolve with `itam-sync link RECORD ENTITY --reason ...` or "
                                       "`itam-sync unlink RECORD --reason ...`.")

@click.command("log")
@config_option
@click.option("--entity", default=None, help="Entity id or key (serial_number:..., email:...).")
@click.option("--since", default=None, help="ISO time, e.g. 2026-11-01 or 2026-11-01T12:00:00Z.")
@click.option("--source", default=None, help="Only rows decided by this source.")
@click.option("--run", "run_id", type=int, default=None, help="Only rows of this run.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def log_cmd(config_path: str, entity: str | None, since: str | None, source: str | None, run_id: int | None,
            limit: int, as_json: bool) -> None:
    """The merge log: one row per changed golden field, identity link, merge, split or conflict."""
    from itam_sync.engine.operations import find_entity

    settings = load_config(config_path)
    with open_store(settings).begin() as repo:
        eid = find_entity(repo, entity) if entity else None
        rows = repo.log.log_rows(entity_id=eid, since=since, source=source, run_id=run_id, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    print_log(rows, Console(highlight=False))

@click.command()
@config_option
@click.argument("entity")
@click.option("--json", "as_json", is_flag=True)
@click.option("--as-of", "as_of", default=None, metavar="TIME",
              help="Show it as it stood then (YYYY-MM-DD = end of that day, or YYYY-MM-DDTHH:MM:SSZ), from the "
                   "merge log.")
@handle_errors
def explain(config_path: str, entity: str, as_json: bool, as_of: str | None) -> None:
    """Why ENTITY (id, serial, e-mail or key) says what it says: per field, winner, age and losers."""
    from dataclasses import asdict

    from itam_sync.audit.explain import explain as do_explain

    settings = load_config(config_path)
    if as_of:
        _explain_as_of(settings, entity, as_of, as_json)
        return
    ex = do_explain(open_store(settings), settings, entity)
    if as_json:
        click.echo(json.dumps(asdict(ex), indent=2, default=str))
        return
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"[bold]{ex.entity_type} {ex.entity_id}[/bold] ({ex.status})")
    for r in ex.records:
        out.print(f"  fed by {r['record']}" + (" [missing]" if r["missing"] else "") + f", seen {r['observed_at']}")
    for f in ex.fields:
        out.print(f"{f.field} = {_short(f.value)}", markup=False, soft_wrap=True)
        out.print(f"    won: {f.source}, {f.age} old; {f.rule}: {f.rule_detail}", markup=False, soft_wrap=True)
        for c in f.competitors:
            out.print(f"    lost: {c['source']} = {_short(c['value'])} ({c['age']} old; {c['why_lost']})",
                      markup=False, soft_wrap=True)
    if ex.history:
        out.print("\nhistory (newest last):")
        for r in ex.history:
            out.print("  " + log_line(r), markup=False, soft_wrap=True)

@click.command()
@config_option
@click.option("--entity", "entity_name", type=click.Choice(sorted(ENTITY_NAMES)), required=True)
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="File (default stdout).")
@click.option("--as-of", "as_of", default=None, metavar="TIME",
              help="The records as they stood then (YYYY-MM-DD = end of that day), rebuilt from the merge log.")
@handle_errors
def export(config_path: str, entity_name: str, fmt: str, output: str | None, as_of: str | None) -> None:
    """Export golden records with their fields and the source records that feed them."""
    settings = load_config(config_path)
    etype = ENTITY_NAMES[entity_name]
    fields = list(FIELDS[etype])
    if as_of:
        from itam_sync.audit.chain import parse_time

        as_of = parse_time(as_of, end_of_day=True)  # a bad time fails here, before the output file is opened
    fh = open(output, "w", newline="") if output else sys.stdout  # noqa: SIM115 - stdout is not ours to close
    try:
        if as_of:
            _export_as_of(settings, etype, fields, fmt, fh, as_of)
            return
        with open_store(settings).begin() as repo:
            batch: list[tuple[int, dict[str, Any], str]] = []
            writer = csv.writer(fh) if fmt == "csv" else None
            if writer:
                writer.writerow(["id", "status", *fields, "sources"])
            else:
                fh.write("[")
            first = True

            def flush() -> None:
                nonlocal first
                keys = repo.entities.source_keys_of([b[0] for b in batch])
                for eid, golden, status in batch:
                    if writer:
                        writer.writerow([eid, status,
                                         *(csv_cell(golden[f][0] if f in golden else None) for f in fields),
                                         ";".join(keys.get(eid, []))])
                    else:
                        rec = {"id": eid, "type": etype.value, "status": status,
                               "fields": {f: golden[f][0] for f in fields if f in golden},
                               "field_sources": {f: golden[f][1] for f in fields if f in golden},
                               "sources": keys.get(eid, [])}
                        fh.write(("\n" if first else ",\n") + json.dumps(rec))
                        first = False
                batch.clear()

            for item in repo.entities.iter_entities(etype.value):
                batch.append(item)
                if len(batch) >= 1000:
                    flush()
            flush()
            if not writer:
                fh.write("\n]\n")
    finally:
        if output:
            fh.close()

def _export_as_of(settings: Settings, etype: EntityType, fields: list[str], fmt: str, fh: Any, as_of: str) -> None:
    """`export --as-of`: the same shape as `export`, from the merge log (records carry no missing marks)."""
    from itam_sync.audit.timetravel import iter_as_of

    writer = csv.writer(fh) if fmt == "csv" else None
    if writer:
        writer.writerow(["id", "status", *fields, "sources"])
    else:
        fh.write("[")
    first = True
    for ent in iter_as_of(open_store(settings), etype.value, as_of):
        vals = ent.fields
        if writer:
            writer.writerow([ent.entity_id, ent.status,
                             *(csv_cell(vals[f].value if f in vals else None) for f in fields),
                             ";".join(ent.records)])
        else:
            rec = {"id": ent.entity_id, "type": etype.value, "status": ent.status,
                   "fields": {f: vals[f].value for f in fields if f in vals},
                   "field_sources": {f: vals[f].source for f in fields if f in vals},
                   "sources": ent.records}
            fh.write(("\n" if first else ",\n") + json.dumps(rec))
            first = False
    if not writer:
        fh.write("\n]\n")

def _explain_as_of(settings: Settings, entity: str, as_of_text: str, as_json: bool) -> None:
    """`explain --as-of`: value, source and rule of each field as logged at that time."""
    from dataclasses import asdict

    from itam_sync.audit.chain import parse_time
    from itam_sync.audit.timetravel import explain_as_of

    ex = explain_as_of(open_store(settings), entity, parse_time(as_of_text, end_of_day=True))
    if as_json:
        click.echo(json.dumps(asdict(ex), indent=2, default=str))
        return
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"[bold]{ex.entity_type} {ex.entity_id}[/bold] as of {ex.as_of} ({ex.status})")
    if ex.merged_into:
        out.print(f"  merged into entity {ex.merged_into['entity']} at {ex.merged_into['at']}; the fields below are "
                  "its own up to then")
    for m in ex.merged_from:
        out.print(f"  entity {m['entity']} was merged into it at {m['at']}")
    for m in ex.merged_later:
        out.print(f"  entity {m['entity']} was still separate then (merged into it at {m['at']})")
    for rec in ex.records:
        out.print(f"  fed by {rec} (per the merge log)", markup=False)
    out.print(f"  note: {ex.note}", markup=False)
    for f in ex.fields:
        out.print(f"{f.field} = {_short(f.value)}", markup=False, soft_wrap=True)
        who = f", by {f.actor}" if f.actor else ""
        out.print(f"    set by: {f.source or '-'}; {f.rule or '-'}; logged {f.logged_at} (run {f.run_id or '-'}, "
                  f"log #{f.log_id}{who})", markup=False, soft_wrap=True)
    if ex.history:
        out.print(f"\nhistory up to {ex.as_of} (newest last):")
        for r in ex.history:
            out.print("  " + log_line(r), markup=False, soft_wrap=True)

@click.command()
@config_option
@click.option("--lines", default=12, show_default=True, help="How many merge-log lines to show.")
@handle_errors
def summary(config_path: str, lines: int) -> None:
    """Counts of assets, people and subscriptions, open conflicts and the latest interesting log lines."""
    settings = load_config(config_path)
    out = Console(highlight=False)
    with open_store(settings).begin() as repo:
        counts = repo.entities.counts()
        conflict_rows = repo.log.log_rows(action="conflict", limit=lines // 3 or 1)
        # The most telling decisions first: freshness windows and overrides, then field-specific orders.
        recent = repo.log.log_rows(action="set", limit=5000)
        decided = []
        for prefix in ("freshness", "manual", "precedence:field", "precedence:default"):
            decided += [r for r in recent if (r["rule"] or "").startswith(prefix)]
        decided = decided[:lines]
        merges = repo.log.log_rows(action="merge", limit=lines // 3 or 1)
    ent = counts["entities"]
    table = Table(title="itam-sync summary")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, key in (("assets", "asset"), ("people", "person"), ("subscriptions", "subscription")):
        table.add_row(label, str(ent.get(f"{key}:active", 0)) + (
            f" (+{ent[f'{key}:missing']} missing)" if ent.get(f"{key}:missing") else ""))
    table.add_row("source records", str(counts["source_records"]))
    table.add_row("open conflicts", str(counts["open_conflicts"]))
    table.add_row("quarantined records", str(counts["quarantined"]))
    table.add_row("merge-log rows", str(counts["merge_log_rows"]))
    out.print(table)
    for title, rows in (("fields decided between competing sources", decided), ("entities joined", merges),
                        ("refused links (see `itam-sync conflicts`)", conflict_rows)):
        if rows:
            out.print(f"\n[bold]merge log: {title}[/bold]")
            for r in rows:
                out.print("  " + log_line(r), soft_wrap=True, markup=False)
    out.print("\nNext: `itam-sync explain SERIAL_OR_ID`, `itam-sync log`, `itam-sync conflicts`, "
              "`itam-sync export --entity assets`.")

@click.command()
@config_option
@click.option("--run", "run_id", type=int, default=None)
@click.option("--limit", default=50, show_default=True)
@handle_errors
def quarantine(config_path: str, run_id: int | None, limit: int) -> None:
    """Records that could not be mapped, with the reason."""
    settings = load_config(config_path)
    with open_store(settings).begin() as repo:
        rows = repo.quarantine.list_quarantine(run_id, limit)
    table = Table(title="quarantine")
    for col in ("id", "run", "connector", "stream", "source key", "reason"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*(str(x) if x is not None else "" for x in r))
    Console(highlight=False).print(table)
