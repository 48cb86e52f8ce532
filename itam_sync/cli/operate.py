"""Operator decisions kept in the merge log: link, unlink, override.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from itam_sync.cli.common import config_option, handle_errors, load_config, open_store
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
    rid, eid = do_link(open_store(settings), settings, record, entity, reason)
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
    rid, eid = do_unlink(open_store(settings), settings, record, reason)
    click.echo(f"record {rid} split off into entity {eid}")

@click.command()
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
    from itam_sync.engine.operations import override as do_override

    settings = load_config(config_path)
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
    eid = do_override(open_store(settings), settings, entity, field, parsed, reason, exp)
    click.echo(f"entity {eid}: {field} overridden" + (f" until {exp}" if exp else ""))
