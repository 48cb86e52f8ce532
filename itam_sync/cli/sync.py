"""Commands that configure and move data: validate, init, run, check, merge, connectors.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

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
from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import RunResult, SyncFailed, merge_pending, run_connector
from itam_sync.engine.workers import WorkerPool
from itam_sync.insight.reports import keep_kpi_snapshot
from itam_sync.settings import ConfigError, load_settings

log = logging.getLogger(__name__)


@click.command()
@config_option
@handle_errors
def validate(config_path: str) -> None:
    """Check a config file and its mappings; every problem is reported with file, line and a fix."""
    loaded = load_settings(config_path)
    settings = loaded.settings
    problems = _config_problems(config_path, loaded, Registry())
    err = err_console()
    for w in loaded.warnings + loaded.secret_warnings:
        if not any(w.split(": ", 2)[-1] in p for p in problems):  # an error now, not also a warning
            err.print(f"[yellow]warning:[/yellow] {escape(w)}")
    if problems:
        for p in problems:
            err.print(f"[red]error:[/red] {escape(p)}")  # escape: "[a-z]" in a message is not rich markup
        sys.exit(2)
    out_console().print(f"[green]ok[/green] {escape(config_path)}: {plural(len(settings.connectors), 'connector')}, "
                        f"store {escape(settings.store.url)}")

def _config_problems(config_path: str, loaded: Any, registry: Registry) -> list[str]:
    """What `validate` reports and `run` refuses to start on: connectors, mappings, precedence, sinks."""
    from itam_sync.engine.preflight import preflight
    from itam_sync.publish.sinks.registry import sink_config_problems

    return (preflight(loaded.settings, registry, config_path=config_path, lines=loaded.lines)
            + sink_config_problems(config_path, loaded))

@click.command()
@click.option("--connectors", "wanted", default=None, metavar="TYPE,TYPE...",
              help="Write a config for exactly these connector types (e.g. okta,intune,jamf,crowdstrike,bamboohr,"
                   "procurement), with their precedence filled in. Default: a disabled block for every type.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@handle_errors
def init(wanted: str | None, output: str | None, force: bool) -> None:
    """Write a commented starter config: for the connector types you name, or a block for every type.

    Then replace the placeholders (tenant ids, URLs), export the secrets it references and run
    `itam-sync validate -c FILE`; it names each placeholder still left.
    """
    import difflib

    from itam_sync.insight.base import ROLE_BY_TYPE
    from itam_sync.settings.starter import starter_config

    registry = Registry()
    types = [t.strip() for t in wanted.split(",") if t.strip()] if wanted else []
    for t in types:
        if t not in registry.names():
            close = difflib.get_close_matches(t, registry.names(), n=1)
            raise OperationError(f"--connectors: no connector type {t!r}" + (f" (fix: did you mean {close[0]!r}?)"
                                 if close else f"; installed: {', '.join(registry.names())}"))
    if len(set(types)) != len(types):
        raise OperationError("--connectors: name each type once (two instances of a type: copy its block and "
                             "give the copy its own name)")
    if wanted is not None and not types:
        raise OperationError("--connectors: give at least one connector type, e.g. --connectors okta,intune")
    text = starter_config(registry.names(), registry.get, connectors=types or None,
                          roles={t: r for t, r in ROLE_BY_TYPE.items() if t in types})
    if output is None:
        click.echo(text, nl=False)
        return
    path = Path(output)
    if path.exists() and not force:
        raise OperationError(f"{output} exists; use --force to overwrite")
    path.write_text(text)
    click.echo(f"wrote {output}")

@click.command()
@config_option
@click.option("--connector", "connectors", multiple=True, help="Run only this connector (repeatable).")
@click.option("--full", is_flag=True, help="Full resync: read everything and mark unseen records missing.")
@click.option("--allow-shrink", is_flag=True, help="Let a full run mark more than the deletion guard missing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display and no summary table.")
@click.option("--no-wait", is_flag=True, help="If another process (e.g. `serve`) is syncing a connector, say who "
              "and exit 1 instead of waiting for it.")
@click.option("--accept-drops", is_flag=True, help="A full run whose fields' fill rates dropped (a deliberate change "
              "at the source) ends success instead of degraded and becomes the new baseline.")
@format_options
@handle_errors
def run(config_path: str, connectors: tuple[str, ...], full: bool, allow_shrink: bool, quiet: bool,
        no_wait: bool, accept_drops: bool, fmt: str = "table", as_json: bool = False) -> None:
    """Sync connectors (all enabled ones by default) into the store, then merge.

    The whole config is checked first, as `validate` does: with any problem nothing syncs (exit 2). A
    connector that another process is syncing right now (`serve`, another shell) is waited for, with a
    message naming the holder of its lease; --no-wait reports the holder and exits 1 instead.

    Exit status: 0 all runs succeeded (or were guarded: see the message), 1 a run failed, 2 the config has
    problems, 3 a run ended degraded: its data was staged, but broke a data contract (a mapped source field
    absent from every record, a fill rate that dropped, a file that could not be read to its end).
    """
    from itam_sync.engine.runner import ConnectorBusy
    from itam_sync.store.leases import LeaseInfo

    flags = click.get_current_context().find_root().obj or {}
    quiet = quiet or bool(flags.get("quiet"))
    settings = load_config(config_path, secrets=True)
    _print_run_errors_once(flags)
    names = list(connectors) or [c.name for c in settings.connectors if c.enabled]
    for n in names:
        settings.connector(n)
    registry = Registry()
    problems = _config_problems(config_path, load_settings(config_path), registry)
    if problems:
        raise ConfigError([*problems, "nothing was synced: fix these (`itam-sync validate` lists them) and run "
                                      "again"])
    store = open_store(settings)
    console = err_console()
    results: list[RunResult] = []
    failed: list[str] = []
    # JSON logs share stderr with the progress display: machines get the log lines only.
    show = not quiet and console.is_terminal and flags.get("log_format") != "json"
    # One pool of worker processes for every connector and the merge (started only by a big enough run).
    with WorkerPool(settings.sync.workers) as pool, Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} records"),
            TextColumn("{task.fields[pages]}"), TextColumn("{task.fields[waits]}"), TimeElapsedColumn(),
            console=console, disable=not show) as progress:
        tasks: dict[str, Any] = {}
        http: dict[str, list[float]] = {}  # conn/stream -> [pages, rate-limit waits, seconds waited]

        def task(conn: str, stream: str) -> Any:
            key = f"{conn}/{stream}"
            if key not in tasks:
                tasks[key] = progress.add_task(key, total=None, pages="", waits="")
                http[key] = [0, 0, 0.0]
            return tasks[key], http[key]

        def on_progress(conn: str, stream: str, seen: int) -> None:
            progress.update(task(conn, stream)[0], completed=seen)

        def on_http(conn: str, stream: str, kind: str, value: float) -> None:
            tid, h = task(conn, stream)
            if kind == "page":
                h[0] += 1
            elif kind == "rate_limit_wait":
                h[1] += 1
                h[2] += value
            progress.update(tid, pages=f"{h[0]:,.0f} pages" if h[0] else "",
                            waits=f"rate-limited {h[1]:.0f}x ({h[2]:.0f} s)" if h[1] else "")

        def on_lease_wait(holder: LeaseInfo) -> None:
            console.print(f"[yellow]waiting:[/yellow] {holder.name.split(':', 1)[-1]} is being synced by "
                          f"{holder.describe()}; this run starts when that one ends (Ctrl-C to give up)")

        for n in names:
            try:
                results.append(run_connector(settings, n, full=full, allow_shrink=allow_shrink, store=store,
                                             registry=registry, progress=on_progress, merge=False,
                                             lease_wait=0 if no_wait else None, on_lease_wait=on_lease_wait,
                                             on_http=on_http, accept_drops=accept_drops, pool=pool))
            except ConnectorBusy as exc:
                console.print(f"[red]busy:[/red] {exc}")
                failed.append(n)
            except SyncFailed as exc:
                console.print(f"[red]error:[/red] {exc}")
                failed.append(n)
        # One merge after every connector staged: an entity seen by several sources is merged once.
        merge_task = progress.add_task("merging golden records", total=None, pages="", waits="")
        # --no-wait holds for the merge too: a locked store must end the run with an error, not hang it.
        merged = merge_pending(settings, store, lease_wait=0 if no_wait else None, pool=pool,
                               on_lease_wait=lambda h: console.print(
                                   f"[yellow]waiting:[/yellow] another process is merging ({h.describe()})"))
        progress.update(merge_task, completed=merged.entities)
        if merged.changed_entities:
            keep_kpi_snapshot(store, settings)  # one point of the dashboard's trend per sync that changed things
    # Short headers and a light box keep the table readable in an 80-column terminal.
    table = Table(title=f"sync runs ({'full' if full else 'incremental'})", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False,
                  caption="records new, changed (chg), unchanged (same), quarantined, marked missing (gone)")
    for col in ("connector", "status", "seen", "new", "chg", "same", "quar", "gone", "confl", "secs"):
        table.add_column(col, justify="left" if col in ("connector", "status") else "right", no_wrap=True)
    for r in results:
        streams = [v for k, v in r.counts.items() if not k.startswith("_")]
        tot = r.counts.get("_total", {})
        table.add_row(r.connector, r.status,
                      *(str(sum(s.get(k, 0) for s in streams)) for k in ("seen", "new", "changed", "unchanged",
                                                                          "quarantined")),
                      str(tot.get("missing_marked", 0)), str(tot.get("conflicts", 0)), f"{r.duration_s:.1f}")
    fmt = chosen_format(fmt, as_json)
    if fmt != "table":  # one row per connector run (and, in JSON, what the merge did)
        rows = [{"connector": r.connector, "run_id": r.run_id, "mode": r.mode, "status": r.status,
                 **{k: sum(s.get(k, 0) for n, s in r.counts.items() if not n.startswith("_") and isinstance(s, dict))
                    for k in ("seen", "new", "changed", "unchanged", "quarantined")},
                 "missing_marked": r.counts.get("_total", {}).get("missing_marked", 0),
                 "conflicts": r.counts.get("_total", {}).get("conflicts", 0),
                 "duration_s": round(r.duration_s, 3), "message": r.message} for r in results]
        if fmt == "csv":
            emit_rows(rows, fmt)
        else:
            click.echo(json.dumps({"runs": rows, "merge": merged.as_dict()}, indent=2, default=str))
    elif not quiet and results:
        out_console().print(table)
        out_console().print(f"merged {plural(merged.entities, 'entity', 'entities')}: "
                            f"{merged.changed_entities:,} changed, {plural(merged.log_rows, 'merge-log row')}")
    for r in results:
        if r.status == "guarded":
            console.print(f"[yellow]guarded:[/yellow] {escape(r.connector)}: {escape(r.message)}")
        for w in r.warnings:
            console.print(f"[yellow]degraded:[/yellow] {escape(w)}")
    store.close()
    if failed:
        sys.exit(1)
    if any(r.status == "degraded" or (r.status == "guarded" and r.warnings) for r in results):
        sys.exit(3)

@click.command()
@config_option
@click.option("--connector", "connectors", multiple=True, help="Check only this connector (repeatable).")
@handle_errors
def check(config_path: str, connectors: tuple[str, ...]) -> None:
    """Connect to each source and read one record per stream (no writes); exit 1 if any fails.

    A host that does not resolve, refuses the connection or does not answer fails at once, naming the cause
    and the fix (a sync would retry it); a terminal shows which connector is being checked.
    """
    import time

    from itam_sync.engine.runner import build_connector
    from itam_sync.sdk.connectivity import fail_fast
    from itam_sync.sdk.connector import ConnectorError

    settings = load_config(config_path, secrets=True)
    registry = Registry()
    names = list(connectors) or [c.name for c in settings.connectors if c.enabled]
    for n in names:
        settings.connector(n)
    out = out_console()
    err = err_console()
    flags = click.get_current_context().find_root().obj or {}
    show = err.is_terminal and not flags.get("quiet") and flags.get("log_format") != "json"
    failed = 0
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  disable=not show, transient=True) as progress:
        for i, n in enumerate(names, 1):
            task = progress.add_task(f"checking {n} ({i} of {len(names)}): connecting and reading one record "
                                     "per stream")
            conn = None
            t0 = time.monotonic()
            try:
                conn = build_connector(settings, settings.connector(n), registry)
                with fail_fast():
                    seen = conn.check()
                detail = ", ".join(f"{s}: {'ok' if k else 'empty'}" for s, k in seen.items())
                out.print(f"[green]ok[/green]    {escape(n)}: {escape(detail)} ({time.monotonic() - t0:.1f} s)")
            except (ConnectorError, ConfigError) as exc:
                failed += 1
                out.print(f"[red]fail[/red]  {escape(n)}: {escape(str(exc).splitlines()[0])}")
            finally:
                progress.remove_task(task)
                if conn is not None:
                    conn.close()
    if failed:
        err.print(f"{plural(failed, 'connector')} of {len(names)} failed the check")
        sys.exit(1)

@click.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@format_options
@handle_errors
def merge(config_path: str, dry_run: bool, fmt: str, as_json: bool) -> None:
    """Re-map stored records and re-merge every entity under the current rules (no API calls)."""
    from itam_sync.engine.operations import remerge

    settings = load_config(config_path)
    result = remerge(open_store(settings, read_only=True), settings, dry_run=dry_run)
    stats = result.stats
    fmt = chosen_format(fmt, as_json)
    if fmt != "table":
        fields = [{"field": f, "entities": n, "examples": stats.examples.get(f, [])}
                  for f, n in stats.changed_fields.most_common()]
        if fmt == "csv":
            emit_rows(fields, fmt, ["field", "entities", "examples"])
        else:
            click.echo(json.dumps({"dry_run": dry_run, **stats.as_dict(), "remapped_records": result.remapped_records,
                                   "fields": fields, "remap_errors": result.remap_errors}, indent=2, default=str))
        return
    out = out_console()
    verb = "would change" if dry_run else "changed"
    out.print(f"{plural(stats.entities, 'entity', 'entities')} merged; {stats.changed_entities:,} {verb}; "
              f"{plural(result.remapped_records, 'source record')} re-mapped")
    table = Table(title=f"fields that {verb}")
    for col in ("field", "entities", "examples (entity: old -> new, source, rule)"):
        table.add_column(col)
    for f, n in stats.changed_fields.most_common():
        ex = "; ".join(f"{e['entity']}: {e['old']!r} -> {e['new']!r} ({e['source']}, {e['rule']})"
                       for e in stats.examples.get(f, []))
        table.add_row(f, str(n), ex)
    if stats.changed_fields:
        out.print(table)
    for e in result.remap_errors:
        out.print(f"[yellow]warning:[/yellow] {e}")

class _RunErrorFilter(logging.Filter):
    """Drops the runner's "run N of X failed" log line: `run` prints the same error as one clear line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and str(record.msg).startswith("run %s of %s"))


def _print_run_errors_once(flags: dict[str, Any]) -> None:
    """For this command, a failed connector run is printed once, as `error: sync of X failed ...` (JSON logs
    keep the runner's line: machines read those)."""
    if flags.get("log_format") == "json":
        return
    runner_log, drop = logging.getLogger("itam_sync.engine.runner"), _RunErrorFilter()
    runner_log.addFilter(drop)
    click.get_current_context().call_on_close(lambda: runner_log.removeFilter(drop))


@click.command("connectors")
@handle_errors
def connectors_cmd() -> None:
    """List the installed connector types."""
    reg = Registry()
    echo_plugins(reg.names(), reg.describe)  # a type whose extra is missing: "needs `pip install itam-sync[x]`"
