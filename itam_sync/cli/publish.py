"""`itam-sync push | events | remind | sinks`: publish the golden records, the change events and the reminders."""

from __future__ import annotations

import json
import logging
import sys
from typing import IO, Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from itam_sync import clock
from itam_sync.cli.common import (
    chosen_format,
    config_option,
    echo_plugins,
    emit_rows,
    err_console,
    format_options,
    handle_errors,
    load_config,
    open_store,
    out_console,
    plural,
)
from itam_sync.engine.operations import OperationError
from itam_sync.publish.events import TYPES as EVENT_TYPE_NAMES
from itam_sync.publish.events import follow_events, iter_events, resume_file
from itam_sync.publish.sinks.push import PushFailed, PushResult, push_sink
from itam_sync.publish.sinks.registry import SinkRegistry
from itam_sync.settings import ConfigError
from itam_sync.settings.times import parse_when

log = logging.getLogger(__name__)
BODY_CHARS = 240


def _err() -> Console:
    return err_console()


def _print_plan(r: PushResult, full_bodies: bool, out: Console) -> None:
    out.print(f"[bold]{r.sink}[/bold] ({r.sink_type}), dry run: {r.considered:,} {r.unit} changed since merge-log id "
              f"{r.from_id} (up to {r.to_id}); {plural(len(r.planned), 'call')} planned, "
              f"{len(r.outcome.skipped):,} skipped; nothing sent, nothing recorded")
    for c in r.planned:
        out.print(f"  {c.method} {c.url}  {c.summary}", markup=False)
        if c.body is not None:
            body = json.dumps(c.body, indent=2 if full_bodies else None, default=str, ensure_ascii=False)
            if not full_bodies and len(body) > BODY_CHARS:
                body = body[:BODY_CHARS - 3] + "..."
            out.print(f"    body: {body}", markup=False)
    for eid, why in r.outcome.skipped[:20]:
        out.print(f"  skip entity {eid}: {why}", markup=False)


@click.command("push")
@config_option
@click.option("--sink", "sinks", multiple=True, help="Push only this sink (repeatable; default: every enabled one).")
@click.option("--dry-run", is_flag=True, help="Print the calls a push would make; send nothing, change nothing.")
@click.option("--full-bodies", is_flag=True, help="With --dry-run: print request bodies in full.")
@format_options
@handle_errors
def push(config_path: str, sinks: tuple[str, ...], dry_run: bool, full_bodies: bool, fmt: str,
         as_json: bool) -> None:
    """Push what changed since each sink's last successful push (golden records or change events)."""
    settings = load_config(config_path, secrets=True)
    fmt = chosen_format(fmt, as_json)
    names = list(sinks) or [s.name for s in settings.sinks if s.enabled]
    if not names:
        raise OperationError("no sinks configured (add a `sinks:` section; see the README)")
    for n in names:
        settings.sink(n)
    store = open_store(settings)
    registry = SinkRegistry()
    results: list[PushResult] = []
    failed: list[str] = []
    for n in names:
        try:
            results.append(push_sink(settings, n, store=store, registry=registry, dry_run=dry_run))
        except (PushFailed, ConfigError) as exc:
            failed.append(n)
            for line in getattr(exc, "problems", None) or [str(exc)]:
                _err().print(f"[red]error:[/red] {line}")
    store.close()
    out = out_console()
    if fmt == "json":
        click.echo(json.dumps([_as_json(r) for r in results], indent=2, default=str))
    elif fmt == "csv":
        emit_rows([{k: v for k, v in _as_json(r).items() if k not in ("planned", "skipped_detail", "failed_detail")}
                   for r in results], fmt)
    elif dry_run:
        for r in results:
            _print_plan(r, full_bodies, out)
    else:
        # Short headers and a light box keep the table readable in an 80-column terminal.
        table = Table(title="pushes", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                      caption="changed since the last push (chg), created (new), updated (upd), unchanged "
                              "(same), events sent, skipped, refused (fail), HTTP calls")
        for col in ("sink", "status", "log ids", "chg", "new", "upd", "same", "sent", "skip", "fail", "calls",
                    "secs"):
            table.add_column(col, justify="left" if col in ("sink", "status", "log ids") else "right")
        for r in results:
            o = r.outcome
            table.add_row(r.sink, r.status, f"{r.from_id}..{r.to_id}", str(r.considered), str(o.created),
                          str(o.updated), str(o.unchanged), str(o.sent), str(len(o.skipped)), str(len(o.failed)),
                          str(o.calls), f"{r.duration_s:.1f}")
        out.print(table)
    for r in results:
        if r.status == "partial":
            _err().print(f"[yellow]partial:[/yellow] {r.sink}: {r.message}")
    if failed or any(r.status == "partial" for r in results):
        sys.exit(1)


def _as_json(r: PushResult) -> dict[str, Any]:
    return {"sink": r.sink, "type": r.sink_type, "run_id": r.run_id, "status": r.status, "from_log_id": r.from_id,
            "to_log_id": r.to_id, r.unit: r.considered, **r.outcome.as_dict(),
            "skipped_detail": [{"entity": e, "why": w} for e, w in r.outcome.skipped],
            "failed_detail": [{"entity": e, "why": w} for e, w in r.outcome.failed],
            "planned": [{"method": c.method, "url": c.url, "summary": c.summary, "body": c.body} for c in r.planned],
            "duration_s": round(r.duration_s, 3), "message": r.message}


@click.command("events")
@config_option
@click.option("--since-id", type=int, default=None,
              help="Start after this event id (the last one you processed). Default: resume an existing --output "
                   "file after its last event, else start at the beginning.")
@click.option("--follow", "-f", is_flag=True, help="Keep running and print new events as they are committed.")
@click.option("--output", "-o", default="-", show_default=True, help="JSON-lines file to append to, or - for stdout.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="With --follow: seconds between polls.")
@click.option("--type", "types", multiple=True, type=click.Choice(EVENT_TYPE_NAMES),
              help="Only events of this type (repeatable).")
@handle_errors
def events(config_path: str, since_id: int | None, follow: bool, output: str, interval: float,
           types: tuple[str, ...]) -> None:
    """Change events (one JSON object per line, schema in the README), resumable by event id."""
    settings = load_config(config_path)
    if since_id is None and output != "-":
        try:
            since_id = resume_file(output)
        except ValueError as exc:
            raise OperationError(str(exc)) from None
    after = since_id or 0
    store = open_store(settings)
    fh: IO[str] = sys.stdout if output == "-" else open(output, "a", encoding="utf-8")  # noqa: SIM115
    wanted = set(types)
    written = 0
    try:
        stream = (follow_events(store, after, interval=interval, settings=settings) if follow
                  else iter_events(store, after, settings=settings))
        last_flush = clock.now()
        for event in stream:
            if wanted and event.type not in wanted:
                continue
            fh.write(event.to_json() + "\n")
            written += 1
            # Followers and pipes see each event promptly; bulk exports flush at most every second.
            now = clock.now()
            if follow or (now - last_flush).total_seconds() >= 1:
                fh.flush()
                last_flush = now
        fh.flush()
    except KeyboardInterrupt:
        fh.flush()
    finally:
        if fh is not sys.stdout:
            fh.close()
        store.close()
    if output != "-":
        _err().print(f"{plural(written, 'event')} appended to {output} (after id {after})")


@click.command("remind")
@config_option
@click.option("--dry-run", is_flag=True, help="Print the digest that is due; send nothing, record nothing.")
@click.option("--as-of", "as_of", default=None, metavar="TIME",
              help="Evaluate the rules as of this time instead of now, e.g. to preview: YYYY-MM-DD, an ISO time, "
                   "+7d, tomorrow ...")
@handle_errors
def remind(config_path: str, dry_run: bool, as_of: str | None) -> None:
    """Evaluate the reminder rules and send the digest of what is due (once per item per period)."""
    from itam_sync.publish.reminders import run_reminders

    settings = load_config(config_path, secrets=not dry_run)
    now = parse_when(as_of, what="--as-of") if as_of else None
    store = open_store(settings, read_only=dry_run)
    try:
        result = run_reminders(settings, store, dry_run=dry_run, now=now)
    finally:
        store.close()
    out = out_console()
    if dry_run:
        out.print(f"dry run: {plural(result.items, 'item')} match the rules; {result.queued:,} would be queued, "
                  f"{result.resolved:,} closed; nothing sent or recorded")
        for ch, text in result.digests.items():
            out.print(f"\n--- digest via {ch} ---", markup=False)
            out.print(text, markup=False)
        return
    sent = ", ".join(f"{ch}: {n}" for ch, n in result.delivered.items()) or "nothing due"
    out.print(f"run {result.run_id}: {plural(result.items, 'item')} match the rules; {result.queued:,} newly due, "
              f"{result.resolved} closed; delivered {sent}")


@click.command("sinks")
@handle_errors
def sinks_cmd() -> None:
    """List the installed sink types."""
    reg = SinkRegistry()
    echo_plugins(reg.names(), lambda name: reg.get(name).description)


COMMANDS = (push, events, remind, sinks_cmd)
