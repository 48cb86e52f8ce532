"""The `itam-sync` group's guard for optional dependencies: a command that needs an extra which is not
installed (`web` needs fastapi, `serve` prometheus_client, a PostgreSQL store psycopg, ...) says which
one in a single line and exits 2, instead of printing an ImportError traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from itam_sync.sdk.extras import extra_for_module, install_hint


class ExtrasGroup(click.Group):
    """A click group that turns a missing optional module into "`itam-sync web` needs `pip install ...`"."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            extra = extra_for_module(exc.name)
            if extra is None:  # not an optional dependency: a real bug, keep the traceback
                raise
            if ctx.invoked_subcommand == "serve" and extra == "web":
                extra = "serve"  # the service's HTTP side: `serve` brings the web extra's packages and more
            cmd = " ".join(filter(None, [ctx.command_path, ctx.invoked_subcommand]))
            click.echo(f"error: `{cmd}` {install_hint(extra)} (module {exc.name} is not installed)", err=True)
            sys.exit(2)
