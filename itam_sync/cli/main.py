"""The `itam-sync` command group: global options, and every command registered from its group module.
"""

from __future__ import annotations

import logging

import click

from itam_sync import __version__
from itam_sync.cli.extras import ExtrasGroup

log = logging.getLogger(__name__)


@click.group(cls=ExtrasGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="itam-sync")
@click.option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")
@click.option("--quiet", "-q", is_flag=True, help="No progress display or run summary; log errors only.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="ITAM_SYNC_LOG_FORMAT", help="Logs on stderr as text or JSON lines (for log shippers).")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool, log_format: str) -> None:
    """itam-sync: pull assets, people and licences from many systems into one auditable source of truth."""
    from itam_sync.cli.ops import setup_logging

    ctx.obj = {"verbose": verbose, "quiet": quiet, "log_format": log_format}
    setup_logging(verbose, quiet, log_format)


def _register() -> None:
    """Add every command group's commands to `main` (command modules never import each other or this one)."""
    from itam_sync.cli import audit, identity, inspect, operate, ops, publish, reports, sandbox, sync, web

    for cmd in (sync.validate, sync.init, sync.run, sync.check, sync.merge, sync.connectors_cmd,
                inspect.runs, inspect.conflicts, inspect.log_cmd, inspect.explain, inspect.export, inspect.summary,
                inspect.quarantine, operate.link, operate.unlink, operate.override, operate.overrides,
                web.web, audit.audit, reports.report, ops.serve, ops.status, sandbox.sandbox, *publish.COMMANDS,
                *identity.COMMANDS):
        main.add_command(cmd)


_register()
