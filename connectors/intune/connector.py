"""Microsoft Intune connector: managed devices from Microsoft Graph.

One stream, `managed_devices` (`GET {graph_url}/{api_version}/deviceManagement/managedDevices`), paged by
`@odata.nextLink`. Every run, incremental or full, reads the whole list: Graph has no delta for managed
devices, the SDK metadata documents only `lt`/`gt` on `lastSyncDateTime`, and users report date filters
there that are silently ignored or answer nothing, so a filtered run could lose changes without a trace.
Unchanged devices cost nothing downstream: the engine skips them by content hash. Only a full run marks
devices that left Intune missing.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from itam_sync.sdk.connector import Connector, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.http_stream import HttpStream
from itam_sync.sdk.msal_auth import MsalClientCredentials
from itam_sync.sdk.pagination import NextLinkPaginator


class IntuneSettings(ConnectorSettings):
    """An Entra app registration with the application permission DeviceManagementManagedDevices.Read.All."""

    tenant_id: str = Field(description="Entra tenant id (GUID) or verified domain of the tenant")
    client_id: str = Field(description="Application (client) id of the app registration")
    client_secret: str = Field(description="Client secret of the app registration (use ${env:...})")
    authority_host: str = Field(default="https://login.microsoftonline.com",
                                description="Entra login host; login.microsoftonline.us for US Government")
    graph_url: str = Field(default="https://graph.microsoft.com",
                           description="Graph root; graph.microsoft.us or dod-graph.microsoft.us for US Gov")
    scope: str | None = Field(default=None, description="Token scope; default <graph_url>/.default")
    api_version: Literal["v1.0", "beta"] = Field(default="v1.0", description="Graph API version")
    timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for one Graph response")


class ManagedDevices(HttpStream):
    """Intune managed devices: every page of deviceManagement/managedDevices, on every run (no filter)."""

    name = "managed_devices"
    path = "/deviceManagement/managedDevices"
    paginator = NextLinkPaginator()
    records_path = "value"

    def request_path(self, state: StreamState) -> str:
        settings: IntuneSettings = self.connector.settings  # type: ignore[assignment]
        return f"/{settings.api_version}{self.path}"


class IntuneConnector(Connector):
    """Intune managed devices over Graph.

    msal is the client for Microsoft identity tokens (it owns the OIDC discovery and token protocol and
    national-cloud authorities); Graph itself is plain REST through the shared `HttpClient`, which pages,
    retries and honours 429/503 Retry-After. Plain requests rather than msgraph-sdk: that SDK is async over
    httpx, which the shared layer and its offline tests (`responses`) do not use.
    """

    type_name = "intune"
    description = "Microsoft Intune managed devices (Graph deviceManagement/managedDevices)"
    settings_model = IntuneSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "tenant_id": "00000000-0000-0000-0000-000000000000",
        "client_id": "${env:INTUNE_CLIENT_ID}",
        "client_secret": "${env:INTUNE_CLIENT_SECRET}",
    }

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        s: IntuneSettings = settings  # type: ignore[assignment]
        graph = s.graph_url.rstrip("/")
        self.http = HttpClient(graph, timeout=(10, s.timeout))
        # msal shares the client's session, so close() releases both.
        self.http.auth = MsalClientCredentials(
            s.tenant_id, s.client_id, s.client_secret, s.scope or f"{graph}/.default",
            authority_host=s.authority_host, session=self.http.session)

    def streams(self) -> list[Stream]:
        return [ManagedDevices(self)]

    def close(self) -> None:
        self.http.close()
