"""`itam-sync sandbox`: serve fake vendor APIs on 127.0.0.1 for demos, load tests and fault tests."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading

import click

log = logging.getLogger(__name__)


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--devices", default=1000, show_default=True, type=click.IntRange(1, 2_000_000),
              help="How many devices the vendors describe.")
@click.option("--people", default=None, type=click.IntRange(1, 2_000_000),
              help="How many people (default: two thirds of --devices).")
@click.option("--port-base", default=8780, show_default=True, type=click.IntRange(0, 65534),
              help="HTTP on this port, HTTPS (Microsoft login) on the next; 0 picks free ports.")
@click.option("--tls-port", default=None, type=click.IntRange(0, 65535), help="HTTPS port (default: port base + 1).")
@click.option("--seed", default=1, show_default=True, help="Population seed: same seed, same records.")
@click.option("--faults", default="", metavar="SPEC",
              help="e.g. 429:0.05,5xx:0.02,slow:0.01@0.5s,reset:0.01,truncate:0.01,malformed:0.01,"
                   "token_expire:60s,mutate_between_pages (see itam_sync/sandbox/faults.py).")
@click.option("--max-page", default=None, type=click.IntRange(1, 100_000),
              help="Cap every page size (more pages from a small population).")
@click.option("--workdir", default=None, type=click.Path(file_okay=False),
              help="Where the TLS CA file is written (default: a temporary directory).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line with the URLs, then serve.")
@click.option("--identity-mess", is_flag=True,
              help="Add the cases identity finds hardest: shared docks, placeholder serials, re-imaged laptops "
                   "with stale enrolments, duplicate enrolments, renamed people, aliases (bench_identity.py).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def sandbox(devices: int, people: int | None, port_base: int, tls_port: int | None, seed: int, faults: str,
            max_page: int | None, workdir: str | None, as_json: bool, identity_mess: bool,
            command: tuple[str, ...]) -> None:
    """Serve Okta, Entra/Intune (Graph), Defender, CrowdStrike, Jamf, SentinelOne, Kandji and BambooHR APIs
    with a seeded, messy population, until interrupted.

    With COMMAND (after `--`), run it with the sandbox's environment (ITAM_SANDBOX_URL, ITAM_SANDBOX_TLS_URL,
    REQUESTS_CA_BUNDLE, ITAM_SANDBOX_SECRET) and stop when it ends, exiting with its status:

    \b
        itam-sync sandbox --port-base 0 -- itam-sync run -c config/sandbox.yaml --full
    """
    from itam_sync import sandbox as sb_module
    from itam_sync.sandbox.faults import FaultSpecError

    try:
        handle = sb_module.start(devices=devices, people=people, seed=seed, faults=faults, port=port_base,
                                 tls_port=tls_port, workdir=workdir, max_page=max_page, identity_mess=identity_mess)
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    except OSError as exc:
        click.echo(f"error: cannot listen on 127.0.0.1:{port_base}: {exc.strerror} (fix: --port-base 0 picks "
                   "free ports)", err=True)
        sys.exit(2)
    env = handle.env()
    try:
        if as_json:
            click.echo(json.dumps({**env, "url": handle.url, "tls_url": handle.tls_url, "ca_file": str(handle.ca_file),
                                   "devices": devices, "people": handle.people, "seed": seed,
                                   "urls": handle.urls()}))
        elif not command:
            click.echo(f"itam-sync sandbox: {devices:,} devices, {handle.people:,} people (seed {seed}) on "
                       f"{handle.url} (and {handle.tls_url} for the Microsoft login)", err=True)
            if faults:
                click.echo(f"faults: {faults}", err=True)
            for k, v in env.items():
                click.echo(f"export {k}={v}")
            click.echo("# then, in that shell: itam-sync run -c config/sandbox.yaml --full", err=True)
        if command:
            proc = subprocess.run(list(command), env={**os.environ, **env}, check=False)
            sys.exit(proc.returncode)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        handle.stop()
