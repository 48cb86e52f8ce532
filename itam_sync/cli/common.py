"""What every command shares: the --config option, error handling (one clear line, non-zero exit), settings
and store opening, and small output helpers.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import OperationalError

from itam_sync.cli.output import (  # noqa: F401 - re-exported: command modules import output helpers from here
    FORMATS,
    article,
    chosen_format,
    emit_rows,
    err_console,
    format_options,
    out_console,
    plural,
)
from itam_sync.engine.operations import OperationError
from itam_sync.engine.registry import UnknownConnectorType
from itam_sync.engine.runner import SyncFailed
from itam_sync.insight.lifecycle import is_lifecycle_event, lifecycle_event
from itam_sync.mapping.loader import MappingLoadError
from itam_sync.model.canonical import EntityType
from itam_sync.settings import ConfigError, Settings, load_settings
from itam_sync.settings.paths import sqlite_path
from itam_sync.settings.times import BadTime
from itam_sync.store import Store

log = logging.getLogger(__name__)


F = TypeVar("F", bound=Callable[..., Any])

ENTITY_NAMES = {"assets": EntityType.ASSET, "people": EntityType.PERSON, "subscriptions": EntityType.SUBSCRIPTION}

# Annotated: command modules registered at the end of this file import it (an import cycle mypy cannot infer).
config_option: Callable[[F], F] = click.option(
    "--config", "-c", "config_path", envvar="ITAM_SYNC_CONFIG", default="itam-sync.yaml", show_default=True,
    type=click.Path(dir_okay=False), help="Config file (or set ITAM_SYNC_CONFIG).")

def handle_errors(fn: F) -> F:
    """Turn known failures into one clear line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        err = err_console()
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
        except (OperationError, UnknownConnectorType, BadTime) as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}")
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

def load_config(path: str, *, secrets: bool = False) -> Settings:
    """Load and check a config, printing its warnings once. `secrets`: the command will resolve the secrets of
    the enabled connectors (run, check, serve, push), so say which ones cannot be resolved here."""
    loaded = load_settings(path)
    err = err_console()
    for w in loaded.warnings + (loaded.secret_warnings if secrets else []):
        err.print(f"[yellow]warning:[/yellow] {escape(w)}")
    return loaded.settings

def open_store(settings: Settings, *, read_only: bool = False) -> Store:
    """The store, migrated. `read_only` commands (summary, export, explain, log, web ...) never create one: a
    SQLite file that does not exist is an error naming the path, not a new empty database."""
    if read_only:
        require_store(settings)
    return Store.open(settings.store.url)

def require_store(settings: Settings) -> None:
    """OperationError when the SQLite store file does not exist (nothing has been synced into it)."""
    db = sqlite_path(settings.store.url)
    if db is not None and not db.exists():
        where = f" (store.url in {settings.source_path})" if settings.source_path else ""
        raise OperationError(f"no store at {db}{where}: nothing has been synced there yet (fix: run `itam-sync run"
                             f"{' -c ' + settings.source_path if settings.source_path else ''}` first, or point "
                             "store.url at the existing database; relative paths start from the config file's "
                             "folder)")

def print_log(rows: list[dict[str, Any]], out: Console, title: str = "merge log") -> None:
    table = Table(title=title)
    for col in ("id", "run", "at", "entity", "action", "field", "old", "new", "source", "rule"):
        table.add_column(col, overflow="fold")
    for r in rows:
        # A change of an asset's lifecycle_state is a lifecycle event (in_stock -> deployed ...), by its source.
        action = "lifecycle" if is_lifecycle_event(r) else r["action"]
        table.add_row(str(r["id"]), str(r["run_id"] or ""), r["at"], f"{r['entity_type']}:{r['entity_id']}",
                      action, r["field"] or "", _short(r["old"]), _short(r["new"]), r["source"] or "",
                      r["rule"] or "")
    out.print(table)

def _short(v: Any) -> str:
    if v is None:
        return ""
    s = v if isinstance(v, str) else json.dumps(v)
    return s if len(s) <= 40 else s[:37] + "..."

def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ";".join(map(str, v))
    return str(v)

def log_line(r: dict[str, Any]) -> str:
    """One merge-log row as a sentence."""
    head = f"#{r['id']} run {r['run_id'] or '-'} {r['entity_type']} {r['entity_id']}"
    if r["action"] in ("override", "unoverride"):  # the rule holds the operator's reason
        verb = "override of" if r["action"] == "override" else "override removed from"
        return (f"{head} {verb} {r['field']}: {_short(r['old']) or '(none)'} -> {_short(r['new']) or '(none)'} "
                f"[{r['actor'] or 'unknown'}] {r['rule'] or ''}")
    if is_lifecycle_event(r):
        return (f"{head} lifecycle event: {lifecycle_event(r['old'], r['new'])} [{r['source'] or 'unknown'}, "
                f"{r['rule']}]")
    if r["action"] in ("set", "clear"):
        return (f"{head} {r['field']}: {_short(r['old']) or '(empty)'} -> {_short(r['new']) or '(empty)'} "
                f"[{r['source']}, {r['rule']}]")
    return f"{head} {r['action']}: {_short(r['old'])} -> {_short(r['new'])} [{r['source']}] {r['rule'] or ''}"

def echo_plugins(names: list[str], describe: Callable[[str], str]) -> None:
    """One line per installed plugin (connector or sink type): its name and description."""
    for name in names:
        try:
            desc = describe(name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            desc = f"(cannot load: {exc})"
        click.echo(f"{name:20} {desc}")
