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
from rich.table import Table

from itam_sync.cli.common import (
    ENTITY_NAMES,
    _short,
    chosen_format,
    config_option,
    emit_rows,
    format_options,
    handle_errors,
    load_config,
    log_line,
    open_store,
    out_console,
    print_log,
    require_store,
)
from itam_sync.model.canonical import FIELDS, EntityType
from itam_sync.model.csv_safety import csv_cell
from itam_sync.settings import Settings

log = logging.getLogger(__name__)
# CSV export columns before the fields: the entity id and its presence (a person also has a `status` field).
EXPORT_HEAD = ["id", "entity_status"]


@click.command()
@config_option
@click.option("--limit", default=20, show_default=True)
@click.option("--connector", default=None, help="Only this connector's runs.")
@click.option("--fields", "fields_run", type=int, default=None, metavar="RUN",
              help="Instead: run RUN's data contract, per stream and mapped field its fill rate (against the last "
                   "successful full run before it) and which source paths did not appear.")
@format_options
@handle_errors
def runs(config_path: str, limit: int, connector: str | None, fields_run: int | None, fmt: str,
         as_json: bool) -> None:
    """List sync runs: mode, status (success, degraded, guarded, failed, interrupted), counts, timings, errors."""
    settings = load_config(config_path)
    if fields_run is not None:
        _fields_table(settings, fields_run, chosen_format(fmt, as_json))
        return
    with open_store(settings, read_only=True).begin() as repo:
        rows = repo.runs.list_runs(limit, connector)
    fmt = chosen_format(fmt, as_json)
    if fmt != "table":
        emit_rows(rows, fmt)
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
    out = out_console()
    out.print(table)
    # Errors in full, one per line: they say what to do, and a narrow table column would cut that off.
    for r in rows:
        if r["error"]:
            out.print(f"run {r['id']} ({r['connector']}, {r['status']}): {r['error']}", markup=False)

@click.command()
@config_option
@format_options
@handle_errors
def conflicts(config_path: str, fmt: str, as_json: bool) -> None:
    """List refused identity links (records that share a key with an entity that contradicts them)."""
    settings = load_config(config_path)
    with open_store(settings, read_only=True).begin() as repo:
        rows = repo.conflicts.list_conflicts()
    fmt = chosen_format(fmt, as_json)
    if fmt != "table":
        emit_rows(rows, fmt)
        return
    table = Table(title=f"open conflicts ({len(rows)})")
    for col in ("id", "record", "key", "linked to", "refused entity", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), f"{r['connector']}/{r['stream']}/{r['source_key']}", r["key"],
                      str(r["entity_id"] or ""), str(r["other_entity_id"]), r["reason"])
    out_console().print(table)
    if rows:
        out_console().print("Resolve with `itam-sync link RECORD ENTITY --reason ...` or "
                                       "`itam-sync unlink RECORD --reason ...`.")

@click.command("log")
@config_option
@click.option("--entity", default=None, help="Entity id or key (serial_number:..., email:...).")
@click.option("--since", default=None, metavar="TIME",
              help="Rows from this time: 2026-11-01, 2026-11-01T12:00:00Z, yesterday, 2d, 12h ...")
@click.option("--source", default=None, help="Only rows decided by this source.")
@click.option("--run", "run_id", type=int, default=None, help="Only rows of this run.")
@click.option("--limit", default=50, show_default=True)
@format_options
@handle_errors
def log_cmd(config_path: str, entity: str | None, since: str | None, source: str | None, run_id: int | None,
            limit: int, fmt: str, as_json: bool) -> None:
    """The merge log: one row per changed golden field, identity link, merge, split, conflict or override.

    Override rows carry the operator's reason (and expiry) in `rule`."""
    from itam_sync.engine.operations import find_entity
    from itam_sync.settings.times import parse_when_iso

    settings = load_config(config_path)
    since_at = parse_when_iso(since, what="--since") if since else None
    with open_store(settings, read_only=True).begin() as repo:
        eid = find_entity(repo, entity) if entity else None
        rows = repo.log.log_rows(entity_id=eid, since=since_at, source=source, run_id=run_id, limit=limit)
    fmt = chosen_format(fmt, as_json)
    if fmt != "table":
        emit_rows(rows, fmt)
        return
    print_log(rows, out_console())

@click.command()
@config_option
@click.argument("entity")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON: every field, its sources, history.")
@click.option("--as-of", "as_of", default=None, metavar="TIME",
              help="Show it as it stood then (YYYY-MM-DD = end of that day, an ISO time, yesterday, 7d ...), "
                   "from the merge log.")
@handle_errors
def explain(config_path: str, entity: str, as_json: bool, as_of: str | None) -> None:
    """Why ENTITY (id, serial, e-mail or key) says what it says: per field, winner, age and losers."""
    from dataclasses import asdict

    from itam_sync.audit.explain import explain as do_explain

    settings = load_config(config_path)
    if as_of:
        _explain_as_of(settings, entity, as_of, as_json)
        return
    ex = do_explain(open_store(settings, read_only=True), settings, entity)
    if as_json:
        click.echo(json.dumps(asdict(ex), indent=2, default=str))
        return
    out = out_console()
    out.print(f"[bold]{ex.entity_type} {ex.entity_id}[/bold] ({ex.status})")
    for r in ex.records:
        out.print(f"  fed by {r['record']}" + (" [missing]" if r["missing"] else "") + f", seen {r['observed_at']}")
    if ex.identity:
        from itam_sync.audit.identity import identity_lines

        out.print("identity (why each record is here; identifiers not used and why):")
        for line in identity_lines(ex.identity):
            out.print(line, markup=False, soft_wrap=True)
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
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True,
              help="json: one object per record (fields, their sources, source records); csv: one row per record.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="File (default stdout).")
@click.option("--as-of", "as_of", default=None, metavar="TIME",
              help="The records as they stood then (YYYY-MM-DD = end of that day, an ISO time, yesterday, 7d ...), "
                   "rebuilt from the merge log.")
@handle_errors
def export(config_path: str, entity_name: str, fmt: str, output: str | None, as_of: str | None) -> None:
    """Export golden records with their fields and the source records that feed them.

    In CSV, `entity_status` is the record's presence (active: a live source sees it; missing); a person's
    employment `status` is a field like the others."""
    settings = load_config(config_path)
    etype = ENTITY_NAMES[entity_name]
    fields = list(FIELDS[etype])
    if as_of:
        from itam_sync.settings.times import parse_when_iso

        # A bad time fails here, before the output file is opened.
        as_of = parse_when_iso(as_of, end_of_day=True, what="--as-of")
    require_store(settings)  # no store: an error naming the path, not an empty export (or a new database)
    fh = open(output, "w", newline="") if output else sys.stdout  # noqa: SIM115 - stdout is not ours to close
    try:
        if as_of:
            _export_as_of(settings, etype, fields, fmt, fh, as_of)
            return
        with open_store(settings, read_only=True).begin() as repo:
            batch: list[tuple[int, dict[str, Any], str]] = []
            writer = csv.writer(fh) if fmt == "csv" else None
            if writer:
                writer.writerow(EXPORT_HEAD + fields + ["sources"])
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
        writer.writerow(EXPORT_HEAD + fields + ["sources"])
    else:
        fh.write("[")
    first = True
    for ent in iter_as_of(open_store(settings, read_only=True), etype.value, as_of):
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

    from itam_sync.audit.timetravel import explain_as_of
    from itam_sync.settings.times import parse_when_iso

    when = parse_when_iso(as_of_text, end_of_day=True, what="--as-of")
    ex = explain_as_of(open_store(settings, read_only=True), entity, when)
    if as_json:
        click.echo(json.dumps(asdict(ex), indent=2, default=str))
        return
    out = out_console()
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
@format_options
@handle_errors
def summary(config_path: str, lines: int, fmt: str, as_json: bool) -> None:
    """Counts of assets, people and subscriptions, open conflicts and the latest interesting log lines."""
    settings = load_config(config_path)
    out = out_console()
    with open_store(settings, read_only=True).begin() as repo:
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
    numbers: list[dict[str, Any]] = []
    for label, key in (("assets", "asset"), ("people", "person"), ("subscriptions", "subscription")):
        numbers.append({"what": label, "count": ent.get(f"{key}:active", 0), "missing": ent.get(f"{key}:missing", 0)})
    for label, key in (("source records", "source_records"), ("open conflicts", "open_conflicts"),
                       ("quarantined records", "quarantined"), ("merge-log rows", "merge_log_rows")):
        numbers.append({"what": label, "count": counts[key], "missing": None})
    fmt = chosen_format(fmt, as_json)
    if fmt == "csv":
        emit_rows(numbers, fmt, ["what", "count", "missing"])
        return
    if fmt == "json":
        click.echo(json.dumps({"counts": numbers, "decided": decided, "merges": merges, "conflicts": conflict_rows},
                              indent=2, default=str))
        return
    table = Table(title="itam-sync summary")
    table.add_column("what")
    table.add_column("count", justify="right")
    for n in numbers:
        table.add_row(n["what"], f"{n['count']:,}" + (f" (+{n['missing']:,} missing)" if n["missing"] else ""))
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
@click.option("--run", "run_id", type=int, default=None, help="Only records this run quarantined (last).")
@click.option("--limit", default=50, show_default=True)
@click.option("--resolved", is_flag=True, help="Also records that map again or are gone (resolved).")
@format_options
@handle_errors
def quarantine(config_path: str, run_id: int | None, limit: int, resolved: bool, fmt: str, as_json: bool) -> None:
    """Records that could not be read or mapped: one line per record, where it is (source key, or file and
    line), how many runs quarantined it and the latest reason."""
    settings = load_config(config_path)
    with open_store(settings, read_only=True).begin() as repo:
        rows = repo.quarantine.list_quarantine(run_id, limit, include_resolved=resolved)
    fmt = chosen_format(fmt, as_json)
    cols = ["id", "run", "connector", "stream", "source_key", "reason", "position", "count", "status", "first_at",
            "last_at"]
    if fmt != "table":
        emit_rows([dict(zip(cols, r, strict=False)) for r in rows], fmt, cols)
        return
    table = Table(title="quarantine")
    for col in ("id", "run", "connector", "stream", "record", "runs", "reason") + (("status",) if resolved else ()):
        table.add_column(col, overflow="fold")
    for r in rows:
        d = dict(zip(cols, r, strict=False))
        table.add_row(str(d["id"]), str(d["run"] or ""), d["connector"], d["stream"],
                      d["source_key"] or d["position"] or "", str(d["count"] or 1), d["reason"],
                      *((d["status"] or "",) if resolved else ()))
    out_console().print(table)


def _fields_table(settings: Settings, run_id: int, fmt: str) -> None:
    """`runs --fields RUN`: per stream and mapped field, the fill rate, the baseline's, absent source paths."""
    from itam_sync.engine.operations import OperationError

    with open_store(settings, read_only=True).begin() as repo:
        found = repo.runs.run_counts(run_id)
        if found is None:
            raise OperationError(f"no run {run_id} (see `itam-sync runs`)")
        connector, mode, status, counts = found
        base = repo.runs.last_successful(connector, "full", before=run_id)
    contract = counts.get("_contract") or []
    if not contract:
        raise OperationError(f"run {run_id} ({connector}, {mode}, {status}) recorded no fill rates (a merge, a "
                             "failed run, or a run from before fill rates were recorded)")
    before = {s["stream"]: s for s in (base[1].get("_contract") or [])} if base else {}
    rows: list[dict[str, Any]] = []
    for s in contract:
        n, prev = s["records"], before.get(s["stream"])
        for name, groups in {**{f: [] for f in s["fields"]}, **s.get("field_paths", {})}.items():
            filled = s["fields"].get(name)
            was = (prev["fields"][name] / prev["records"] if prev and prev.get("records") and name in prev["fields"]
                   else None)
            absent = [p for g in groups for p in g if not s["paths"].get(p)]
            rows.append({"stream": s["stream"], "field": name, "records": n, "filled": filled,
                         "fill": None if filled is None or not n else round(filled / n, 4),
                         "baseline_fill": None if was is None else round(was, 4),
                         "baseline_run": base[0] if base and was is not None else None,
                         "paths": [p for g in groups for p in g], "absent_paths": absent})
    if fmt != "table":
        emit_rows(rows, fmt)
        return
    title = f"run {run_id}: {connector} ({mode}, {status}) fill rates" + (f"; baseline run {base[0]}" if base else "")
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("stream", "field", "records", "filled", "fill", "was", "absent source paths"):
        table.add_column(col, justify="right" if col in ("records", "filled", "fill", "was") else "left")
    for r in rows:
        table.add_row(r["stream"], r["field"], f"{r['records']:,}", "" if r["filled"] is None else f"{r['filled']:,}",
                      "" if r["fill"] is None else f"{r['fill']:.0%}",
                      "" if r["baseline_fill"] is None else f"{r['baseline_fill']:.0%}", ", ".join(r["absent_paths"]))
    out_console().print(table)
