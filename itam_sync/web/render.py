"""Page rendering shared by the HTML pages and the report pages: templates, filters, query helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from itam_sync import __version__, clock
from itam_sync.audit.explain import age_of
from itam_sync.web.auth import TokenAuth, strip_token
from itam_sync.web.service import BadInput

TEMPLATES = Path(__file__).parent / "templates"


# -- template helpers ---------------------------------------------------------------------------------
def fmt(value: Any) -> str:
    """A golden value for display."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return fmt(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.2f}"
    return str(value)


def _templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(TEMPLATES))
    t.env.filters.update(fmt=fmt, pretty=pretty, num=num)
    t.env.globals.update(version=__version__)
    return t


_TEMPLATES = _templates()


def with_params(request: Request, **changes: Any) -> str:
    """The current URL with some query parameters changed (None removes one)."""
    params = dict(parse_qsl(request.url.query, keep_blank_values=False))
    params.pop("token", None)
    for k, v in changes.items():
        if v is None or v == "":
            params.pop(k, None)
        else:
            params[k] = str(v)
    q = urlencode(params)
    return request.url.path + ("?" + q if q else "")


def render(request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    auth: TokenAuth = request.app.state.auth
    ctx.setdefault("nav", "")
    ctx.update(status_code=status_code, auth_enabled=auth.enabled, with_params=lambda **kw: with_params(request, **kw),
               reports_enabled=True)
    return _TEMPLATES.TemplateResponse(request, name, ctx, status_code=status_code)


def render_login(request: Request, error: str | None, status_code: int = 200) -> HTMLResponse:
    target = request.url.path + (f"?{strip_token(request.url.query)}" if strip_token(request.url.query) else "")
    if request.url.path in ("/login", "/logout"):
        target = _safe_next(request.query_params.get("next"))
    return render(request, "login.html", status_code=status_code, error=error, next=target, nav="login")


def _safe_next(value: str | None) -> str:
    """Only local paths: a sign-in link must not bounce the browser to another site."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def int_param(request: Request, name: str) -> int | None:
    v = request.query_params.get(name)
    if v is None or v == "":
        return None
    if not (v.isascii() and v.isdigit()) or len(v) > 18:
        raise BadInput(f"{name} must be a whole number, not {v!r}")
    return int(v)


def age(at: str | None) -> str:
    return age_of(at, clock.now())


_TEMPLATES.env.filters["age"] = age
