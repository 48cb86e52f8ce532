"""Google Workspace (Admin SDK Directory API): users (people), ChromeOS devices and mobile devices (assets).

Why the Google client and not `HttpClient`: google-api-python-client is the natural client for the Admin
SDK. It builds the Directory API from the discovery document bundled in the package (`static_discovery`,
no network), pages with `list()`/`list_next()`, and with google-auth's service-account credentials
(domain-wide delegation, impersonating `subject`) signs the JWT grant and refreshes the access token itself:
when the token nears expiry, and once more on a 401 (google_auth_httplib2's AuthorizedHttp). So the
engine's `TokenProviderAuth` is not needed here.

Throttling and retries are the client's: `execute(num_retries=n)` retries 429, 403 `rateLimitExceeded` /
`userRateLimitExceeded`, 5xx and dropped connections with exponential backoff (random * 2^attempt seconds;
Google sends no Retry-After to honour). When the retries run out, the client raises and this connector
turns that into an `HttpError` (config for 400/401/403/404, system otherwise), so a persistent 5xx fails
the run and, the pull being incomplete, nothing is marked missing.

The Directory API has no "changed since" filter for users or devices, so every run reads everything; only
full runs mark vanished records missing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

import google.auth.exceptions
import httplib2
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient import errors as gerrors
from googleapiclient.discovery import build
from pydantic import Field, model_validator

from itam_sync.sdk.connector import Connector, ConnectorError, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.errors import HttpError, redact_url

log = logging.getLogger(__name__)

SCOPES = {
    "users": "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "chromeos_devices": "https://www.googleapis.com/auth/admin.directory.device.chromeos.readonly",
    "mobile_devices": "https://www.googleapis.com/auth/admin.directory.device.mobile.readonly",
}
_HINTS = {
    400: "the Directory API rejected the request; check `customer`",
    401: "authentication failed; check the service account key",
    403: ("permission denied: `subject` must be a Workspace admin allowed to read users and devices, and the "
          "Admin SDK API must be enabled in the service account's project"),
    404: "not found; check `customer` and `root_url`",
}


class GoogleWorkspaceSettings(ConnectorSettings):
    """Settings of the `google_workspace` connector."""

    credentials_file: str | None = Field(default=None, description="Path to the service account JSON key")
    credentials_json: str | None = Field(
        default=None, description="The service account JSON key itself; a ${file:...} or ${env:...} reference")
    subject: str = Field(description="Admin user to impersonate (domain-wide delegation), e.g. admin@example.com")
    customer: str = Field(default="my_customer", description="Customer id (C0123abcd) or my_customer")
    root_url: str = Field(default="https://admin.googleapis.com/", description="Admin SDK API endpoint")
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


def _connector(stream: Stream) -> GoogleWorkspaceConnector:
    return cast(GoogleWorkspaceConnector, stream.connector)


class GoogleUsers(Stream):
    """GET admin/directory/v1/users?customer=...: every user of the account (suspended and archived too)."""

    name = "users"

    def records(self, state: StreamState) -> Iterator[dict[str, Any]]:
        conn = _connector(self)
        yield from conn.pages("users", "users", customer=conn.settings.customer, maxResults=500,
                              projection="full")


class GoogleChromeOsDevices(Stream):
    """GET admin/directory/v1/customer/{customer}/devices/chromeos."""

    name = "chromeos_devices"

    def records(self, state: StreamState) -> Iterator[dict[str, Any]]:
        conn = _connector(self)
        yield from conn.pages("chromeosdevices", "chromeosdevices", customerId=conn.settings.customer,
                              maxResults=300, projection=conn.settings.chromeos_projection)


class GoogleMobileDevices(Stream):
    """GET admin/directory/v1/customer/{customer}/devices/mobile (FULL: serial, IMEI and Wi-Fi MAC)."""

    name = "mobile_devices"

    def records(self, state: StreamState) -> Iterator[dict[str, Any]]:
        conn = _connector(self)
        yield from conn.pages("mobiledevices", "mobiledevices", customerId=conn.settings.customer,
                              maxResults=100, projection="FULL")


class GoogleWorkspaceConnector(Connector):
    """Directory users (-> people), ChromeOS and mobile devices (-> assets) via google-api-python-client."""

    type_name = "google_workspace"
    description = "Google Workspace Directory: users, ChromeOS devices, mobile devices (service account + DWD)"
    settings_model = GoogleWorkspaceSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "credentials_json": "${file:/etc/itam-sync/google-sa.json}", "subject": "itam-reader@example.com"}
    settings: GoogleWorkspaceSettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        self._service: Any = None
        self._http: AuthorizedHttp | None = None

    def transport(self) -> Any:
        """The bare httplib2 transport under the authorised one (tests swap in an HttpMock)."""
        return httplib2.Http(timeout=self.settings.timeout)

    def credentials(self) -> service_account.Credentials:
        """Service-account credentials delegated to `subject`, for the read-only Directory scopes."""
        s = self.settings
        try:
            text = s.credentials_json if s.credentials_json is not None else Path(str(s.credentials_file)).read_text()
            info = json.loads(text)
            if s.token_uri:
                info["token_uri"] = s.token_uri
            return service_account.Credentials.from_service_account_info(
                info, scopes=list(SCOPES.values()), subject=s.subject)
        except OSError as exc:
            raise ConnectorError(f"cannot read credentials_file: {type(exc).__name__}: {exc.strerror}",
                                 kind="config") from None
        except (ValueError, TypeError, AttributeError, google.auth.exceptions.GoogleAuthError) as exc:
            # Never echo the key: name only what kind of problem it is.
            raise ConnectorError(f"the service account key is not usable ({type(exc).__name__}); it must be "
                                 "the JSON key file of a service account", kind="config") from None

    def service(self) -> Any:
        """The Directory API client, built once from the bundled discovery document."""
        if self._service is None:
            self._http = AuthorizedHttp(self.credentials(), http=self.transport())
            self._service = build("admin", "directory_v1", http=self._http, static_discovery=True,
                                  cache_discovery=False, client_options={"api_endpoint": self.settings.root_url})
        return self._service

    def pages(self, resource: str, items_key: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of `resource.list(**params)`, following nextPageToken with the client's list_next."""
        collection = getattr(self.service(), resource)()
        request = collection.list(**params)
        while request is not None:
            body = self.execute(request)
            # The API leaves the items key out of an empty page; anything else there is a broken page.
            items = body.get(items_key, []) if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise HttpError(f"malformed page from {redact_url(request.uri)}: no list at {items_key}",
                                url=request.uri)
            yield from items
            request = collection.list_next(request, body)

    def execute(self, request: Any) -> Any:
        """Run one request with the client's retries; failures become ConnectorErrors that say what to fix."""
        try:
            return request.execute(num_retries=self.settings.num_retries)
        except gerrors.HttpError as exc:
            status = int(exc.resp.status)
            kind = "config" if status in _HINTS else "system"
            what = _HINTS.get(status, f"gave up after {self.settings.num_retries} retries")
            raise HttpError(f"HTTP {status} from {redact_url(request.uri)}: {what}. Server said: {exc.reason}",
                            status=status, url=request.uri, kind=kind) from None
        except google.auth.exceptions.RefreshError as exc:
            raise ConnectorError(
                f"Google refused the service account token ({_first_line(exc)}); in the Admin console "
                f"(Security > API controls > Domain-wide delegation) authorise the service account's client id "
                f"for {', '.join(SCOPES.values())}, and check that subject {self.settings.subject!r} exists",
                kind="config") from None
        except (google.auth.exceptions.TransportError, httplib2.HttpLib2Error, OSError) as exc:
            raise ConnectorError(f"cannot reach Google ({type(exc).__name__}) at {redact_url(request.uri)}",
                                 kind="system") from None
        except ValueError as exc:  # the client could not decode the body
            raise HttpError(f"malformed page from {redact_url(request.uri)}: {type(exc).__name__}",
                            url=request.uri) from None

    def streams(self) -> list[Stream]:
        return [GoogleUsers(self), GoogleChromeOsDevices(self), GoogleMobileDevices(self)]

    def check(self) -> dict[str, int]:
        """One single-item call per stream; a 403 names the scope and admin privilege involved."""
        svc, customer = self.service(), self.settings.customer
        calls = {"users": lambda: svc.users().list(customer=customer, maxResults=1),
                 "chromeos_devices": lambda: svc.chromeosdevices().list(customerId=customer, maxResults=1),
                 "mobile_devices": lambda: svc.mobiledevices().list(customerId=customer, maxResults=1)}
        items = {"users": "users", "chromeos_devices": "chromeosdevices", "mobile_devices": "mobiledevices"}
        seen: dict[str, int] = {}
        for stream, call in calls.items():
            try:
                body = self.execute(call())
            except HttpError as exc:
                if exc.status == 403:
                    raise ConnectorError(f"{stream}: {exc}; the delegated scopes must include "
                                         f"{SCOPES[stream]}", kind="config") from exc
                raise
            seen[stream] = 1 if body.get(items[stream]) else 0
        return seen

    def close(self) -> None:
        close = getattr(self._http.http, "close", None) if self._http is not None else None
        if callable(close):  # httplib2.Http has close(); test doubles may not
            close()
        self._service = self._http = None


def _first_line(exc: BaseException) -> str:
    text = str(exc.args[0] if exc.args else exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__
