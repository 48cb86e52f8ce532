"""SentinelOne agents: `GET /web/api/v2.1/agents` on the management console, cursor paged.

Plain `requests` through the engine's `HttpClient` with `Authorization: ApiToken <token>`. Pages come as
`{"data": [...], "pagination": {"nextCursor": ...}}`; the cursor goes back as `cursor` until it is null
(`CursorPaginator`). Throttling (429) is handled by the shared HTTP layer.

The console leaves decommissioned agents out unless `isDecommissioned` asks for them; the connector asks for
both (`isDecommissioned=true,false`), so an agent decommissioned since the last run comes back with
`isDecommissioned: true` (mapped to `health_state: decommissioned`, `edr_protected: false`) instead of
vanishing and being marked missing on the next full run.

Incremental runs send `updatedAt__gt=<cursor>`, the largest `updatedAt` the last run saw (microsecond
precision, so `__gt` skips nothing). API tokens are static: an expired or revoked token is a 401 that fails
the run as a configuration error (there is nothing to refresh).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from itam_sync.sdk.auth import HeaderAuth
from itam_sync.sdk.connector import Connector, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.http_stream import HttpStream
from itam_sync.sdk.pagination import CursorPaginator

API_PATH = "/web/api/v2.1"
MAX_PAGE = 1000


class SentinelOneSettings(ConnectorSettings):
    """Settings of a SentinelOne connector."""

    base_url: str = Field(description="Management console URL, e.g. https://acme.sentinelone.net")
    api_token: str = Field(description="API token of a (service) user with the Viewer role or better; give "
                                       "a ${env:...} or ${file:...} reference")
    page_size: int = Field(default=MAX_PAGE, ge=1, le=MAX_PAGE, description="Agents per page (`limit`)")
    account_ids: list[str] = Field(default_factory=list, description="Only these accounts (`accountIds`)")
    site_ids: list[str] = Field(default_factory=list, description="Only these sites (`siteIds`)")
    include_decommissioned: bool = Field(default=True, description="Read decommissioned agents too "
                                                                   "(`isDecommissioned=true,false`)")
    timeout_s: float = Field(default=60, gt=0, description="Read timeout of one request, in seconds")

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be the console URL, e.g. https://acme.sentinelone.net")
        return v.removesuffix(API_PATH)  # the API path is added by the connector; accept either form


class SentinelOneAgents(HttpStream):
    """Every agent (one per installation; a reinstalled machine shows up as a new agent)."""

    name = "agents"
    path = f"{API_PATH}/agents"
    paginator = CursorPaginator(token_path="pagination.nextCursor", param="cursor")
    records_path = "data"
    cursor_field = "updatedAt"
    connector: SentinelOneConnector

    def params(self, state: StreamState) -> dict[str, Any]:
        config = self.connector.config
        params: dict[str, Any] = {"limit": config.page_size}
        if config.account_ids:
            params["accountIds"] = ",".join(config.account_ids)
        if config.site_ids:
            params["siteIds"] = ",".join(config.site_ids)
        if config.include_decommissioned:
            params["isDecommissioned"] = "true,false"
        if state.cursor and not state.full:
            params["updatedAt__gt"] = state.cursor
        return params


class SentinelOneConnector(Connector):
    """SentinelOne endpoint agents over the management REST API (API token, cursor paging)."""

    type_name = "sentinelone"
    description = "SentinelOne: agents with serial, MACs, computer name, OS, agent version, threat state"
    settings_model = SentinelOneSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "base_url": "https://acme.sentinelone.net",
        "api_token": "${env:S1_API_TOKEN}",
    }

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        self.config: SentinelOneSettings = settings  # type: ignore[assignment]
        auth = HeaderAuth("Authorization", f"ApiToken {self.config.api_token}")
        self.http = HttpClient(self.config.base_url, auth, timeout=(5, self.config.timeout_s))

    def streams(self) -> list[Stream]:
        return [SentinelOneAgents(self)]

    def close(self) -> None:
        self.http.close()
