"""Google Workspace: Directory users (people), ChromeOS and mobile devices, and company-owned devices (assets).

- `users`, `chromeos_devices`, `mobile_devices`: Admin SDK Directory API (`users.list`,
  `chromeosdevices.list`, `mobiledevices.list`); `mobiledevices.list` lists only devices a user has synced.
- `company_devices` (opt-in, `company_devices: true`): Cloud Identity Devices API `devices.list` with
  `customer=customers/{customer}` and `view=COMPANY_INVENTORY`: the devices an admin imported as company-owned,
  assigned or not. It needs the cloud-identity.devices.readonly scope too; were it on by default, a scope the
  Admin console has not authorised would make Google refuse the token for every stream.

google-api-python-client is the natural client: both APIs are built from the discovery documents bundled in
the package (no network), paged with `list()`/`list_next()`; google-auth's service-account credentials
(domain-wide delegation to `subject`) sign the JWT grant and refresh the token themselves.
`execute(num_retries=n)` retries 429, rate-limit 403s, 5xx and dropped connections with exponential backoff;
when the retries run out the run fails, so nothing is marked missing (`itam_sync.sdk.cloud.google_execute`).
Neither API has a "changed since" filter for these lists: every run reads everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Literal, cast

import httplib2
from pydantic import Field, model_validator

from itam_sync.sdk.cloud import GoogleApis, google_execute, google_pages, service_account_credentials
from itam_sync.sdk.connector import Connector, ConnectorError, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.errors import HttpError, redact_url

SCOPES = {
    "users": "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "chromeos_devices": "https://www.googleapis.com/auth/admin.directory.device.chromeos.readonly",
    "mobile_devices": "https://www.googleapis.com/auth/admin.directory.device.mobile.readonly",
    "company_devices": "https://www.googleapis.com/auth/cloud-identity.devices.readonly",
}
_HINTS = {
    400: "the API rejected the request; check `customer`",
    401: "authentication failed; check the service account key",
    403: ("permission denied: `subject` must be a Workspace admin allowed to read users and devices, and the "
          "Admin SDK API (and for company_devices the Cloud Identity API) must be enabled in the service "
          "account's project"),
    404: "not found; check `customer`, `root_url` and `cloud_identity_url`",
}
# stream -> (API, version, collection, items key, list parameters given the settings)
_Params = Callable[["GoogleWorkspaceSettings"], dict[str, Any]]
_LISTS: dict[str, tuple[str, str, str, str, _Params]] = {
    "users": ("admin", "directory_v1", "users", "users",
              lambda s: {"customer": s.customer, "maxResults": 500, "projection": "full"}),
    "chromeos_devices": ("admin", "directory_v1", "chromeosdevices", "chromeosdevices",
                         lambda s: {"customerId": s.customer, "maxResults": 300,
                                    "projection": s.chromeos_projection}),
    "mobile_devices": ("admin", "directory_v1", "mobiledevices", "mobiledevices",
                       lambda s: {"customerId": s.customer, "maxResults": 100, "projection": "FULL"}),
    "company_devices": ("cloudidentity", "v1", "devices", "devices",
                        lambda s: {"customer": f"customers/{s.customer}", "view": "COMPANY_INVENTORY",
                                   "pageSize": 100}),
}


class GoogleWorkspaceSettings(ConnectorSettings):
    """Settings of the `google_workspace` connector."""

    credentials_file: str | None = Field(default=None, description="Path to the service account JSON key")
    credentials_json: str | None = Field(
        default=None, description="The service account JSON key itself; a ${file:...} or ${env:...} reference")
    subject: str = Field(description="Admin user to impersonate (domain-wide delegation), e.g. admin@example.com")
    customer: str = Field(default="my_customer", description="Customer id (C0123abcd) or my_customer")
    root_url: str = Field(default="https://admin.googleapis.com/", description="Admin SDK API endpoint")
    company_devices: bool = Field(
        default=False, description="Also read company-owned devices (Cloud Identity Devices API); authorise "
                                   "the cloud-identity.devices.readonly scope for the service account first")
    cloud_identity_url: str = Field(default="https://cloudidentity.googleapis.com/",
                                    description="Cloud Identity API endpoint (company_devices)")
    token_uri: str | None = Field(default=None,
                                  description="OAuth token endpoint; default: the key's token_uri "
                                              "(https://oauth2.googleapis.com/token)")
    num_retries: int = Field(default=5, ge=0, le=10,
                             description="Retries per request on 429/5xx/rate-limit 403 (exponential backoff)")
    timeout: float = Field(default=60, gt=0, description="Socket timeout per request, seconds")
    chromeos_projection: Literal["BASIC", "FULL"] = Field(
        default="BASIC", description="FULL adds recentUsers, CPU/disk reports and active times (much larger)")

    @model_validator(mode="after")
    def _one_key(self) -> GoogleWorkspaceSettings:
        if (self.credentials_file is None) == (self.credentials_json is None):
            raise ValueError("set exactly one of credentials_file and credentials_json")
        return self


class GoogleList(Stream):
    """Every item of one list method (see `_LISTS`), picked by the stream's name."""

    def records(self, state: StreamState) -> Iterator[dict[str, Any]]:
        yield from cast(GoogleWorkspaceConnector, self.connector).items(self.name)


class GoogleUsers(GoogleList):
    """GET admin/directory/v1/users?customer=...: every user of the account (suspended and archived too)."""

    name = "users"


class GoogleChromeOsDevices(GoogleList):
    """GET admin/directory/v1/customer/{customer}/devices/chromeos."""

    name = "chromeos_devices"


class GoogleMobileDevices(GoogleList):
    """GET admin/directory/v1/customer/{customer}/devices/mobile (FULL: serial, IMEI and Wi-Fi MAC)."""

    name = "mobile_devices"


class GoogleCompanyDevices(GoogleList):
    """GET cloudidentity v1/devices?customer=customers/{customer}&view=COMPANY_INVENTORY."""

    name = "company_devices"


class GoogleWorkspaceConnector(Connector):
    """Directory users (-> people), ChromeOS, mobile and company-owned devices (-> assets)."""

    type_name = "google_workspace"
    description = ("Google Workspace: Directory users, ChromeOS and mobile devices; Cloud Identity company-owned "
                   "devices (service account + DWD)")
    settings_model = GoogleWorkspaceSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "credentials_json": "${file:/etc/itam-sync/google-sa.json}", "subject": "itam-reader@example.com",
        "company_devices": True}
    settings: GoogleWorkspaceSettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        self.google = GoogleApis(self.credentials, lambda: self.transport())

    def transport(self) -> Any:
        """The bare httplib2 transport under the authorised one (tests swap in an HttpMock)."""
        return httplib2.Http(timeout=self.settings.timeout)

    def scopes(self) -> list[str]:
        """The read-only scopes the enabled streams need (the Admin console must authorise each)."""
        return [SCOPES[s.name] for s in self.streams()]

    def credentials(self) -> Any:
        """Service-account credentials delegated to `subject`, for the read-only scopes of the enabled streams."""
        s = self.settings
        return service_account_credentials(key_json=s.credentials_json, key_file=s.credentials_file,
                                           scopes=self.scopes(), subject=s.subject, token_uri=s.token_uri)

    def service(self, api: str = "admin") -> Any:
        """The Directory API client (or the Cloud Identity one), built once from the bundled discovery document."""
        if api == "cloudidentity":
            return self.google.service("cloudidentity", "v1", self.settings.cloud_identity_url)
        return self.google.service("admin", "directory_v1", self.settings.root_url)

    def items(self, stream: str, **overrides: Any) -> Iterator[dict[str, Any]]:
        """Every item of `stream`'s list, following nextPageToken."""
        api, _, resource, items_key, params = _LISTS[stream]
        collection = getattr(self.service(api), resource)()
        for request, body in google_pages(collection, "list", self.execute,
                                          **{**params(self.settings), **overrides}):
            # The API leaves the items key out of an empty page; anything else there is a broken page.
            items = body.get(items_key, []) if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise HttpError(f"malformed page from {redact_url(request.uri)}: no list at {items_key}",
                                url=request.uri)
            yield from items

    def execute(self, request: Any) -> Any:
        """Run one request with the client's retries; failures become ConnectorErrors that say what to fix."""
        return google_execute(
            request, num_retries=self.settings.num_retries, hints=_HINTS,
            refused=(f"in the Admin console (Security > API controls > Domain-wide delegation) authorise the "
                     f"service account's client id for {', '.join(self.scopes())}, and check that subject "
                     f"{self.settings.subject!r} exists"))

    def streams(self) -> list[Stream]:
        out: list[Stream] = [GoogleUsers(self), GoogleChromeOsDevices(self), GoogleMobileDevices(self)]
        if self.settings.company_devices:
            out.append(GoogleCompanyDevices(self))
        return out

    def check(self) -> dict[str, int]:
        """One single-item call per stream; a 403 names the scope and admin privilege involved."""
        seen: dict[str, int] = {}
        for stream in self.streams():
            size = {"pageSize": 1} if stream.name == "company_devices" else {"maxResults": 1}
            try:
                seen[stream.name] = 1 if next(self.items(stream.name, **size), None) is not None else 0
            except HttpError as exc:
                if exc.status == 403:
                    raise ConnectorError(f"{stream.name}: {exc}; the delegated scopes must include "
                                         f"{SCOPES[stream.name]}", kind="config") from exc
                raise
        return seen

    def close(self) -> None:
        self.google.close()
