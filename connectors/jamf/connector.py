"""Jamf Pro connector: computers and mobile devices from the Jamf Pro API.

Streams:
- `computers`: `GET /api/v3/computers-inventory` (Jamf Pro 11.23+; `/v1` is deprecated, `/v2` likewise;
  `computers_inventory_version: v1` for older servers) with the GENERAL, HARDWARE, USER_AND_LOCATION and
  OPERATING_SYSTEM sections;
- `mobile_devices`: `GET /api/v2/mobile-devices/detail` with the GENERAL, HARDWARE, USER_AND_LOCATION and
  NETWORK sections.
Both page with `page` (from 0) / `page-size`, stop at `totalCount`, and sort by id so pages stay stable.
Incremental runs send an RSQL `filter` on the last contact / inventory time (`>=` the saved cursor: a
record read again is skipped unchanged by its content hash). Filter fields are named as each endpoint
documents them: `general.lastContactTime` for computers, but unprefixed `lastInventoryUpdateDate` for mobile
devices (v2 detail filters on flat names; the prefixed one is refused with a 400). Jamf has no request rate
limit; its guidance is at most 5 concurrent connections, and this connector makes one request at a time.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from itam_sync.sdk.auth import BasicTokenAuth, OAuth2ClientCredentials
from itam_sync.sdk.connector import Connector, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.http_stream import HttpStream
from itam_sync.sdk.pagination import PagePaginator, Paginator


class JamfSettings(ConnectorSettings):
    """Jamf Pro server and credentials: an API client (preferred) or a user account."""

    base_url: str = Field(description="Jamf Pro server URL, e.g. https://acme.jamfcloud.com (without /api)")
    client_id: str | None = Field(default=None, description="API client id (Jamf Pro 10.49+); with client_secret")
    client_secret: str | None = Field(default=None, description="API client secret (use ${env:...})")
    username: str | None = Field(default=None, description="User account, instead of an API client; with password")
    password: str | None = Field(default=None, description="Password of the user account (use ${env:...})")
    token_url: str | None = Field(default=None, description="Token endpoint; default <base_url>/api/oauth/token for "
                                                            "an API client, <base_url>/api/v1/auth/token for a user")
    page_size: int = Field(default=200, ge=1, le=2000, description="Records per page (Jamf allows up to 2000)")
    incremental_filter: bool = Field(default=True, description="On incremental runs send an RSQL filter on the "
                                                               "last contact/inventory time; false reads all")
    timeout: float = Field(default=120.0, gt=0, description="Seconds to wait for one API response")
    computers_inventory_version: Literal["v1", "v2", "v3"] = Field(
        default="v3", description="Version of /api/<v>/computers-inventory: v3 (Jamf Pro 11.23+); v1 for older "
                                  "servers (deprecated by Jamf)")

    @model_validator(mode="after")
    def _one_credential(self) -> JamfSettings:
        client = self.client_id is not None or self.client_secret is not None
        user = self.username is not None or self.password is not None
        if client == user:
            raise ValueError("set either client_id + client_secret (API client) or username + password, not "
                             f"{'both' if client else 'neither'}")
        if client and not (self.client_id and self.client_secret):
            raise ValueError("an API client needs both client_id and client_secret")
        if user and not (self.username and self.password):
            raise ValueError("a user account needs both username and password")
        return self


class JamfStream(HttpStream):
    """A Jamf Pro inventory list: sections, stable sort, page/page-size paging, RSQL filter when incremental."""

    sections: ClassVar[tuple[str, ...]]
    sort: ClassVar[str]
    filter_field: ClassVar[str]  # the RSQL name of the cursor field, as this endpoint documents it
    records_path = "results"

    def make_paginator(self) -> Paginator:
        settings: JamfSettings = self.connector.settings  # type: ignore[assignment]
        return PagePaginator(size=settings.page_size, start=0, total_path="totalCount")

    def params(self, state: StreamState) -> dict[str, Any]:
        settings: JamfSettings = self.connector.settings  # type: ignore[assignment]
        params: dict[str, Any] = {"section": list(self.sections), "sort": self.sort}
        if state.cursor and not state.full and settings.incremental_filter:
            params["filter"] = f"{self.filter_field}>={state.cursor}"
        return params


class Computers(JamfStream):
    """Computers inventory (Macs): hardware, OS, user and location, management state."""

    name = "computers"
    path = "/api/v3/computers-inventory"
    sections = ("GENERAL", "HARDWARE", "USER_AND_LOCATION", "OPERATING_SYSTEM")
    sort = "id:asc"
    cursor_field = "general.lastContactTime"
    filter_field = "general.lastContactTime"

    def request_path(self, state: StreamState) -> str:
        settings: JamfSettings = self.connector.settings  # type: ignore[assignment]
        return f"/api/{settings.computers_inventory_version}/computers-inventory"


class MobileDevices(JamfStream):
    """Mobile devices (iPhone, iPad, Apple TV) with their details; NETWORK carries the IMEI."""

    name = "mobile_devices"
    path = "/api/v2/mobile-devices/detail"
    sections = ("GENERAL", "HARDWARE", "USER_AND_LOCATION", "NETWORK")
    sort = "mobileDeviceId:asc"
    cursor_field = "general.lastInventoryUpdateDate"
    filter_field = "lastInventoryUpdateDate"  # v2 detail filters on unprefixed names


class JamfConnector(Connector):
    """Jamf Pro computers and mobile devices over the Jamf Pro API (plain REST through `HttpClient`).

    An API client gets OAuth client-credentials tokens (`OAuth2ClientCredentials`); a user account trades
    basic credentials for a bearer token (`BasicTokenAuth`). Both tokens expire (30 minutes by default) and
    are refreshed before expiry or on a 401 by the shared token cache; no refresh token is involved.
    """

    type_name = "jamf"
    description = "Jamf Pro computers inventory and mobile devices"
    settings_model = JamfSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "base_url": "https://acme.jamfcloud.com",
        "client_id": "${env:JAMF_CLIENT_ID}",
        "client_secret": "${env:JAMF_CLIENT_SECRET}",
    }

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        s: JamfSettings = settings  # type: ignore[assignment]
        base = s.base_url.rstrip("/")
        self.http = HttpClient(base, timeout=(10, s.timeout))
        # The token request shares the client's session, so close() releases both.
        if s.client_id and s.client_secret:
            self.http.auth = OAuth2ClientCredentials(s.token_url or f"{base}/api/oauth/token", s.client_id,
                                                     s.client_secret, session=self.http.session)
        else:
            self.http.auth = BasicTokenAuth(s.token_url or f"{base}/api/v1/auth/token", s.username or "",
                                            s.password or "", session=self.http.session)

    def streams(self) -> list[Stream]:
        return [Computers(self), MobileDevices(self)]

    def close(self) -> None:
        self.http.close()
