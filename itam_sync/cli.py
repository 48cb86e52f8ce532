"""The `itam-sync` command line."""

from __future__ import annotations

import csv
import difflib
import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.exc import OperationalError

from itam_sync import __version__
from itam_sync.mapping.loader import MappingLoadError
from itam_sync.model.canonical import FIELDS, EntityType
from itam_sync.operations import OperationError
from itam_sync.registry import Registry, UnknownConnectorType
from itam_sync.runner import RunResult, SyncFailed, merge_pending, run_connector
from itam_sync.settings import ConfigError, Settings, load_settings
from itam_sync.store import Store

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
ENTITY_NAMES = {"assets": EntityType.ASSET, "people": EntityType.PERSON, "subscriptions": EntityType.SUBSCRIPTION}

# Annotated: command modules registered at the end of this file import it (an import cycle mypy cannot infer).
config_option: Callable[[F], F] = click.option(
    "--config", "-c", "config_path", envvar="ITAM_SYNC_CONFIG", default="itam-sync.yaml", show_default=True,
    type=click.Path(dir_okay=False), help="Config file (or set ITAM_SYNC_CONFIG).")


def _err(msg: str) -> Console:
    return Console(stderr=True)


def handle_errors(fn: F) -> F:
    """Turn known failures into one clear line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            for p in exc.problems:
                err.print(f"[red]error:[/red] {escape(p)}")
            sys.exit(2)
        except MappingLoadError as exc:
            for p in getattr(exc, "problems", None) or [str(exc)]:
                err.print(f"[red]error:[/red] {escape(p)}")
            sys.exit(2)
        except (OperationError, UnknownConnectorType) as exc:
            err.print(f"[red]error:[/red] {exc}")
            sys.exit(2)
        except SyncFailed as exc:
            err.print(f"[red]error:[/red] {exc}")
            sys.exit(1)
        except OperationalError as exc:  # the store itself failed: say what, not a traceback
            err.print(f"[red]error:[/red] {store_error_line(exc)}")
            sys.exit(1)
    return wrapper  # type: ignore[return-value]


def store_error_line(exc: BaseException) -> str:
    """One line for a database failure, with the likely cause (a full disk, a lock held too long)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    low = text.lower()
    if "disk i/o error" in low or "disk is full" in low or "no space" in low or "file too large" in low:
        hint = ("the disk is full or a file size limit was reached; the failed transaction was rolled back "
                "and the store is unchanged: free space and run again")
    elif "locked" in low or "busy" in low:
        hint = ("another process held the store's write lock longer than the busy timeout (sqlite URL "
                "?timeout=SECONDS, default 60); nothing was changed: run again when it is done")
    else:
        hint = "nothing of the failed transaction was kept"
    return f"store error: {text} ({hint})"


def _settings(path: str) -> Settings:
    loaded = load_settings(path)
    for w in loaded.warnings:
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"[yellow]warning:[/yellow] {w}")
    return loaded.settings


def _store(settings: Settings) -> Store:
    return Store.open(settings.store.url)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="itam-sync")
@click.option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")
@click.option("--quiet", "-q", is_flag=True, help="No progress display or run summary; log errors only.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="ITAM_SYNC_LOG_FORMAT", help="Logs on stderr as text or JSON lines (for log shippers).")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool, log_format: str) -> None:
    """itam-sync: pull assets, people and licences from many systems into one auditable source of truth."""
    from itam_sync.cli_ops import setup_logging

    ctx.obj = {"verbose": verbose, "quiet": quiet, "log_format": log_format}
    setup_logging(verbose, quiet, log_format)


@main.command()
@config_option
@handle_errors
def validate(config_path: str) -> None:
    """Check a config file and its mappings; every problem is reported with file, line and a fix."""
    from itam_sync.mapping.loader import load_mapping

    loaded = load_settings(config_path)
    settings = loaded.settings
    registry = Registry()
    problems: list[str] = []
    for i, c in enumerate(settings.connectors):
        where = f"{config_path}:{loaded.lines.get(('connectors', i, 'type'), '?')}"
        try:
            cls = registry.get(c.type)
        except UnknownConnectorType as exc:
            close = difflib.get_close_matches(c.type, registry.names(), n=1)
            problems.append(f"{where}: connectors.{i}.type: {exc}" + (f" (fix: did you mean {close[0]!r}?)"
                                                                     if close else ""))
            continue
        problems += _connector_settings_problems(config_path, loaded, i, cls)
        mpath = settings.mapping_path(c, cls.mapping_name())
        if not mpath.exists():
            key = ("connectors", i, "mapping") if c.mapping else ("connectors", i, "type")
            problems.append(f"{config_path}:{loaded.lines.get(key, '?')}: {'.'.join(map(str, key))}: mapping file "
                            f"{mpath} not found (fix: create it, or set `mapping:` to an existing file)")
            continue
        try:
            load_mapping(mpath)
        except MappingLoadError as exc:
            problems.extend(getattr(exc, "problems", None) or [str(exc)])
    problems += _precedence_source_problems(config_path, loaded, registry)
    from itam_sync.sinks.registry import sink_config_problems

    problems += sink_config_problems(config_path, loaded)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for w in loaded.warnings:
        if not any(w.split(": ", 2)[-1] in p for p in problems):  # an error now, not also a warning
            err.print(f"[yellow]warning:[/yellow] {escape(w)}")
    if problems:
        for p in problems:
            err.print(f"[red]error:[/red] {escape(p)}")  # escape: "[a-z]" in a message is not rich markup
        sys.exit(2)
    Console(highlight=False).print(f"[green]ok[/green] {config_path}: {len(settings.connectors)} connectors, "
                                   f"store {settings.store.url}")


def _connector_settings_problems(config_path: str, loaded: Any, i: int, cls: Any) -> list[str]:
    """Problems of one connector's `settings`, validated as they will be at run time: references whose
    variable or file exists are resolved first (a `${env:URL}/api` must pass a URL check); a key whose
    reference cannot be resolved here is not judged (the warning about the reference says enough)."""
    from pydantic import ValidationError

    from itam_sync.settings import resolve_secrets

    conn = loaded.settings.connectors[i]
    checked: dict[str, Any] = {}
    unresolved: set[str] = set()
    secrets: list[str] = []
    for key, value in conn.settings.items():
        try:
            checked[key] = resolve_secrets(value, key)
        except ConfigError:
            checked[key], unresolved = value, unresolved | {key}
            continue
        if checked[key] != value and isinstance(checked[key], str) and len(checked[key]) >= 6:
            secrets.append(checked[key])  # (masking shorter values would garble the message, not protect)
    try:
        cls.settings_model.model_validate(checked)
    except ValidationError as exc:
        out = []
        known = list(cls.settings_model.model_fields)
        for e in exc.errors():
            if e["loc"] and e["loc"][0] in unresolved:
                continue
            loc = ("connectors", i, "settings", *e["loc"])
            line = loaded.lines.get(loc) or loaded.lines.get(("connectors", i, "settings")) or "?"
            msg = str(e["msg"]).removeprefix("Value error, ")
            fix = f"see `itam-sync init` for the {conn.type} settings"
            if e["type"] == "extra_forbidden":
                msg = f"unknown {conn.type} setting {str(loc[-1])!r}"
                close = difflib.get_close_matches(str(loc[-1]), known, n=1)
                fix = f"did you mean {close[0]!r}?" if close else f"known settings: {', '.join(known)}"
            for secret in secrets:  # a validator may quote the value it refused: never a resolved secret
                msg = msg.replace(secret, "***")
            out.append(f"{config_path}:{line}: {'.'.join(map(str, loc))}: {msg} (fix: {fix})")
        return out
    return []


def _precedence_source_problems(config_path: str, loaded: Any, registry: Registry) -> list[str]:
    """Precedence sources that name nothing at all (no configured connector, no installed connector type):
    a typo that would silently change which source wins. (Installed types that are not configured yet only
    warn: a config may rank sources it adds later.)"""
    from itam_sync.settings import precedence_orders

    s = loaded.settings
    known = {c.name for c in s.connectors} | {c.type for c in s.connectors} | {"manual"} | set(registry.names())
    problems = []
    for loc, order in precedence_orders(s):
        for src in order:
            if src not in known:
                close = difflib.get_close_matches(src, sorted(known), n=1)
                problems.append(f"{config_path}:{loaded.lines.get(loc, '?')}: {'.'.join(map(str, loc))}: source "
                                f"{src!r} is not a configured connector name or type"
                                + (f" (fix: did you mean {close[0]!r}?)" if close else
                                   " (fix: use a connector instance name, a connector type or `manual`)"))
    return problems


@main.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@handle_errors
def init(output: str | None, force: bool) -> None:
    """Write a commented starter config with a block for every registered connector type."""
    from itam_sync.starter import starter_config

    text = starter_config(Registry())
    if output is None:
        click.echo(text, nl=False)
        return
    path = Path(output)
    if path.exists() and not force:
        raise OperationError(f"{output} exists; use --force to overwrite")
    path.write_text(text)
    click.echo(f"wrote {output}")


@main.command()
@config_option
@click.option("--connector", "connectors", multiple=True, help="Run only this connector (repeatable).")
@click.option("--full", is_flag=True, help="Full resync: read everything and mark unseen records missing.")
@click.option("--allow-shrink", is_flag=True, help="Let a full run mark more than the deletion guard missing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display and no summary table.")
@click.option("--no-wait", is_flag=True, help="If another process (e.g. `serve`) is syncing a connector, say who "
              "and exit 1 instead of waiting for it.")
@handle_errors
def run(config_path: str, connectors: tuple[str, ...], full: bool, allow_shrink: bool, quiet: bool,
        no_wait: bool) -> None:
    """Sync connectors (all enabled ones by default) into the store, then merge.

    A connector that another process is syncing right now (`serve`, another shell) is waited for, with a
    message naming the holder of its lease; --no-wait reports the holder and exits 1 instead.
    """
    from itam_sync.leases import LeaseInfo
    from itam_sync.runner import ConnectorBusy

    flags = click.get_current_context().find_root().obj or {}
    quiet = quiet or bool(flags.get("quiet"))
    settings = _settings(config_path)
    names = list(connectors) or [c.name for c in settings.connectors if c.enabled]
    for n in names:
        settings.connector(n)
    store = _store(settings)
    registry = Registry()
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    results: list[RunResult] = []
    failed: list[str] = []
    # JSON logs share stderr with the progress display: machines get the log lines only.
    show = not quiet and console.is_terminal and flags.get("log_format") != "json"
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} records"),
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
                                             on_http=on_http))
            except ConnectorBusy as exc:
                console.print(f"[red]busy:[/red] {exc}")
                failed.append(n)
            except SyncFailed as exc:
                console.print(f"[red]error:[/red] {exc}")
                failed.append(n)
        # One merge after every connector staged: an entity seen by several sources is merged once.
        merge_task = progress.add_task("merging golden records", total=None, pages="", waits="")
        # --no-wait holds for the merge too: a locked store must end the run with an error, not hang it.
        merged = merge_pending(settings, store, lease_wait=0 if no_wait else None,
                               on_lease_wait=lambda h: console.print(
                                   f"[yellow]waiting:[/yellow] another process is merging ({h.describe()})"))
        progress.update(merge_task, completed=merged.entities)
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
    if not quiet and results:
        Console(highlight=False).print(table)
        Console(highlight=False).print(f"merged {merged.entities} entities: {merged.changed_entities} changed, "
                                       f"{merged.log_rows} merge-log rows")
    for r in results:
        if r.status == "guarded":
            console.print(f"[yellow]guarded:[/yellow] {r.connector}: {r.message}")
    store.close()
    if failed:
        sys.exit(1)


@main.command()
@config_option
@click.option("--connector", "connectors", multiple=True, help="Check only this connector (repeatable).")
@handle_errors
def check(config_path: str, connectors: tuple[str, ...]) -> None:
    """Connect to each source and read one record per stream (no writes); exit 1 if any fails."""
    from itam_sync.runner import build_connector
    from itam_sync.sdk.connector import ConnectorError

    settings = _settings(config_path)
    registry = Registry()
    names = list(connectors) or [c.name for c in settings.connectors if c.enabled]
    out = Console(highlight=False)
    failed = 0
    for n in names:
        conn = None
        try:
            conn = build_connector(settings, settings.connector(n), registry)
            seen = conn.check()
            detail = ", ".join(f"{s}: {'ok' if k else 'empty'}" for s, k in seen.items())
            out.print(f"[green]ok[/green]    {n}: {detail}")
        except (ConnectorError, ConfigError) as exc:
            failed += 1
            out.print(f"[red]fail[/red]  {n}: {str(exc).splitlines()[0]}")
        finally:
            if conn is not None:
                conn.close()
    if failed:
        sys.exit(1)


@main.command()
@config_option
@click.option("--limit", default=20, show_default=True)
@click.option("--connector", default=None, help="Only this connector's runs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def runs(config_path: str, limit: int, connector: str | None, as_json: bool) -> None:
    """List sync runs: mode, status, counts, timings and errors."""
    settings = _settings(config_path)
    with _store(settings).begin() as repo:
        rows = repo.list_runs(limit, connector)
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


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def conflicts(config_path: str, as_json: bool) -> None:
    """List refused identity links (records that share a key with an entity that contradicts them)."""
    settings = _settings(config_path)
    with _store(settings).begin() as repo:
        rows = repo.list_conflicts()
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


@main.command()
@config_option
@click.argument("record")
@click.argument("entity")
@click.option("--reason", required=True, help="Why (kept in the merge log).")
@handle_errors
def link(config_path: str, record: str, entity: str, reason: str) -> None:
    """Pin RECORD (id or connector/stream/key) to ENTITY (id or key); holds across later runs."""
    from itam_sync.operations import link as do_link

    settings = _settings(config_path)
    rid, eid = do_link(_store(settings), settings, record, entity, reason)
    click.echo(f"record {rid} linked to entity {eid}")


@main.command()
@config_option
@click.argument("record")
@click.option("--reason", required=True, help="Why (kept in the merge log).")
@handle_errors
def unlink(config_path: str, record: str, reason: str) -> None:
    """Split RECORD off its entity into an entity of its own; holds across later runs."""
    from itam_sync.operations import unlink as do_unlink

    settings = _settings(config_path)
    rid, eid = do_unlink(_store(settings), settings, record, reason)
    click.echo(f"record {rid} split off into entity {eid}")


@main.command()
@config_option
@click.argument("entity")
@click.argument("field")
@click.argument("value")
@click.option("--reason", required=True, help="Why (kept in the merge log).")
@click.option("--expires", default=None, help="Date (YYYY-MM-DD) after which the override stops applying.")
@click.option("--json-value", is_flag=True, help="Parse VALUE as JSON (numbers, booleans, lists).")
@handle_errors
def override(config_path: str, entity: str, field: str, value: str, reason: str, expires: str | None,
             json_value: bool) -> None:
    """Set FIELD of ENTITY to VALUE as the `manual` source, above every connector."""
    from itam_sync.operations import override as do_override

    settings = _settings(config_path)
    parsed: Any = value
    if json_value:
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise OperationError(f"--json-value: {value!r} is not JSON") from exc
    exp = None
    if expires:
        if len(expires) == 10:
            exp = expires + "T00:00:00Z"
        elif expires.endswith("Z") and len(expires) == 20:
            exp = expires
        else:
            raise OperationError(f"--expires {expires!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ")
    eid = do_override(_store(settings), settings, entity, field, parsed, reason, exp)
    click.echo(f"entity {eid}: {field} overridden" + (f" until {exp}" if exp else ""))


@main.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@handle_errors
def merge(config_path: str, dry_run: bool) -> None:
    """Re-map stored records and re-merge every entity under the current rules (no API calls)."""
    from itam_sync.operations import remerge

    settings = _settings(config_path)
    result = remerge(_store(settings), settings, dry_run=dry_run)
    stats = result.stats
    out = Console(highlight=False)
    verb = "would change" if dry_run else "changed"
    out.print(f"{stats.entities} entities merged; {stats.changed_entities} {verb}; "
              f"{result.remapped_records} source records re-mapped")
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


@main.command("log")
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
    from itam_sync.operations import find_entity

    settings = _settings(config_path)
    with _store(settings).begin() as repo:
        eid = find_entity(repo, entity) if entity else None
        rows = repo.log_rows(entity_id=eid, since=since, source=source, run_id=run_id, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    print_log(rows, Console(highlight=False))


def print_log(rows: list[dict[str, Any]], out: Console, title: str = "merge log") -> None:
    table = Table(title=title)
    for col in ("id", "run", "at", "entity", "action", "field", "old", "new", "source", "rule"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r["id"]), str(r["run_id"] or ""), r["at"], f"{r['entity_type']}:{r['entity_id']}",
                      r["action"], r["field"] or "", _short(r["old"]), _short(r["new"]), r["source"] or "",
                      r["rule"] or "")
    out.print(table)


def _short(v: Any) -> str:
    if v is None:
        return ""
    s = v if isinstance(v, str) else json.dumps(v)
    return s if len(s) <= 40 else s[:37] + "..."


@main.command()
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

    from itam_sync.audit import explain as do_explain

    settings = _settings(config_path)
    if as_of:
        _explain_as_of(settings, entity, as_of, as_json)
        return
    ex = do_explain(_store(settings), settings, entity)
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


@main.command()
@config_option
@click.option("--entity", "entity_name", type=click.Choice(sorted(ENTITY_NAMES)), required=True)
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="File (default stdout).")
@click.option("--as-of", "as_of", default=None, metavar="TIME",
              help="The records as they stood then (YYYY-MM-DD = end of that day), rebuilt from the merge log.")
@handle_errors
def export(config_path: str, entity_name: str, fmt: str, output: str | None, as_of: str | None) -> None:
    """Export golden records with their fields and the source records that feed them."""
    settings = _settings(config_path)
    etype = ENTITY_NAMES[entity_name]
    fields = list(FIELDS[etype])
    if as_of:
        from itam_sync.audit_chain import parse_time

        as_of = parse_time(as_of, end_of_day=True)  # a bad time fails here, before the output file is opened
    fh = open(output, "w", newline="") if output else sys.stdout  # noqa: SIM115 - stdout is not ours to close
    try:
        if as_of:
            _export_as_of(settings, etype, fields, fmt, fh, as_of)
            return
        with _store(settings).begin() as repo:
            batch: list[tuple[int, dict[str, Any], str]] = []
            writer = csv.writer(fh) if fmt == "csv" else None
            if writer:
                writer.writerow(["id", "status", *fields, "sources"])
            else:
                fh.write("[")
            first = True

            def flush() -> None:
                nonlocal first
                keys = repo.source_keys_of([b[0] for b in batch])
                for eid, golden, status in batch:
                    if writer:
                        writer.writerow([eid, status, *(_cell(golden[f][0] if f in golden else None) for f in fields),
                                         ";".join(keys.get(eid, []))])
                    else:
                        rec = {"id": eid, "type": etype.value, "status": status,
                               "fields": {f: golden[f][0] for f in fields if f in golden},
                               "field_sources": {f: golden[f][1] for f in fields if f in golden},
                               "sources": keys.get(eid, [])}
                        fh.write(("\n" if first else ",\n") + json.dumps(rec))
                        first = False
                batch.clear()

            for item in repo.iter_entities(etype.value):
                batch.append(item)
                if len(batch) >= 1000:
                    flush()
            flush()
            if not writer:
                fh.write("\n]\n")
    finally:
        if output:
            fh.close()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ";".join(map(str, v))
    return str(v)


def _export_as_of(settings: Settings, etype: EntityType, fields: list[str], fmt: str, fh: Any, as_of: str) -> None:
    """`export --as-of`: the same shape as `export`, from the merge log (records carry no missing marks)."""
    from itam_sync.timetravel import iter_as_of

    writer = csv.writer(fh) if fmt == "csv" else None
    if writer:
        writer.writerow(["id", "status", *fields, "sources"])
    else:
        fh.write("[")
    first = True
    for ent in iter_as_of(_store(settings), etype.value, as_of):
        vals = ent.fields
        if writer:
            writer.writerow([ent.entity_id, ent.status, *(_cell(vals[f].value if f in vals else None) for f in fields),
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

    from itam_sync.audit_chain import parse_time
    from itam_sync.timetravel import explain_as_of

    ex = explain_as_of(_store(settings), entity, parse_time(as_of_text, end_of_day=True))
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


@main.command()
@config_option
@click.option("--lines", default=12, show_default=True, help="How many merge-log lines to show.")
@handle_errors
def summary(config_path: str, lines: int) -> None:
    """Counts of assets, people and subscriptions, open conflicts and the latest interesting log lines."""
    settings = _settings(config_path)
    out = Console(highlight=False)
    with _store(settings).begin() as repo:
        counts = repo.counts()
        conflict_rows = repo.log_rows(action="conflict", limit=lines // 3 or 1)
        # The most telling decisions first: freshness windows and overrides, then field-specific orders.
        recent = repo.log_rows(action="set", limit=5000)
        decided = []
        for prefix in ("freshness", "manual", "precedence:field", "precedence:default"):
            decided += [r for r in recent if (r["rule"] or "").startswith(prefix)]
        decided = decided[:lines]
        merges = repo.log_rows(action="merge", limit=lines // 3 or 1)
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


def log_line(r: dict[str, Any]) -> str:
    """One merge-log row as a sentence."""
    head = f"#{r['id']} run {r['run_id'] or '-'} {r['entity_type']} {r['entity_id']}"
    if r["action"] in ("set", "clear"):
        return (f"{head} {r['field']}: {_short(r['old']) or '(empty)'} -> {_short(r['new']) or '(empty)'} "
                f"[{r['source']}, {r['rule']}]")
    return f"{head} {r['action']}: {_short(r['old'])} -> {_short(r['new'])} [{r['source']}] {r['rule'] or ''}"


@main.command()
@config_option
@click.option("--run", "run_id", type=int, default=None)
@click.option("--limit", default=50, show_default=True)
@handle_errors
def quarantine(config_path: str, run_id: int | None, limit: int) -> None:
    """Records that could not be mapped, with the reason."""
    settings = _settings(config_path)
    with _store(settings).begin() as repo:
        rows = repo.list_quarantine(run_id, limit)
    table = Table(title="quarantine")
    for col in ("id", "run", "connector", "stream", "source key", "reason"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*(str(x) if x is not None else "" for x in r))
    Console(highlight=False).print(table)


@main.command("connectors")
@handle_errors
def connectors_cmd() -> None:
    """List the installed connector types."""
    reg = Registry()
    echo_plugins(reg.names(), lambda name: reg.get(name).description)


def echo_plugins(names: list[str], describe: Callable[[str], str]) -> None:
    """One line per installed plugin (connector or sink type): its name and description."""
    for name in names:
        try:
            desc = describe(name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            desc = f"(cannot load: {exc})"
        click.echo(f"{name:20} {desc}")


from itam_sync.cli_web import web as _web_command  # noqa: E402 - registered after `main` exists

main.add_command(_web_command)


from itam_sync.cli_audit import audit as _audit_group  # noqa: E402 - registered after main exists
from itam_sync.cli_reports import report as _report_cmd  # noqa: E402

main.add_command(_audit_group)
main.add_command(_report_cmd)


from itam_sync.cli_publish import COMMANDS as _publish_commands  # noqa: E402 - registered after main exists

for _cmd in _publish_commands:
    main.add_command(_cmd)


from itam_sync.cli_ops import serve as _serve_cmd  # noqa: E402 - registered after main exists
from itam_sync.cli_ops import status as _status_cmd  # noqa: E402

main.add_command(_serve_cmd)
main.add_command(_status_cmd)

# Run as `itam-sync ...` or `python -m itam_sync ...` (itam_sync/__main__.py); `python -m itam_sync.cli` would
# import this module twice because the command modules above import it.


from itam_sync.cli_sandbox import sandbox as _sandbox_cmd  # noqa: E402 - registered after main exists

main.add_command(_sandbox_cmd)
