"""CrowdStrike Falcon hosts: ids from the scroll query, then host records from the entities endpoint.

Plain `requests` through the engine's `HttpClient` (falconpy would add a second HTTP stack, its own retry
and token code for two endpoints). OAuth2 client credentials on the cloud's base URL: `POST /oauth2/token`
(answers 201), cached and refreshed by `OAuth2ClientCredentials`; a 401 refreshes it once.

Two steps, streamed so memory stays flat: `GET /devices/queries/devices-scroll/v1` pages host ids (the
opaque `meta.pagination.offset` token goes back as `offset`; it expires about two minutes after issue, so a
page of ids is turned into host records before the next page is asked for), and every `batch_size` ids
go to `POST /devices/entities/devices/v2` as `{"ids": [...]}`. Throttling (429 with the epoch-seconds
`X-RateLimit-RetryAfter` header) is honoured by the shared HTTP layer.

Incremental runs add the FQL clause `modified_timestamp:>='<cursor>'` (the engine saves the largest
`modified_timestamp` seen). `>=` rather than `>`: the timestamps have whole-second precision, so a host
modified in the same second as the last one seen is not skipped (re-reading one host costs nothing: its
content hash is unchanged).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from itam_sync.sdk.auth import OAuth2ClientCredentials
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.errors import HttpError, redact_url, snippet
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.http_stream import HttpStream
from itam_sync.sdk.pagination import CursorPaginator

log = logging.getLogger(__name__)

CLOUDS: dict[str, str] = {
    "us-1": "https://api.crowdstrike.com",
    "us-2": "https://api.us-2.crowdstrike.com",
    "eu-1": "https://api.eu-1.crowdstrike.com",
    "gov": "https://api.laggar.gcw.crowdstrike.com",  # US-GOV-1; US-GOV-2 needs `base_url`
}
ENTITIES_PATH = "/devices/entities/devices/v2"


def _http_url(v: str | None) -> str | None:
    if v is None:
        return None
    v = v.strip().rstrip("/")
    if not v.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL")
    return v


class CrowdStrikeSettings(ConnectorSettings):
    """Settings of a CrowdStrike Falcon connector."""

    client_id: str = Field(description="API client id (Support > API clients and keys), scope Hosts: Read")
    client_secret: str = Field(description="API client secret; give a ${env:...} or ${file:...} reference")
    cloud: Literal["us-1", "us-2", "eu-1", "gov"] = Field(
        default="us-1", description="Falcon cloud of the tenant: us-1, us-2, eu-1 or gov (US-GOV-1)")
    base_url: str | None = Field(default=None,
                                 description="API base URL overriding `cloud` (e.g. "
                                             "https://api.us-gov-2.crowdstrike.mil, or a test server)")
    token_url: str | None = Field(default=None, description="Token URL; default <base URL>/oauth2/token")
    member_cid: str | None = Field(default=None,
                                   description="Child CID to read (Flight Control parent credentials)")
    filter: str | None = Field(default=None,
                               description="Extra FQL filter ANDed to every query, e.g. "
                                           "\"platform_name:'Windows'\" (parenthesise OR clauses)")
    page_size: int = Field(default=5000, ge=1, le=10_000, description="Host ids per scroll page (`limit`)")
    batch_size: int = Field(default=1000, ge=1, le=5000,
                            description="Host ids per details request (the API takes at most 5,000)")
    timeout_s: float = Field(default=60, gt=0, description="Read timeout of one request, in seconds")

    @field_validator("base_url", "token_url")
    @classmethod
    def _urls(cls, v: str | None) -> str | None:
        return _http_url(v)

    def api_url(self) -> str:
        return self.base_url or CLOUDS[self.cloud]


class CrowdStrikeHosts(HttpStream):
    """Host records (one per sensor / agent id), fetched in batches as the scroll pages arrive."""

    name = "hosts"
    read_ahead_pages = 0  # one entities POST per page of ids, in order
    path = "/devices/queries/devices-scroll/v1"
    paginator = CursorPaginator(token_path="meta.pagination.offset", param="offset")
    records_path = "resources"  # the scroll returns host ids; `records` turns them into host records
    cursor_field = "modified_timestamp"
    connector: CrowdStrikeConnector

    def params(self, state: StreamState) -> dict[str, Any]:
        config = self.connector.config
        clauses = [config.filter] if config.filter else []
        if state.cursor and not state.full:
            clauses.append(f"modified_timestamp:>='{state.cursor}'")
        params: dict[str, Any] = {"limit": config.page_size}
        if clauses:
            params["filter"] = "+".join(clauses)
        return params

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        size = self.connector.config.batch_size
        batch: list[str] = []
        for host_id in self.fetch(state):
            if not isinstance(host_id, str) or not host_id:
                yield BadRecord("scroll query returned a host id that is not a string",
                                json.dumps(host_id, default=str)[:2000])
                continue
            batch.append(host_id)
            if len(batch) >= size:
                yield from self.hosts(batch)
                batch = []
        if batch:
            yield from self.hosts(batch)

    def hosts(self, ids: list[str]) -> Iterator[dict[str, Any] | BadRecord]:
        """The host records of `ids` (one POST)."""
        response = self.connector.http.request("POST", ENTITIES_PATH, json={"ids": ids})
        try:
            body = response.json()
        except ValueError:
            body = None
        resources = body.get("resources") if isinstance(body, dict) else None
        if not isinstance(resources, list):  # never read a broken page as "no hosts"
            raise HttpError(f"malformed response from {redact_url(response.url)}: no `resources` list: "
                            f"{snippet(response, 120)!r}", status=response.status_code, url=response.url)
        if body.get("errors"):
            log.warning("%s: host details returned errors: %s", self.connector.name,
                        json.dumps(body["errors"], default=str)[:500])
        for host in resources:
            if isinstance(host, dict):
                yield host
            else:
                yield BadRecord("host record is not an object", json.dumps(host, default=str)[:2000])


class CrowdStrikeConnector(Connector):
    """CrowdStrike Falcon hosts over the REST API (OAuth2 client credentials, scroll query + entities)."""

    type_name = "crowdstrike"
    description = "CrowdStrike Falcon: hosts with serial, MACs, hostname, OS, sensor, last seen, containment"
    settings_model = CrowdStrikeSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "cloud": "us-1",
        "client_id": "${env:FALCON_CLIENT_ID}",
        "client_secret": "${env:FALCON_CLIENT_SECRET}",
    }

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        self.config: CrowdStrikeSettings = settings  # type: ignore[assignment]
        base = self.config.api_url()
        extra = {"member_cid": self.config.member_cid} if self.config.member_cid else None
        self.http = HttpClient(base, timeout=(5, self.config.timeout_s))
        # The token POST shares the client's session (one connection pool, closed with it).
        self.http.auth = OAuth2ClientCredentials(self.config.token_url or f"{base}/oauth2/token",
                                                 self.config.client_id, self.config.client_secret,
                                                 extra_form=extra, session=self.http.session)

    def streams(self) -> list[Stream]:
        return [CrowdStrikeHosts(self)]

    def close(self) -> None:
        self.http.close()
