"""Okta: people (users), their devices, and apps with their assignments (as subscriptions).

Why plain `requests` and not the `okta` SDK: okta 3.x is async-only over aiohttp, so it cannot share the
engine's HTTP layer (retries, Okta's X-Rate-Limit-Reset waits, 401 refresh, redacted logging) and
`responses` cannot fake it; 3.4.x also builds the Authorization value without the space after `SSWS`
(vendor-apis.md §1). The Okta API is plain REST with Link-header paging, so `HttpClient` +
`LinkHeaderPaginator` does all of it, and `okta` stays out of the dependencies.

Auth, one of:
- `api_token`: `Authorization: SSWS <token>` (the token acts with its admin's permissions);
- `client_id` + `private_key` (+ `key_id`): an OAuth 2.0 service app. Each token request carries a freshly
  signed private-key JWT client assertion (RS256, single-use `jti`, 5-minute `exp`; `sdk.client_assertion`).
  DPoP-bound apps are not supported (turn "Require DPoP" off);
- `access_token`: a bearer token minted elsewhere (no refresh: a 401 fails the run).

Full runs list users with `filter=lastUpdated ge "1970-01-01T00:00:00.000Z"` rather than no filter:
Okta omits DEPROVISIONED users from an unfiltered list, and terminated people are exactly what ITAM needs to
see. The same filter with the saved cursor makes the incremental run (`ge`, not `gt`: a user updated in the
same millisecond as the cursor is re-read, unchanged, rather than missed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar, cast

from pydantic import Field, model_validator
from requests.auth import AuthBase

from itam_sync.sdk.auth import BearerAuth, HeaderAuth, OAuth2ClientCredentials
from itam_sync.sdk.client_assertion import private_key_jwt
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorError, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.http_stream import HttpStream
from itam_sync.sdk.pagination import LinkHeaderPaginator, get_path

log = logging.getLogger(__name__)

EPOCH = "1970-01-01T00:00:00.000Z"
DEFAULT_SCOPES = ("okta.users.read", "okta.devices.read", "okta.apps.read")
# Okta's own apps (admin console, end-user dashboard, browser plugin, flows): not licences anyone buys.
BUILT_IN_APPS = ["saasure", "okta_enduser", "okta_browser_plugin", "okta_flow_sso"]


class OktaSettings(ConnectorSettings):
    """Settings of the `okta` connector."""

    org_url: str = Field(description="Okta org URL, e.g. https://example.okta.com (or the custom domain)")
    api_token: str | None = Field(default=None, description="API token (SSWS); a ${env:...} reference")
    client_id: str | None = Field(default=None, description="OAuth 2.0 service app client id")
    private_key: str | None = Field(
        default=None, description="Service app private key, PEM (RSA); a ${file:...} or ${env:...} reference")
    key_id: str | None = Field(default=None, description="`kid` of the service app's public key (JWKS)")
    scopes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCOPES),
                              description="OAuth scopes requested by the service app")
    token_url: str | None = Field(
        default=None, description="Token endpoint; default {org_url}/oauth2/v1/token (the org server)")
    access_token: str | None = Field(default=None, description="A pre-minted OAuth bearer token (no refresh)")
    page_size: int = Field(default=200, ge=1, le=200, description="Users/devices/apps per page (max 200)")
    app_assignments: bool = Field(default=True,
                                  description="Count each app's assigned users (one paged call per app)")
    max_assignees: int = Field(default=1000, ge=0,
                               description="List assignee e-mails only for apps with at most this many users")
    exclude_apps: list[str] = Field(default_factory=lambda: list(BUILT_IN_APPS),
                                    description="App `name`s to skip (Okta's built-in apps by default)")
    timeout: float = Field(default=60, gt=0, description="Seconds to wait for one Okta response")

    @model_validator(mode="after")
    def _one_auth(self) -> OktaSettings:
        modes = [m for m, on in (("api_token", self.api_token), ("client_id + private_key", self.client_id),
                                 ("access_token", self.access_token)) if on]
        if len(modes) != 1:
            raise ValueError("set exactly one of api_token, client_id + private_key, access_token "
                             f"(got {', '.join(modes) or 'none'})")
        if self.client_id and not self.private_key:
            raise ValueError("client_id needs private_key (Okta service apps authenticate with a signed JWT)")
        return self


def _settings(stream: Stream) -> OktaSettings:
    return cast(OktaSettings, stream.connector.settings)


class OktaUsers(HttpStream):
    """GET /api/v1/users, filtered by lastUpdated so DEPROVISIONED users are included."""

    name = "users"
    path = "/api/v1/users"
    paginator = LinkHeaderPaginator()
    cursor_field = "lastUpdated"

    def params(self, state: StreamState) -> dict[str, Any]:
        since = state.cursor if state.cursor and not state.full else EPOCH
        return {"limit": _settings(self).page_size, "filter": f'lastUpdated ge "{since}"'}


class OktaDevices(HttpStream):
    """GET /api/v1/devices?expand=user: devices with their users embedded."""

    name = "devices"
    path = "/api/v1/devices"
    paginator = LinkHeaderPaginator()
    cursor_field = "lastUpdated"

    def params(self, state: StreamState) -> dict[str, Any]:
        p: dict[str, Any] = {"limit": _settings(self).page_size, "expand": "user"}
        if state.cursor and not state.full:
            p["search"] = f'lastUpdated ge "{state.cursor}"'
        return p


class OktaApps(Stream):
    """Active apps, each with `_assignments: {count, emails}` from GET /api/v1/apps/{id}/users."""

    name = "apps"

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        conn = cast(OktaConnector, self.connector)
        s = conn.settings
        apps = conn.http.paginate("/api/v1/apps", LinkHeaderPaginator(),
                                  params={"limit": s.page_size, "filter": 'status eq "ACTIVE"'})
        for app in apps:
            if not isinstance(app, dict) or not isinstance(app.get("id"), str) or not app["id"]:
                yield BadRecord("app without an id", raw=str(app)[:2000])
                continue
            if app.get("name") in s.exclude_apps:
                continue
            if s.app_assignments:
                app = {**app, "_assignments": self._assignments(conn, app["id"])}
            yield app

    @staticmethod
    def _assignments(conn: OktaConnector, app_id: str) -> dict[str, Any]:
        """Count every assigned user (direct or by group); keep e-mails only while the list stays short."""
        count, emails = 0, list[str]()
        limit = conn.settings.max_assignees
        for au in conn.http.paginate(f"/api/v1/apps/{app_id}/users", LinkHeaderPaginator(),
                                     params={"limit": 500, "expand": "user"}):
            count += 1
            email = get_path(au, "_embedded.user.profile.email") or get_path(au, "credentials.userName")
            if isinstance(email, str) and "@" in email and len(emails) < limit:
                emails.append(email)
        return {"count": count, "emails": emails} if count <= limit else {"count": count}


class OktaConnector(Connector):
    """Okta users (-> people), devices (-> assets) and apps with assignment counts (-> subscriptions)."""

    type_name = "okta"
    description = "Okta: users, devices and app assignments (API token or OAuth 2.0 service app)"
    settings_model = OktaSettings
    example_settings: ClassVar[dict[str, Any]] = {"org_url": "https://example.okta.com",
                                                  "api_token": "${env:OKTA_API_TOKEN}"}
    settings: OktaSettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        self.http = HttpClient(self.settings.org_url, self._auth(), timeout=(5, self.settings.timeout))

    def _auth(self) -> AuthBase:
        s = self.settings
        if s.api_token:
            return HeaderAuth("Authorization", f"SSWS {s.api_token}")
        if s.access_token:
            return BearerAuth(s.access_token)
        token_url = s.token_url or f"{s.org_url.rstrip('/')}/oauth2/v1/token"
        assertion = lambda: private_key_jwt(str(s.client_id), str(s.private_key), token_url, s.key_id)  # noqa: E731
        return OAuth2ClientCredentials(token_url, str(s.client_id), scope=s.scopes, extra_form=assertion)

    def streams(self) -> list[Stream]:
        return [OktaUsers(self), OktaDevices(self), OktaApps(self)]

    def check(self) -> dict[str, int]:
        """One cheap call per stream (limit=1); a 403 names the scope or admin role that is missing."""
        seen: dict[str, int] = {}
        for stream, path, scope in (("users", "/api/v1/users", "okta.users.read"),
                                    ("devices", "/api/v1/devices", "okta.devices.read"),
                                    ("apps", "/api/v1/apps", "okta.apps.read")):
            try:
                body = self.http.get_json(path, params={"limit": 1})
            except HttpError as exc:
                if exc.status == 403:
                    raise ConnectorError(f"{stream}: permission denied on {path}: the service app needs "
                                         f"scope {scope} granted, or the API token's admin a role that can "
                                         f"read {stream}", kind="config") from exc
                raise
            seen[stream] = 1 if body else 0
        return seen

    def close(self) -> None:
        self.http.close()
