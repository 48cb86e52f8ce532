"""Operator decisions kept in the merge log: link, unlink, override.
"""

from __future__ import annotations

import json
import logging
from typing import Any

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
from itam_sync.engine.operations import OperationError

log = logging.getLogger(__name__)


@click.command()
@config_option
@click.argument("record")
@click.argument("entity")
@click.option("--reason", required=True, help="Why (kept in the merge log).")
@handle_errors
def link(config_path: str, record: str, entity: str, reason: str) -> None:
    """Pin RECORD (id or connector/stream/key) to ENTITY (id or key); holds across later runs."""
    from itam_sync.engine.operations import link as do_link

    settings = load_config(config_path)
    rid, eid = do_link(open_store(settings, read_only=True), settings, record, entity, reason)
    click.echo(f"record {rid} linked to entity {eid}")

@click.command()
@config_option
@click.argument("record")
@click.option("--reason", required=True, help="Why (kept in the merge log).")
@handle_errors
def unlink(config_path: str, record: str, reason: str) -> None:
    """Split RECORD off its entity into an entity of its own; holds across later runs."""
    from itam_sync.engine.operations import unlink as do_unlink

    settings = load_config(config_path)
    rid, eid = do_unlink(open_store(settings, read_only=True), settings, record, reason)
    click.echo(f"record {rid} split off into entity {eid}")

@click.command()
@config_option
@click.argument("entity")
@click.argument("field")
@click.argument("value", required=False)
@click.option("--reason", required=True, help="Why (kept in the hash-chained merge log and shown by explain).")
@click.option("--expires", default=None, metavar="TIME",
              help="When it stops applying: YYYY-MM-DD (its start, 00:00 UTC), an ISO time, or a span ahead such "
                   "as 30d. Must lie ahead.")
@click.option("--json-value", is_flag=True, help="Parse VALUE as JSON (numbers, booleans, lists).")
@click.option("--remove", is_flag=True, help="End the override of FIELD (no VALUE): the sources decide it again.")
@handle_errors
def override(config_path: str, entity: str, field: str, value: str | None, reason: str, expires: str | None,
             json_value: bool, remove: bool) -> None:
    """Set FIELD of ENTITY to VALUE as the `manual` source, above every connector; or --remove it.

    VALUE must fit the field: a number for purchase_cost, one of the vocabulary for lifecycle_state, a date
    for warranty_end. `itam-sync overrides` lists the overrides in force.
    """
    from itam_sync.engine.operations import override as do_override
    from itam_sync.engine.operations import remove_override
    from itam_sync.settings.times import parse_when_iso

    settings = load_config(config_path)
    if remove:
        if value is not None or expires or json_value:
            raise OperationError("--remove takes ENTITY and FIELD only (no VALUE, --expires or --json-value)")
        eid, ended = remove_override(open_store(settings, read_only=True), settings, entity, field, reason)
        click.echo(f"entity {eid}: override of {field} removed (was {json.dumps(ended['value'])}, set by "
                   f"{ended['actor'] or 'unknown'}: {ended['reason']}); the sources decide it again")
        return
    if value is None:
        raise OperationError("give a VALUE to set, or --remove to end the override")
    parsed: Any = value
    if json_value:
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise OperationError(f"--json-value: {value!r} is not JSON") from exc
    exp = parse_when_iso(expires, what="--expires", ahead=True) if expires else None
    eid = do_override(open_store(settings, read_only=True), settings, entity, field, parsed, reason, exp)
    click.echo(f"entity {eid}: {field} overridden" + (f" until {exp}" if exp else ""))


@click.command("overrides")
@config_option
@click.option("--entity", default=None, help="Only this entity (id, serial, e-mail or key).")
@click.option("--all", "show_all", is_flag=True, help="Also overrides that expired or were replaced or removed.")
@format_options
@handle_errors
def overrides(config_path: str, entity: str | None, show_all: bool, fmt: str, as_json: bool) -> None:
    """Operator overrides: entity, field, value, who, why, since when and until when."""
    from itam_sync import clock
    from itam_sync.engine.operations import find_entity

    settings = load_config(config_path)
    with open_store(settings, read_only=True).begin() as repo:
        eid = find_entity(repo, entity) if entity else None
        rows = repo.overrides.list_overrides(clock.now_iso(), entity_id=eid, include_inactive=show_all)
        goldens = repo.entities.goldens({r["entity_id"] for r in rows})
    for r in rows:
        etype, golden, _status = goldens.get(r["entity_id"], ("", {}, ""))
        r["entity_type"] = etype
        r["entity_label"] = next((golden[f][0] for f in LABEL_FIELDS if golden.get(f)), "")
    cols = ["entity_id", "entity_type", "entity_label", "field", "value", "actor", "reason", "created_at",
            "expires_at", "state"]
    fmt = chosen_format(fmt, as_json)
    if fmt != "table":
        emit_rows([{c: r[c] for c in cols} for r in rows], fmt, cols)
        return
    out = out_console()
    table = Table(title=f"{'' if show_all else 'active '}overrides ({len(rows)})", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False)
    for col in ("entity", "field", "value", "who", "why", "since", "expires") + (("state",) if show_all else ()):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(f"{r['entity_id']} {r['entity_label']}".strip(), r["field"], json.dumps(r["value"])
                      if not isinstance(r["value"], str) else r["value"], r["actor"] or "", r["reason"],
                      (r["created_at"] or "")[:10], r["expires_at"] or "never",
                      *((r["state"],) if show_all else ()))
    out.print(table)
    if not rows:
        out.print("No overrides" + (" in force." if not show_all else "."))


# The golden field that names an entity for people: a serial, a host name, an e-mail, a product.
LABEL_FIELDS = ("serial_number", "hostname", "instance_id", "email", "employee_id", "product", "sku_id")
