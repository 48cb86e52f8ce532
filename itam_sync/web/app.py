"""The read-only web UI and REST API: `create_app(settings)` builds the FastAPI application.

    itam-sync web --config itam-sync.yaml            # http://127.0.0.1:8080

HTML pages (server-rendered, Jinja2) live in pages.py, the JSON API under /api/v1 in api.py, both over
service.WebService. Auth (auth.py): with tokens configured every page and endpoint needs one; with none the
app answers only requests addressed to the loopback host (the CLI refuses to bind anything else).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from itam_sync import __version__
from itam_sync.settings import Settings
from itam_sync.store import Store
from itam_sync.web.auth import TokenAuth, configured_tokens, is_loopback, set_session_cookie
from itam_sync.web.pages import LoginRequired, SignIn, build_pages
from itam_sync.web.render import render, render_login
from itam_sync.web.reporting import ReportRunner
from itam_sync.web.service import BadInput, NotFound, WebService

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def create_app(settings: Settings, tokens: list[str] | None = None, store: Store | None = None) -> FastAPI:
    """The web application over the store of `settings`.

    `tokens` defaults to the configured ones (`web.api_tokens`, resolved now, and ITAM_SYNC_WEB_TOKENS);
    pass `store` to reuse an opened store (tests), else it is opened (and migrated) here.
    """
    from itam_sync.web.api import build_api

    auth = TokenAuth.from_tokens(configured_tokens(settings) if tokens is None else tokens)
    owned = store is None
    store = store or Store.open(settings.store.url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            store.close()

    app = FastAPI(
        title="itam-sync", version=__version__, lifespan=lifespan,
        description="Read-only access to golden records (assets, people, subscriptions), why each field has "
                    "its value, the merge log, identity conflicts, sync runs and reports. Send "
                    "`Authorization: Bearer <token>` when the server has API tokens configured.",
        # The bundled Swagger/ReDoc pages load their scripts from a CDN; this server works offline.
        docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.auth = auth
    app.state.service = WebService(store, settings)
    app.state.settings = settings
    app.state.reports = ReportRunner(store, settings)

    if not auth.enabled:
        @app.middleware("http")
        async def loopback_only(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            # Without tokens the server is for this machine only; checking the Host header also stops a
            # web page from reaching it through DNS rebinding.
            host = request.headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if not is_loopback(name):
                return PlainTextResponse("this server has no API tokens configured and answers only on "
                                         "127.0.0.1/localhost", status_code=403)
            return await call_next(request)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        return render_login(request, exc.error, status_code=401)

    @app.exception_handler(SignIn)
    async def _sign_in(request: Request, exc: SignIn) -> Response:
        resp = RedirectResponse(exc.target, status_code=303)
        set_session_cookie(request, resp, auth, exc.token)
        return resp

    def problem(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": message}, status_code=status)
        return render(request, "error.html", status_code=status, message=message)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return problem(request, 404, str(exc))

    @app.exception_handler(BadInput)
    async def _bad_request(request: Request, exc: BadInput) -> Response:
        return problem(request, 400, str(exc))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(build_api())
    app.include_router(build_pages())
    return app
