"""Identity in the web UI and API: identifiers that join nothing (ambiguous values, operator blocks and allows)
and suggested matches. Read-only like the rest of the UI: the pages name the `itam-sync` commands that change
them (`identifiers block|allow`, `suggestions link|dismiss`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from itam_sync.engine.identifiers import list_identifiers
from itam_sync.web.render import render
from itam_sync.web.service import WebService

TypeQ = Annotated[Literal["asset", "person", "subscription"] | None, Query(description="Only this entity type.")]


class IdentifierOut(BaseModel):
    """An identifier value that joins nothing (or an operator's allow of one)."""

    entity_type: str
    value: str = Field(description="The match key: kind:value, e.g. mac:3c18a00b7c11.")
    kind: str
    scope: str = Field(description="hardware, instance, identity, registration, network, address, label, weak")
    status: str = Field(description="ambiguous (joins nothing), blocked (no record holds it yet), allowed")
    origin: str = Field(description="conflict, source, config or operator")
    records: int = Field(description="Records holding it (when last judged).")
    entities: int = Field(description="Entities those records are in (when last judged).")
    since: str | None
    why: str
    decision: dict[str, Any] | None = Field(None, description="The operator's block or allow: action, reason, "
                                                              "actor, at.")


class SuggestionOut(BaseModel):
    """Two entities that are probably one thing: never merged until an operator accepts."""

    id: int
    entity_type: str
    entity_a: int
    entity_b: int
    score: float
    evidence: list[str]
    status: str = Field(description="open, accepted, dismissed or gone (no longer found)")
    reason: str | None
    actor: str | None
    created_at: str
    decided_at: str | None


def _svc(request: Request) -> WebService:
    svc: WebService = request.app.state.service
    return svc


def identifiers(request: Request, entity_type: str | None) -> list[IdentifierOut]:
    svc = _svc(request)
    return [IdentifierOut(**r) for r in list_identifiers(svc.store, svc.settings, entity_type)]


def suggestions(request: Request, status: str | None) -> list[SuggestionOut]:
    with _svc(request).store.begin() as repo:
        return [SuggestionOut(**r) for r in repo.identity.suggestions(status)]


def add_identity_pages(router: APIRouter) -> None:
    """/identifiers and /suggestions."""

    @router.get("/identifiers")
    def identifiers_page(request: Request) -> Response:
        etype = request.query_params.get("type") or None
        etype = etype if etype in ("asset", "person", "subscription") else None
        return render(request, "identifiers.html", nav="identifiers", rows=identifiers(request, etype),
                      etype=etype or "")

    @router.get("/suggestions")
    def suggestions_page(request: Request) -> Response:
        status = request.query_params.get("status", "open")
        status = status if status in ("open", "accepted", "dismissed", "gone", "all") else "open"
        return render(request, "suggestions.html", nav="suggestions", status=status,
                      rows=suggestions(request, None if status == "all" else status))


def add_identity_api(api: APIRouter) -> None:
    """GET /api/v1/identifiers and /api/v1/suggestions."""

    @api.get("/identifiers", response_model=list[IdentifierOut], tags=["identity"])
    def get_identifiers(request: Request, type: TypeQ = None) -> list[IdentifierOut]:  # noqa: A002 - the query name
        """Identifier values that join nothing: value, kind, scope, how many records and entities hold it, since
        when and why (records that cannot be one thing hold it, one source reports it on two different records,
        the config or an operator says so); and operator allows."""
        return identifiers(request, type)

    @api.get("/suggestions", response_model=list[SuggestionOut], tags=["identity"])
    def get_suggestions(request: Request, status: Annotated[Literal["open", "accepted", "dismissed", "gone", "all"],
                                                            Query()] = "open") -> list[SuggestionOut]:
        """Suggested matches (as of the last `itam-sync suggestions`): pairs of entities with no shared usable key
        but strong weak evidence, with a score and the evidence; accepted or dismissed ones with who and why."""
        return suggestions(request, None if status == "all" else status)
