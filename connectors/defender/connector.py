"""Microsoft Defender for Endpoint connector: machines from the Defender API (its own resource, not Graph).

One stream, `machines` (`GET {api_url}/api/machines`), paged by `@odata.nextLink`. No `$top` is sent:
with `$top` the API returns no next link, without it each page holds up to 10,000 machines and the next
link carries `$skip`. Every run, incremental or full, reads the whole list: the only date to filter on,
`lastSeen`, is the machine's last full report (about daily), so a machine whose sensor goes silent
(healthStatus Inactive) or whose tags or risk change between reports would never show up in a
`lastSeen gt <cursor>` run. At 10,000 machines a page that is a handful of calls; unchanged machines are
skipped downstream by content hash. The API answers 404 when it has no recent machines at all: that fails
the run (a wrong `api_url` must not read as an empty fleet).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from itam_sync.sdk.connector import Connector, ConnectorSettings, Stream
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.http_stream import HttpStream
from itam_sync.sdk.msal_auth import MsalClientCredentials
from itam_sync.sdk.pagination import NextLinkPaginator

DEFAULT_API = "https://api.securitycenter.microsoft.com"


class DefenderSettings(ConnectorSettings):
    """An Entra app registration with the WindowsDefenderATP application permission Machine.Read.All."""

    tenant_id: str = Field(description="Entra tenant id (GUID) or verified domain of the tenant")
    client_id: str = Field(description="Application (client) id of the app registration")
    client_secret: str = Field(description="Client secret of the app registration (use ${env:...})")
    authority_host: str = Field(default="https://login.microsoftonline.com",
                                description="Entra login host; login.microsoftonline.us for US Government")
    api_url: str = Field(default=DEFAULT_API,
                         description="Defender API root, e.g. https://api.security.microsoft.com or a regional "
                                     "host (eu.api.security.microsoft.com); api-gcc.securitycenter.microsoft.us "
                                     "for GCC")
    scope: str = Field(default=f"{DEFAULT_API}/.default",
                       description="Token scope: the WindowsDefenderATP resource, whichever API host is used")
    timeout: float = Field(default=120.0, gt=0, description="Seconds to wait for one API response")


class Machines(HttpStream):
    """Defender machines (onboarded and discovered devices within the portal's retention), all of them."""

    name = "machines"
    path = "/api/machines"
    paginator = NextLinkPaginator()
    records_path = "value"


class DefenderConnector(Connector):
    """Defender for Endpoint machines.

    msal is the client for Microsoft identity tokens (OIDC discovery, token protocol, national clouds);
    the Defender API is plain REST through the shared `HttpClient`, which pages, retries and honours
    429 Retry-After (the API allows 100 calls a minute and 1,500 an hour).
    """

    type_name = "defender"
    description = "Microsoft Defender for Endpoint machines (GET /api/machines)"
    settings_model = DefenderSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "tenant_id": "00000000-0000-0000-0000-000000000000",
        "client_id": "${env:DEFENDER_CLIENT_ID}",
        "client_secret": "${env:DEFENDER_CLIENT_SECRET}",
    }

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        s: DefenderSettings = settings  # type: ignore[assignment]
        self.http = HttpClient(s.api_url, timeout=(10, s.timeout))
        # msal shares the client's session, so close() releases both.
        self.http.auth = MsalClientCredentials(s.tenant_id, s.client_id, s.client_secret, s.scope,
                                               authority_host=s.authority_host, session=self.http.session)

    def streams(self) -> list[Stream]:
        return [Machines(self)]

    def close(self) -> None:
        self.http.close()
