"""Identity commands: ambiguous identifiers (list, block, allow, recheck) and suggested matches (list, link,
dismiss).
"""

from __future__ import annotations

import logging

import click
from rich import box
from rich.table import Table

from itam_sync.cli.common import (
    chosen_format,
    config_option,
    emit_rows,
    format_options,
    handle_errors,
    load_config,
    open_store,
    out_console,
)

log = logging.getLogger(__name__)
ID_COLUMNS = ["value", "kind", "scope", "status", "records", "entities", "since", "why"]
SUGGESTION_COLUMNS = ["id", "entity_type", "entity_a", "entity_b", "score", "evidence"]


@click.group("identifiers", invoke_without_command=True)
@config_option
@click.option("--type", "entity_type", type=click.Choice(["asset", "person", "subscription"]), default=None,
              help="Only this entity type.")
@format_options
@click.pass_context
@handle_errors
def identifiers(ctx: click.Context, config_path: str, entity_type: str | None, fmt: str, as_json: bool) -> None:
    """Identifier values that join nothing (a dock's MAC, a cloned VM's UUID, a loaner host name): value, kind,
    scope, how many records and entities hold it, since when and why; and operator blocks and allows."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    if ctx.invoked_subcommand is not None:
        return
    from itam_sync.engine.identifiers import list_identifiers

    settings = load_config(config_path)
    rows = list_identifiers(open_store(settings, read_only=True), settings, entity_type)
    fmt = chosen_format(fmt, as_json)
    if fmt != "table":
        emit_rows(rows, fmt, ["entity_type", *ID_COLUMNS, "origin"])
        return
    table = Table(title=f"identifiers that join nothing ({len(rows)})", box=box.SIMPLE_HEAD)
    for col in ID_COLUMNS:
        table.add_column(col, justify="right" if col in ("records", "entities") else "left",
                         overflow="fold")
    for r in rows:
        table.add_row(*(str(r[c]) if r[c] is not None else "" for c in ID_COLUMNS))
    out = out_console()
    out.print(table)
    out.print("Block a value with `itam-sync identifiers block VALUE --reason ...`; make one usable again with "
              "`itam-sync identifiers allow VALUE --reason ...`.", markup=False)


def _decide(ctx: click.Context, config_path: str | None, value: str, action: str, reason: str) -> None:
    from itam_sync.engine.identifiers import decide

    settings = load_config(config_path or ctx.obj["config_path"])
    ch = decide(open_store(settings, read_only=True), settings, value, action, reason)
    verb = "blocked" if action == "block" else "allowed"
    click.echo(f"{ch.key} ({ch.entity_type}) {verb}: {ch.ambiguous} newly ambiguous, {ch.released} usable again, "
               f"{ch.split} records split off, {ch.merged} entities merged")


@identifiers.command("block")
@click.argument("value")
@click.option("--reason", required=True, help="Why (kept in the merge log).")
@click.option("-c", "--config", "config_path", default=None, help="Config file (default: the group's).")
@click.pass_context
@handle_errors
def block(ctx: click.Context, value: str, reason: str, config_path: str | None) -> None:
    """Never match on VALUE (e.g. mac:3c18a00b7c11, a bare MAC, serial_number:..., ~hostname:loaner-01): entities
    joined only through it are split again. Held across runs."""
    _decide(ctx, config_path, value, "block", reason)


@identifiers.command("allow")
@click.argument("value")
@click.option("--reason", required=True, help="Why (kept in the merge log).")
@click.option("-c", "--config", "config_path", default=None, help="Config file (default: the group's).")
@click.pass_context
@handle_errors
def allow(ctx: click.Context, value: str, reason: str, config_path: str | None) -> None:
    """Match on VALUE even though records or the config say it is ambiguous. Held across runs."""
    _decide(ctx, config_path, value, "allow", reason)


@identifiers.command("recheck")
@click.option("-c", "--config", "config_path", default=None, help="Config file (default: the group's).")
@click.pass_context
@handle_errors
def recheck(ctx: click.Context, config_path: str | None) -> None:
    """Judge every identifier again and re-cluster what changes (after an upgrade from an older version)."""
    from itam_sync.engine.identifiers import recheck as do_recheck

    settings = load_config(config_path or ctx.obj["config_path"])
    ch = do_recheck(open_store(settings, read_only=True), settings)
    click.echo(f"rechecked: {ch.ambiguous} newly ambiguous, {ch.released} usable again, {ch.split} records split "
               f"off, {ch.merged} entities merged, {ch.entities_touched} entities touched")


@click.group("suggestions", invoke_without_command=True)
@config_option
@format_options
@click.pass_context
@handle_errors
def suggestions(ctx: click.Context, config_path: str, fmt: str, as_json: bool) -> None:
    """Entities that are probably one thing (same name and department, e-mail variants of one name; same host
    name, model and holder) but share no usable key: never merged until you `link` one."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    if ctx.invoked_subcommand is not None:
        return
    from itam_sync.engine.suggestions import refresh

    settings = load_config(config_path)
    rows = refresh(open_store(settings, read_only=True))
    fmt = chosen_format(fmt, as_json)
    if fmt != "table":
        emit_rows(rows, fmt, SUGGESTION_COLUMNS)
        return
    table = Table(title=f"suggested matches ({len(rows)})", box=box.SIMPLE_HEAD)
    for col in SUGGESTION_COLUMNS:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r["id"]), r["entity_type"], str(r["entity_a"]), str(r["entity_b"]), f"{r['score']:.2f}",
                      "; ".join(r["evidence"]))
    out = out_console()
    out.print(table)
    out.print("Accept with `itam-sync suggestions link ID --reason ...` (the second entity's records join the "
              "first), reject with `itam-sync suggestions dismiss ID --reason ...`.", markup=False)


@suggestions.command("link")
@click.argument("suggestion_id", type=int)
@click.option("--reason", required=True, help="Why (kept in the merge log).")
@click.option("-c", "--config", "config_path", default=None, help="Config file (default: the group's).")
@click.pass_context
@handle_errors
def link_suggestion(ctx: click.Context, suggestion_id: int, reason: str, config_path: str | None) -> None:
    """Accept a suggestion: every record of its second entity is linked to its first (held across runs)."""
    from itam_sync.engine.suggestions import accept

    settings = load_config(config_path or ctx.obj["config_path"])
    a, b = accept(open_store(settings, read_only=True), settings, suggestion_id, reason)
    click.echo(f"suggestion {suggestion_id} accepted: the records of entity {b} are linked to entity {a}")


@suggestions.command("dismiss")
@click.argument("suggestion_id", type=int)
@click.option("--reason", required=True, help="Why (kept in the merge log).")
@click.option("-c", "--config", "config_path", default=None, help="Config file (default: the group's).")
@click.pass_context
@handle_errors
def dismiss_suggestion(ctx: click.Context, suggestion_id: int, reason: str, config_path: str | None) -> None:
    """Reject a suggestion: kept, logged, and never suggested again."""
    from itam_sync.engine.suggestions import dismiss

    settings = load_config(config_path or ctx.obj["config_path"])
    dismiss(open_store(settings, read_only=True), suggestion_id, reason)
    click.echo(f"suggestion {suggestion_id} dismissed")


COMMANDS = (identifiers, suggestions)
