"""Microsoft Entra ID through Microsoft Graph: users (people), devices (assets), subscribed SKUs (licences).

Tokens come from msal (client credentials; `MsalClientCredentials`), which is Microsoft's own token client
and speaks `requests`; Graph itself is plain REST, so the engine's `HttpClient` does paging by
`@odata.nextLink`, 429/503 `Retry-After` waits, and the one token refresh on a 401. (msgraph-sdk is async
over httpx and would bypass all of that.) `authority_host` and `graph_url` are settings for national clouds.

Users are read with a delta query. A full run starts a new delta round (`GET /v1.0/users/delta`, which
returns every user) and follows the next links until the last page carries `@odata.deltaLink`; that link
is saved as the stream's cursor (`state.new_cursor`) and called verbatim on the next incremental run,
which then returns only what changed. A user deleted since then arrives as `{"id", "@removed": {"reason"}}`
and is passed through: the mapping turns it into status `terminated` ("changed" = soft-deleted and
restorable, "deleted" = gone for good); a later full run marks it missing. A saved delta link that Graph no
longer honours (410 Gone) starts a new round in the same run.

The manager is tracked by selecting `manager` (Graph's documented way for users delta; `$expand` is not
supported there), which yields `manager@delta` ids only; `managers.ManagerResolver` turns them into the
manager's addresses (see there). Devices and SKUs are small and have no useful change tracking here
(`$expand=registeredOwners` is not available on devices/delta), so they are read whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar, cast

import requests
from pydantic import Field

from itam_sync.sdk.connector import BadRecord, Connector, ConnectorError, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.http_stream import HttpStream
from itam_sync.sdk.msal_auth import MsalClientCredentials
from itam_sync.sdk.pagination import NextLinkPaginator

from .managers import ManagerResolver, TooManyLookups

log = logging.getLogger(__name__)

USER_PROPERTIES = ["id", "userPrincipalName", "mail", "otherMails", "displayName", "givenName", "surname",
                   "accountEnabled", "employeeId", "employeeType", "department", "jobTitle", "companyName",
                   "officeLocation", "employeeHireDate", "employeeLeaveDateTime", "createdDateTime"]
DEVICE_PROPERTIES = ("id,deviceId,displayName,operatingSystem,operatingSystemVersion,accountEnabled,"
                     "approximateLastSignInDateTime,isCompliant,isManaged,trustType,manufacturer,model,"
                     "registrationDateTime,profileType")


class EntraSettings(ConnectorSettings):
    """Settings of the `entra` connector."""

    tenant_id: str = Field(description="Directory (tenant) id or a verified domain")
    client_id: str = Field(description="Application (client) id of the app registration")
    client_secret: str = Field(description="Client secret of the app registration; a ${env:...} reference")
    authority_host: str = Field(default="https://login.microsoftonline.com",
                                description="Microsoft identity platform host (national clouds differ)")
    graph_url: str = Field(default="https://graph.microsoft.com",
                           description="Microsoft Graph base URL (e.g. https://graph.microsoft.us)")
    user_properties: list[str] = Field(
        default_factory=lambda: list(USER_PROPERTIES),
        description="User properties to $select; employeeLeaveDateTime needs User-LifeCycleInfo.Read.All")
    device_page_size: int = Field(default=100, ge=1, le=999, description="Devices per page ($top)")
    manager_lookups: int = Field(
        default=1000, ge=0, description="Most Graph calls per run to find managers the delta pages do not name "
                                        "with an address; an incremental round needing more reads all users")
    timeout: float = Field(default=60, gt=0, description="Seconds to wait for one Graph response")


def _settings(stream: Stream) -> EntraSettings:
    return cast(EntraSettings, stream.connector.settings)


class EntraUsers(HttpStream):
    """Users through /users/delta; the round's final deltaLink is the next run's starting point."""

    name = "users"
    path = "/v1.0/users/delta"
    paginator = NextLinkPaginator()
    records_path = "value"

    def _resume(self, state: StreamState) -> str | None:
        """The saved delta link, if this run is incremental and the link points at the configured Graph."""
        link = state.cursor if not state.full else None
        if isinstance(link, str) and link.startswith(_settings(self).graph_url.rstrip("/") + "/"):
            return link
        if link:
            log.warning("%s: saved delta link is not on %s; starting a new delta round", self.connector.name,
                        _settings(self).graph_url)
        return None

    def request_path(self, state: StreamState) -> str:
        return self._resume(state) or self.path

    def params(self, state: StreamState) -> dict[str, Any]:
        if self._resume(state):
            return {}  # a delta link carries the query it was started with
        # Selecting `manager` tracks manager changes and returns manager@delta; properties not selected would
        # not make a user reappear in later rounds when they change.
        return {"$select": ",".join(dict.fromkeys([*_settings(self).user_properties, "manager"]))}

    def on_page(self, state: StreamState, response: requests.Response, body: Any) -> None:
        if isinstance(body, dict) and body.get("@odata.deltaLink"):
            state.new_cursor = body["@odata.deltaLink"]

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        http = cast(EntraConnector, self.connector).http
        resolver = ManagerResolver(http, _settings(self).manager_lookups, self.connector.name)
        if self._resume(state):
            try:  # read whole before anything reaches the engine, so a new round can still replace it
                users = resolver.delta_round(self.fetch(state))
            except HttpError as exc:
                if exc.status != 410 or resolver.read:
                    raise
                log.warning("%s: Graph no longer accepts the saved delta link (410); starting a new delta round",
                            self.connector.name)
            except TooManyLookups as exc:
                log.warning("%s; reading a new delta round instead", exc)
            else:
                yield from users
                return
            state.cursor = None
        yield from resolver.new_round(self.fetch(state))


class EntraDevices(HttpStream):
    """All devices with their registered owners expanded (one call per page, not one per device)."""

    name = "devices"
    path = "/v1.0/devices"
    paginator = NextLinkPaginator()
    records_path = "value"

    def params(self, state: StreamState) -> dict[str, Any]:
        return {"$select": DEVICE_PROPERTIES, "$top": _settings(self).device_page_size,
                # No nested $select: Graph does not support one inside $expand of directory objects.
                "$expand": "registeredOwners"}


class EntraSubscribedSkus(HttpStream):
    """The tenant's licence SKUs: seats bought (prepaidUnits.enabled) and assigned (consumedUnits)."""

    name = "subscribed_skus"
    path = "/v1.0/subscribedSkus"
    paginator = NextLinkPaginator()
    records_path = "value"


class EntraConnector(Connector):
    """Entra ID users (-> people), devices (-> assets) and subscribed SKUs (-> subscriptions)."""

    type_name = "entra"
    description = "Microsoft Entra ID via Microsoft Graph: users (delta), devices, subscribed SKUs"
    settings_model = EntraSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "tenant_id": "00000000-0000-0000-0000-000000000000", "client_id": "11111111-1111-1111-1111-111111111111",
        "client_secret": "${env:ENTRA_CLIENT_SECRET}"}
    settings: EntraSettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        s = self.settings
        graph = s.graph_url.rstrip("/")
        auth = MsalClientCredentials(s.tenant_id, s.client_id, s.client_secret, f"{graph}/.default",
                                     authority_host=s.authority_host)
        self.http = HttpClient(graph, auth, timeout=(5, s.timeout))

    def streams(self) -> list[Stream]:
        return [EntraUsers(self), EntraDevices(self), EntraSubscribedSkus(self)]

    def check(self) -> dict[str, int]:
        """One cheap call per stream; a 403 names the application permission that is missing."""
        seen: dict[str, int] = {}
        for stream, path, params, permission in (
                ("users", "/v1.0/users", {"$top": 1, "$select": "id"}, "User.Read.All"),
                ("devices", "/v1.0/devices", {"$top": 1, "$select": "id"}, "Device.Read.All"),
                ("subscribed_skus", "/v1.0/subscribedSkus", None, "Organization.Read.All")):
            try:
                body = self.http.get_json(path, params=params)
            except HttpError as exc:
                if exc.status == 403:
                    raise ConnectorError(f"{stream}: permission denied on {path}: grant the app the Microsoft "
                                         f"Graph application permission {permission} and admin consent",
                                         kind="config") from exc
                raise
            seen[stream] = 1 if isinstance(body, dict) and body.get("value") else 0
        return seen

    def close(self) -> None:
        self.http.close()
