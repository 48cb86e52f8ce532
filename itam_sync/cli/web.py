"""`itam-sync web`: serve the read-only web UI and REST API."""

from __future__ import annotations

import logging
import sys

import click

from itam_sync.cli.common import config_option, handle_errors, require_store
from itam_sync.settings import load_settings

log = logging.getLogger(__name__)


@click.command("web")
@config_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but 127.0.0.1/localhost needs API tokens.")
@click.option("--port", "-p", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@handle_errors
def web(config_path: str, host: str, port: int) -> None:
    """Serve the read-only web UI and REST API (/api/v1, schema at /openapi.json).

    API tokens come from `web.api_tokens` in the config (secret references such as ${env:ITAM_WEB_TOKEN})
    and from ITAM_SYNC_WEB_TOKENS (comma-separated). With no token the server serves without auth and only
    on 127.0.0.1/localhost. Clients send `Authorization: Bearer <token>`; a browser signs in once with the
    form or a link ending in ?token=<token>.
    """
    import uvicorn

    from itam_sync.web.app import create_app
    from itam_sync.web.auth import ENV_TOKENS, RedactTokenFilter, configured_tokens, is_loopback

    loaded = load_settings(config_path)
    for w in loaded.warnings:
        click.echo(f"warning: {w}", err=True)
    settings = loaded.settings
    require_store(settings)  # the web UI reads a store; it never creates an empty one
    tokens = configured_tokens(settings)
    if not tokens and not is_loopback(host):
        click.echo(f"error: refusing to listen on {host} without API tokens: set web.api_tokens in the config or "
                   f"{ENV_TOKENS}, or use --host 127.0.0.1", err=True)
        sys.exit(2)
    app = create_app(settings, tokens=tokens)
    # proxy_headers: behind a TLS-terminating proxy on this host (uvicorn trusts 127.0.0.1 only), the session
    # cookie is marked Secure.
    config = uvicorn.Config(app, host=host, port=port, log_level="info", proxy_headers=True)
    # After uvicorn has configured logging: a sign-in link's ?token= must not reach the access log.
    logging.getLogger("uvicorn.access").addFilter(RedactTokenFilter())
    shown = f"[{host}]" if ":" in host else host
    auth = f"{len(tokens)} API token(s)" if tokens else "no auth (local only)"
    click.echo(f"itam-sync web: http://{shown}:{port}/ ({auth}); store {_safe_url(settings.store.url)}", err=True)
    uvicorn.Server(config).run()


def _safe_url(url: str) -> str:
    """The store URL without a password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return url.split("@")[-1]
