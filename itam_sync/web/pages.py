"""The HTML pages: server-rendered with Jinja2, usable without JavaScript (static/itam.js only adds
live search and auto-submitting filters)."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response

from itam_sync.http_guard import MAX_DB_INT
from itam_sync.model.canonical import EntityType
from itam_sync.web.auth import COOKIE, TokenAuth, bearer_token, end_session, set_session_cookie, strip_token
from itam_sync.web.identity import add_identity_pages
from itam_sync.web.render import _safe_next, int_param, render, render_login
from itam_sync.web.reporting import add_report_pages
from itam_sync.web.service import (
    COLLECTIONS,
    KIND_CHOICES,
    STATUS_FIELD,
    ListQuery,
    WebService,
)

log = logging.getLogger(__name__)

# Columns of each list page: (field, heading).
COLUMNS: dict[EntityType, list[tuple[str, str]]] = {
    EntityType.ASSET: [("serial_number", "Serial"), ("hostname", "Host name"), ("kind", "Kind"),
                       ("model", "Model"), ("assigned_to", "Assigned to"), ("lifecycle_state", "Lifecycle"),
                       ("last_seen", "Last seen")],
    EntityType.PERSON: [("display_name", "Name"), ("email", "E-mail"), ("employee_id", "Employee id"),
                        ("department", "Department"), ("title", "Title"), ("status", "Status")],
    EntityType.SUBSCRIPTION: [("product", "Product"), ("vendor", "Vendor"), ("seats_purchased", "Seats bought"),
                              ("seats_assigned", "Seats assigned"), ("cost", "Cost"), ("renewal_date", "Renewal"),
                              ("owner", "Owner")],
}
TITLES = {EntityType.ASSET: "Assets", EntityType.PERSON: "People", EntityType.SUBSCRIPTION: "Subscriptions"}
SEARCH_HINTS = {EntityType.ASSET: "serial, host name, assigned e-mail, MAC, id",
                EntityType.PERSON: "e-mail, name, employee id",
                EntityType.SUBSCRIPTION: "product, vendor, SKU"}


class LoginRequired(Exception):
    """The page needs a token: answer with the sign-in form (401)."""

    def __init__(self, error: str | None = None) -> None:
        super().__init__(error or "sign-in required")
        self.error = error


class SignIn(Exception):
    """A valid `?token=` arrived: set the session cookie and redirect to `target` (the URL without it)."""

    def __init__(self, token: str, target: str) -> None:
        super().__init__("sign in")
        self.token = token
        self.target = target


def require_browser(request: Request) -> None:
    """A page needs the session cookie, a bearer token, or a one-time `?token=` (swapped for the cookie)."""
    auth: TokenAuth = request.app.state.auth
    if not auth.enabled:
        return
    token = request.query_params.get("token")
    if token is not None:
        if auth.check_token(token):
            q = strip_token(request.url.query)
            raise SignIn(token, request.url.path + ("?" + q if q else ""))
        raise LoginRequired("that token is not valid")
    if auth.check_session(request.cookies.get(COOKIE)):
        return
    if auth.check_token(bearer_token(request.headers.get("authorization"))):
        return
    raise LoginRequired()


def _service(request: Request) -> WebService:
    svc: WebService = request.app.state.service
    return svc


def _limit(request: Request) -> int:
    n = int_param(request, "limit")
    default: int = request.app.state.settings.web.page_size
    return max(1, min(n, 500)) if n else default


def list_query(request: Request, etype: EntityType) -> ListQuery:
    p = request.query_params
    conflict = {"yes": True, "no": False}.get(p.get("conflict", ""))
    presence = p.get("presence") if p.get("presence") in ("active", "missing") else None
    return ListQuery(q=p.get("q", "")[:200], kind=p.get("kind") or None, status=p.get("status") or None,
                     source=p.get("source") or None, presence=presence, conflict=conflict,
                     after=int_param(request, "after"), before=int_param(request, "before"), limit=_limit(request))


# -- routes ---------------------------------------------------------------------------------------------
def build_pages() -> APIRouter:
    """The HTML routes (not part of the OpenAPI schema)."""
    public = APIRouter(include_in_schema=False)
    pages = APIRouter(include_in_schema=False, dependencies=[Depends(require_browser)])

    @public.get("/login")
    def login_form(request: Request) -> Response:
        if not request.app.state.auth.enabled:
            return RedirectResponse("/", status_code=303)
        return render_login(request, None)

    @public.post("/login")
    async def login(request: Request) -> Response:


        auth: TokenAuth = request.app.state.auth
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        target = _safe_next(form.get("next"))
        if not auth.enabled:
            return RedirectResponse(target, status_code=303)
        token = form.get("token", "").strip()
        if not auth.check_token(token):
            return render(request, "login.html", status_code=401, error="that token is not valid", next=target,
                          nav="login")
        resp = RedirectResponse(target, status_code=303)
        set_session_cookie(request, resp, auth)
        return resp

    @public.post("/logout")
    def logout(request: Request) -> Response:
        """Sign out (a POST from the pages' own form: a link or another site cannot sign anyone out)."""
        resp = RedirectResponse("/login" if request.app.state.auth.enabled else "/", status_code=303)
        end_session(request, resp, request.app.state.auth)
        return resp

    @pages.get("/")
    def overview(request: Request) -> Response:
        return render(request, "overview.html", nav="overview", o=_service(request).overview(),
                      dash=request.app.state.reports.dashboard(fresh=request.query_params.get("fresh") == "1"))

    @pages.get("/search")
    def search(request: Request) -> Response:
        """Search assets and people at once; one hit goes straight to its page."""
        q = request.query_params.get("q", "").strip()[:200]
        svc = _service(request)
        results = []
        for coll, etype in (("assets", EntityType.ASSET), ("people", EntityType.PERSON)):
            page = svc.list_entities(etype, ListQuery(q=q, limit=20), count=False) if q else None
            results.append((coll, etype, page))
        hits = [(coll, item) for coll, _, page in results if page for item in page.items]
        if len(hits) == 1:
            return RedirectResponse(f"/{hits[0][0]}/{hits[0][1].id}", status_code=303)
        return render(request, "search.html", nav="search", q=q, results=results, columns=COLUMNS,
                      titles=TITLES)

    def add_collection(coll: str, etype: EntityType) -> None:
        def list_page(request: Request) -> Response:
            query = list_query(request, etype)
            page = _service(request).list_entities(etype, query)
            status = STATUS_FIELD.get(etype)
            return render(request, "list.html", nav=coll, collection=coll, etype=etype, title=TITLES[etype],
                          noun=etype.value, query=query, page=page, columns=COLUMNS[etype],
                          kinds=KIND_CHOICES.get(etype, ()),
                          status_label=status[0].replace("_", " ") if status else None,
                          statuses=status[1] if status else (), sources=_service(request).sources(),
                          search_hint=SEARCH_HINTS[etype])

        def entity_page(request: Request, ref: str) -> Response:
            before = int_param(request, "before")
            as_of = request.query_params.get("as_of", "").strip()
            if as_of:
                then = _service(request).as_of(etype, ref, as_of)
                if ref != str(then.id):
                    return RedirectResponse(f"/{coll}/{then.id}?{urlencode({'as_of': as_of})}", status_code=303)
                return render(request, "as_of.html", nav=coll, collection=coll, etype=etype, e=then,
                              as_of_input=as_of)
            detail = _service(request).entity(etype, ref, history_before=before, history_limit=50)
            if ref != str(detail.id):
                return RedirectResponse(f"/{coll}/{detail.id}", status_code=303)
            return render(request, "entity.html", nav=coll, collection=coll, etype=etype, e=detail,
                          title=_entity_title(etype, detail.fields), history_before=before,
                          person_columns=COLUMNS[EntityType.ASSET])

        pages.add_api_route(f"/{coll}", list_page, methods=["GET"], name=f"{coll}_list")
        pages.add_api_route(f"/{coll}/{{ref}}", entity_page, methods=["GET"], name=f"{coll}_entity")

    for coll, etype in COLLECTIONS.items():
        add_collection(coll, etype)

    @pages.get("/conflicts")
    def conflicts(request: Request) -> Response:
        status = request.query_params.get("status", "open")
        status = status if status in ("open", "resolved", "all") else "open"
        page = _service(request).conflicts(None if status == "all" else status, int_param(request, "after"),
                                           _limit(request))
        return render(request, "conflicts.html", nav="conflicts", page=page, status=status)

    @pages.get("/runs")
    def runs(request: Request) -> Response:
        p = request.query_params
        page = _service(request).runs(int_param(request, "before"), _limit(request), p.get("connector") or None,
                                      p.get("status") or None)
        return render(request, "runs.html", nav="runs", page=page, connector=p.get("connector", ""),
                      status=p.get("status", ""), sources=_service(request).sources())

    @pages.get("/runs/{run_id}")
    def run(request: Request, run_id: Annotated[int, Path(ge=0, le=MAX_DB_INT)]) -> Response:
        return render(request, "run.html", nav="runs", r=_service(request).run(run_id))

    @pages.get("/audit")
    def audit(request: Request) -> Response:
        """Verify the merge log's hash chain on demand (it reads every row)."""
        p = request.query_params
        result = _service(request).verify(p.get("anchor") or None) if p.get("verify") == "1" else None
        return render(request, "audit.html", nav="audit", result=result, anchor=p.get("anchor", ""))

    add_report_pages(pages)
    add_identity_pages(pages)
    router = APIRouter(include_in_schema=False)
    router.include_router(public)
    router.include_router(pages)
    return router


def _entity_title(etype: EntityType, fields: list[Any]) -> str:
    values = {f.field: f.value for f in fields}
    if etype is EntityType.ASSET:
        name = values.get("serial_number") or values.get("hostname") or values.get("instance_id")
        return f"{str(values.get('kind') or 'asset').replace('_', ' ').capitalize()} {name or ''}".strip()
    if etype is EntityType.PERSON:
        return str(values.get("display_name") or values.get("email") or "Person")
    return str(values.get("product") or "Subscription")


