"""The REST API under /api/v1 (JSON; read-only). Lists take the same search and filters as the pages and
page by id: pass a page's `next_after` as `after` to get the next one.

Auth: `Authorization: Bearer <token>` when the server has tokens configured (401 otherwise).
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from itam_sync.http_guard import MAX_DB_INT
from itam_sync.model.canonical import EntityType
from itam_sync.web.auth import COOKIE, TokenAuth
from itam_sync.web.identity import add_identity_api
from itam_sync.web.models import (
    AsOfDetail,
    ConflictPage,
    EntityDetail,
    EntityPage,
    LogPage,
    Overview,
    Problem,
    ReportInfo,
    ReportOut,
    RunOut,
    RunPage,
    VerifyOut,
)
from itam_sync.web.service import COLLECTIONS, ListQuery, WebService

log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False, description="An API token from web.api_tokens or ITAM_SYNC_WEB_TOKENS.")


def require_token(request: Request,
                  creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """401 unless the request carries a configured token (no tokens configured: local-only, no auth).

    A browser signed in to the pages may also read the API with its session cookie (the pages link to
    JSON and CSV); the API is read-only and sends no CORS headers, so other sites cannot use that."""
    auth: TokenAuth = request.app.state.auth
    if not auth.enabled:
        return
    if creds is None and auth.check_session(request.cookies.get(COOKIE)):
        return
    if creds is None:
        raise HTTPException(401, "missing bearer token: send Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})
    if not auth.check_token(creds.credentials):
        raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def _svc(request: Request) -> WebService:
    svc: WebService = request.app.state.service
    return svc


Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
After = Annotated[int | None, Query(ge=0, le=MAX_DB_INT,
                                    description="Return records with ids above this (a page's next_after).")]
Before = Annotated[int | None, Query(ge=0, le=MAX_DB_INT,
                                     description="Return the page just before this id (a page's prev_before).")]
RunId = Annotated[int, Path(ge=0, le=MAX_DB_INT, description="A sync run's id.")]
MAX_DAYS = 36500  # report windows: a century: past that a date window is meaningless (and overflows a date)
StatusQ = Annotated[str | None, Query(description="Assets: lifecycle_state; people: status (active, suspended, "
                                      "terminated); subscriptions: billing_period.")]
ERRORS: dict[int | str, dict[str, object]] = {401: {"model": Problem, "description": "No or invalid token"},
                                              404: {"model": Problem, "description": "Not found"}}


def build_api() -> APIRouter:
    """The /api/v1 router."""
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token)], responses=ERRORS)

    @api.get("/overview", response_model=Overview, tags=["overview"])
    def overview(request: Request) -> Overview:
        """Counts of assets, people, subscriptions, open conflicts, quarantined records, merge-log rows, and
        the latest sync runs."""
        return _svc(request).overview()

    def add_collection(coll: str, etype: EntityType) -> None:
        noun = {"assets": "asset", "people": "person", "subscriptions": "subscription"}[coll]

        def list_entities(
            request: Request,
            q: Annotated[str, Query(max_length=200, description="Search: assets by the start of serial, host "
                                    "name or assigned-to e-mail, id, MAC, IMEI, instance id; people by e-mail, "
                                    "employee id or part of the name; subscriptions by product, vendor, SKU.")] = "",
            kind: Annotated[str | None, Query(description="Assets: kind (laptop, server, vm, ...).")] = None,
            status: StatusQ = None,
            source: Annotated[str | None, Query(description="Fed by this connector instance.")] = None,
            presence: Annotated[Literal["active", "missing"] | None,
                                Query(description="missing: no live source reports it any more.")] = None,
            conflict: Annotated[bool | None, Query(description="true: on either side of an open identity "
                                                   "conflict; false: not.")] = None,
            after: After = None, before: Before = None, limit: Limit = 50,
        ) -> EntityPage:
            query = ListQuery(q=q, kind=kind, status=status, source=source, presence=presence, conflict=conflict,
                              after=after, before=before, limit=limit)
            return _svc(request).list_entities(etype, query)

        def get_entity(request: Request, ref: str,
                       history_limit: Annotated[int, Query(ge=1, le=500)] = 50) -> EntityDetail:
            return _svc(request).entity(etype, ref, history_limit=history_limit)

        def get_history(request: Request, ref: str, before: Before = None, limit: Limit = 50) -> LogPage:
            return _svc(request).history(etype, ref, before, limit)

        def get_as_of(request: Request, ref: str,
                      at: Annotated[str, Query(max_length=40, description="A date (its end) or a UTC time: "
                                               "2026-06-30 or 2026-06-30T12:00:00Z.")]) -> AsOfDetail:
            return _svc(request).as_of(etype, ref, at)

        get_as_of.__doc__ = (f"One {noun} as it stood at a past time, rebuilt from the merge log alone (values, "
                             f"the source and rule that set them, feeding records, history up to then).")
        api.add_api_route(f"/{coll}/{{ref}}/as-of", get_as_of, methods=["GET"], response_model=AsOfDetail,
                          tags=[coll], name=f"{noun}_as_of", summary=f"One {noun} at a past time",
                          responses={400: {"model": Problem, "description": "Not a date or time"}})
        list_entities.__doc__ = (f"List {coll} (golden records) with search and filters, paginated by id.")
        get_entity.__doc__ = (f"One {noun} by id or key (e.g. serial_number:C02FK1ABQ6L4, a bare serial or "
                              f"e-mail): every field's value, winning source, age, rule and competing values; "
                              f"the source records; open conflicts; the newest merge history.")
        get_history.__doc__ = f"The merge log of one {noun}, newest first; page with `before`."
        api.add_api_route(f"/{coll}", list_entities, methods=["GET"], response_model=EntityPage, tags=[coll],
                          name=f"list_{coll}", summary=f"List {coll}")
        api.add_api_route(f"/{coll}/{{ref}}", get_entity, methods=["GET"], response_model=EntityDetail,
                          tags=[coll], name=f"get_{noun}", summary=f"Get one {noun}, explained")
        api.add_api_route(f"/{coll}/{{ref}}/history", get_history, methods=["GET"], response_model=LogPage,
                          tags=[coll], name=f"{noun}_history", summary=f"Merge history of one {noun}")

    for coll, etype in COLLECTIONS.items():
        add_collection(coll, etype)

    @api.get("/conflicts", response_model=ConflictPage, tags=["conflicts"])
    def conflicts(request: Request,
                  status: Annotated[Literal["open", "resolved", "all"], Query()] = "open",
                  after: After = None, limit: Limit = 50) -> ConflictPage:
        """Identity conflicts: links refused because a record's key points at an entity that contradicts it."""
        return _svc(request).conflicts(None if status == "all" else status, after, limit)

    @api.get("/runs", response_model=RunPage, tags=["runs"])
    def runs(request: Request, connector: str | None = None, status: str | None = None,
             before: Annotated[int | None, Query(ge=0, le=MAX_DB_INT, description="Runs with ids below this "
                                                 "(next_before).")] = None, limit: Limit = 50) -> RunPage:
        """Sync runs, newest first: mode, status, per-stream counts, duration and error."""
        return _svc(request).runs(before, limit, connector, status)

    @api.get("/runs/{run_id}", response_model=RunOut, tags=["runs"])
    def run(request: Request, run_id: RunId) -> RunOut:
        """One sync run."""
        return _svc(request).run(run_id)

    @api.get("/audit/verify", response_model=VerifyOut, tags=["audit"],
             responses={400: {"model": Problem, "description": "Malformed anchor"}})
    def verify(request: Request,
               anchor: Annotated[str | None, Query(max_length=100, description="ROW_ID:SHA256 of a chain head kept "
                                                   "earlier (an export's last_id and last_hash).")] = None
               ) -> VerifyOut:
        """Walk the merge log's hash chain and name the first row that was altered, inserted or deleted. Reads
        every row: seconds on a large store."""
        return _svc(request).verify(anchor)

    @api.get("/reports", response_model=list[ReportInfo], tags=["reports"])
    def reports(request: Request) -> list[ReportInfo]:
        """The available reports."""
        return [ReportInfo(name=i.name, title=i.title, description=i.description, url=f"/api/v1/reports/{i.name}")
                for i in request.app.state.reports.infos()]

    @api.get("/reports/{name}", response_model=ReportOut, tags=["reports"],
             responses={200: {"content": {"text/csv": {}}}})
    def report(request: Request, name: str,
               days: Annotated[int | None, Query(ge=0, le=MAX_DAYS, description="The report's window in days, where it "
                                                 "takes one (see GET /reports).")] = None,
               format: Annotated[Literal["json", "csv"], Query()] = "json",
               part: Annotated[Literal["rows", "totals"], Query(description="CSV of the rows or of the report's "
                                                                "totals (JSON has both).")] = "rows",
               kind: Annotated[str | None, Query(max_length=200, description="Only assets of this kind.")] = None,
               department: Annotated[str | None, Query(max_length=200, description="Only this department (the "
                                                       "asset's, else its holder's).")] = None,
               source: Annotated[str | None, Query(max_length=200, description="Only records fed by this "
                                                   "connector instance.")] = None,
               location: Annotated[str | None, Query(max_length=200, description="Only assets at this "
                                                     "location.")] = None) -> ReportOut | Response:
        """A report's rows (JSON, or CSV with format=csv), filtered by kind, department, source and location;
        GET /reports lists the reports."""
        from itam_sync.engine.operations import OperationError
        from itam_sync.insight.base import ReportFilters
        from itam_sync.web.service import NotFound

        runner = request.app.state.reports
        filters = ReportFilters(kind or None, department or None, source or None, location or None)
        try:
            info = runner.info(name)
            report = runner.run(name, days, filters=filters)
        except OperationError as exc:
            if "no report" in str(exc):
                raise NotFound(str(exc)) from None
            raise HTTPException(400, str(exc)) from None
        result = report.result
        if format == "csv":
            if part == "totals" and not result.totals_columns:
                raise HTTPException(400, f"report {name!r} has no totals")
            return Response((result.totals_only() if part == "totals" else result).to_csv(),
                            media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
        summary = {"generated_at": result.generated_at, "params": result.params, "notes": result.notes}
        if result.totals_columns:
            summary.update(totals_title=result.totals_title, totals_columns=result.totals_columns,
                           totals=report.totals)
        return ReportOut(name=name, title=info.title, description=info.description, columns=result.columns,
                         rows=report.rows, summary=summary)

    add_identity_api(api)
    return api
