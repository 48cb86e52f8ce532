"""The read-only web UI and REST API: `create_app(settings)` builds the FastAPI application.

    itam-sync web --config itam-sync.yaml            # http://127.0.0.1:8080

HTML pages (server-rendered, Jinja2) live in pages.py, the JSON API under /api/v1 in api.py, both over
service.WebService. Auth (auth.py): with tokens configured every page and endpoint needs one (the OpenAPI
schema too); with none the app answers only requests addressed to the loopback host (the CLI refuses to bind
anything else).

Every request passes itam_sync.http_guard first (body cap, JSON depth) and every answer carries its
security headers (a Content-Security-Policy with no inline script, no framing by other sites, nosniff, a
same-origin referrer policy). A POST (sign in, sign out) from another site is refused: its Origin, or
else its Referer, must name this server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from itam_sync import __version__
from itam_sync.http_guard import WEB_HEADERS, RequestGuard, SecurityHeaders, is_loopback_host
from itam_sync.settings import Settings
from itam_sync.store import Store
from itam_sync.web.auth import Sessions, TokenAuth, configured_tokens, set_session_cookie
from itam_sync.web.pages import LoginRequired, SignIn, build_pages
from itam_sync.web.render import render, render_login
from itam_sync.web.reporting import ReportRunner
from itam_sync.web.service import BadInput, NotFound, WebService

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def cross_site(request: Request) -> str | None:
    """Why a state-changing request did not come from this server's own pages, or None if it did (or came
    from no browser at all: scripts send neither Origin nor Referer)."""
    host = request.headers.get("host", "").lower()
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"the browser says this request comes from another site (Sec-Fetch-Site: {fetch_site})"
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value is None:
            continue
        sender = urlsplit(value).netloc.lower() if value != "null" else "null"
        if sender != host:
            return f"it was sent from {sender or value!r} ({header.capitalize()}), not from this server ({host})"
        return None
    return None


def create_app(settings: Settings, tokens: list[str] | None = None, store: Store | None = None) -> FastAPI:
    """The web application over the store of `settings`.

    `tokens` defaults to the configured ones (`web.api_tokens`, resolved now, and ITAM_SYNC_WEB_TOKENS);
    pass `store` to reuse an opened store (tests), else it is opened (and migrated) here.
    """
    from itam_sync.web.api import build_api, require_token

    limits = settings.http
    auth = TokenAuth.from_tokens(configured_tokens(settings) if tokens is None else tokens,
                                 Sessions(idle_s=limits.session_idle_s, max_s=limits.session_max_s))
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
        # The bundled Swagger/ReDoc pages load their scripts from a CDN; this server works offline. The schema
        # is served below, behind the token.
        docs_url=None, redoc_url=None, openapi_url=None)
    app.state.auth = auth
    app.state.service = WebService(store, settings)
    app.state.settings = settings
    app.state.reports = ReportRunner(store, settings)

    if not auth.enabled:
        @app.middleware("http")
        async def loopback_only(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            # Without tokens the server is for this machine only; checking the Host header also stops a
            # web page from reaching it through DNS rebinding.
            if not is_loopback_host(request.headers.get("host", "")):
                return PlainTextResponse("this server has no API tokens configured and answers only on "
                                         "127.0.0.1/localhost", status_code=403)
            return await call_next(request)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        return render_login(request, exc.error, status_code=401)

    @app.exception_handler(SignIn)
    async def _sign_in(request: Request, exc: SignIn) -> Response:
        resp = RedirectResponse(exc.target, status_code=303)
        set_session_cookie(request, resp, auth)
        return resp

    def problem(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": message}, status_code=status)
        return render(request, "error.html", status_code=status, message=message)

    @app.middleware("http")
    async def same_site_forms(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # CSRF: a form on another site must not sign a browser in (into the attacker's session) or out.
        why = cross_site(request) if request.method in UNSAFE_METHODS else None
        if why is not None:
            log.warning("refused a cross-site %s %s: %s", request.method, request.url.path, why)
            return problem(request, 403, f"refused: {why}; use the form on this server's own pages")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/api/"):
            return await request_validation_exception_handler(request, exc)
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}"
                          for e in exc.errors())
        return problem(request, 400, f"bad request: {where}")

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> Response:
        # A number too large for a date or a database integer (e.g. ?days=999999999): the request's fault.
        return problem(request, 400, f"a number in the request is out of range ({exc})")

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return problem(request, 404, str(exc))

    @app.exception_handler(BadInput)
    async def _bad_request(request: Request, exc: BadInput) -> Response:
        return problem(request, 400, str(exc))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_token)])
    def openapi_schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(build_api())
    app.include_router(build_pages())
    app.add_middleware(RequestGuard, max_bytes=limits.max_body_bytes, max_json_depth=limits.max_json_depth)
    app.add_middleware(SecurityHeaders, headers=WEB_HEADERS)  # outermost: on every answer, refusals too
    return app
