"""Where credentials go on a request: bearer, API-key header, basic, OAuth2 client credentials and refresh
tokens, SDK tokens, and basic credentials exchanged for a session token.

Auth is separate from paging and retrying. Token auths cache their token and expose `invalidate()`, which
`HttpClient` calls once when a request gets a 401 so a revoked or rotated token is replaced. No object here
puts a secret in its repr, its log lines or its exception messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from itam_sync.sdk.errors import Action, HttpError, RateLimitedError, TransientError, classify, redact_url
from itam_sync.sdk.pagination import get_path

log = logging.getLogger(__name__)

# Refresh this long before the token expires, so a request never leaves with a token about to lapse.
REFRESH_MARGIN = 60.0


class HeaderAuth(AuthBase):
    """Put a fixed value in a header, e.g. Okta: HeaderAuth("Authorization", "SSWS <token>")."""

    def __init__(self, header: str, value: str) -> None:
        self.header, self._value = header, value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self.header] = self._value
        return request

    def __repr__(self) -> str:
        return f"{type(self).__name__}(header={self.header!r}, value=***)"


class BearerAuth(HeaderAuth):
    """A static bearer token: `Authorization: Bearer <token>`."""

    def __init__(self, token: str) -> None:
        super().__init__("Authorization", f"Bearer {token}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token=***)"


class BasicAuth(HTTPBasicAuth):
    """HTTP basic auth (requests' own) with a repr that hides the password."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(username={self.username!r}, password=***)"


def check_token_response(response: requests.Response, url: str, refused: str) -> None:
    """Raise for a token endpoint answer that is not a success: waits and transient errors go to the HTTP
    layer's retries; anything else is a config error with the `refused` message."""
    decision = classify(response)
    if decision.action is Action.WAIT:
        raise RateLimitedError(f"token endpoint: {decision.message}", wait=decision.wait,
                               status=response.status_code, url=url)
    if decision.action is Action.RETRY:
        raise TransientError(f"token endpoint: {decision.message}", status=response.status_code, url=url)
    if decision.action is not Action.OK:
        raise HttpError(refused, status=response.status_code, url=url, kind="config")


class CachedTokenAuth(AuthBase):
    """Base of token auths: fetch a token, reuse it until shortly before expiry, refetch on `invalidate()`.

    Subclasses implement `fetch_token() -> (token, expires_in seconds or None)`; None means the lifetime is
    unknown, so the token is kept until a 401 invalidates it.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, scheme: str = "Bearer") -> None:
        self._clock, self._scheme = clock, scheme
        self._token: str | None = None
        self._expires_at: float | None = None
        self._lock = threading.Lock()  # one refresh at a time if a connector pulls streams in threads

    def fetch_token(self) -> tuple[str, float | None]:
        """Get a fresh token and its lifetime in seconds."""
        raise NotImplementedError

    def token(self) -> str:
        """The cached token, fetching a new one if there is none or it is about to expire."""
        with self._lock:
            now = self._clock()
            if self._token is None or (self._expires_at is not None and now >= self._expires_at):
                token, expires_in = self.fetch_token()
                self._token = token
                if expires_in is None:
                    self._expires_at = None
                else:  # short-lived tokens (< 2 min) would otherwise count as expired on arrival
                    self._expires_at = now + expires_in - min(REFRESH_MARGIN, expires_in / 2)
                log.debug("%s: fetched a token valid for %s s", type(self).__name__, expires_in)
            return self._token

    def invalidate(self) -> None:
        """Drop the cached token so the next request fetches a new one (called on a 401)."""
        with self._lock:
            self._token = self._expires_at = None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"{self._scheme} {self.token()}"
        return request

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token=***)"


class TokenProviderAuth(CachedTokenAuth):
    """Tokens from a vendor SDK (msal, google-auth, azure-identity), cached and refreshed here.

    `provider()` returns (access_token, expires_in_seconds | None); e.g. for msal, call
    `app.acquire_token_for_client(scopes)`, raise HttpError(kind="config") on "error", and return
    `(result["access_token"], result["expires_in"])`.
    """

    def __init__(self, provider: Callable[[], tuple[str, float | None]], *,
                 clock: Callable[[], float] = time.monotonic, scheme: str = "Bearer") -> None:
        super().__init__(clock=clock, scheme=scheme)
        self._provider = provider

    def fetch_token(self) -> tuple[str, float | None]:
        return self._provider()


class OAuth2ClientCredentials(CachedTokenAuth):
    """OAuth2 client-credentials grant: POST the form to `token_url`, cache the access token.

    `auth_style="body"` sends client_id/client_secret in the form; "basic" sends them as HTTP basic auth
    (RFC 6749 §2.3.1). `extra_form` adds fields (e.g. a `resource`); it may also be a zero-argument callable
    returning them, evaluated for every token request, for values that must be fresh each time such as a
    private-key JWT `client_assertion` (single-use `jti`, short `exp`: Okta service apps, RFC 7523).
    """

    # What a refused token request tells the user to check (subclasses for other grants say more).
    refused_hint = "check token URL, client id/secret and scope"

    def __init__(self, token_url: str, client_id: str, client_secret: str | None = None, *,
                 scope: str | list[str] | None = None,
                 extra_form: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
                 session: requests.Session | None = None, auth_style: Literal["body", "basic"] = "body",
                 clock: Callable[[], float] = time.monotonic, timeout: tuple[float, float] = (5, 30)) -> None:
        super().__init__(clock=clock)
        self.token_url, self.client_id, self.auth_style = token_url, client_id, auth_style
        self._client_secret = client_secret
        self._scope = " ".join(scope) if isinstance(scope, list) else scope
        self._extra_form = extra_form if callable(extra_form) else dict(extra_form or {})
        self._session = session or requests.Session()
        self._timeout = timeout

    def grant_form(self) -> dict[str, str]:
        """The grant's own form fields; subclasses implementing another grant override this."""
        return {"grant_type": "client_credentials"}

    def accept_token_body(self, body: dict[str, Any]) -> None:
        """Hook: sees every successful token response (e.g. to keep a rotated refresh token). No-op here."""

    def fetch_token(self) -> tuple[str, float | None]:
        extra = self._extra_form() if callable(self._extra_form) else self._extra_form
        form: dict[str, str] = {**self.grant_form(), **extra}
        if self._scope:
            form["scope"] = self._scope
        basic = None
        if self.auth_style == "basic":
            basic = HTTPBasicAuth(self.client_id, self._client_secret or "")
        else:
            form["client_id"] = self.client_id
            if self._client_secret is not None:
                form["client_secret"] = self._client_secret
        # Connection errors propagate as requests exceptions: HttpClient classifies and retries them.
        response = self._session.post(self.token_url, data=form, auth=basic, timeout=self._timeout,
                                      headers={"Accept": "application/json"})
        url = redact_url(self.token_url)
        check_token_response(response, url, f"token request for client {self.client_id!r} refused "
                                            f"({response.status_code} {_oauth_error(response)}); {self.refused_hint}")
        try:
            body: Any = response.json()
            token, expires_in = body["access_token"], body.get("expires_in")
            result = str(token), None if expires_in is None else float(expires_in)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise HttpError(f"token endpoint returned no access_token ({response.status_code})",
                            status=response.status_code, url=url) from None
        self.accept_token_body(body)
        return result

    def __repr__(self) -> str:
        url = redact_url(self.token_url)
        return f"{type(self).__name__}(token_url={url!r}, client_id={self.client_id!r})"


class OAuth2RefreshToken(OAuth2ClientCredentials):
    """OAuth2 refresh-token grant (RFC 6749 §6): a long-lived refresh token traded for access tokens, cached.

    For API clients authorised once by a person and then run unattended (e.g. Workday API clients). The
    client id/secret go in the form (`auth_style="body"`) or as HTTP basic ("basic"). A server that rotates
    refresh tokens returns a new `refresh_token` with each access token: it replaces the configured one for
    the rest of this process, but is not written back to the config, so a server that revokes the old
    token on rotation needs a non-rotating client. A refused refresh (400 invalid_grant: expired or revoked)
    is a config error.
    """

    refused_hint = "check token URL, client id/secret and the refresh token (it may have expired or been revoked)"

    def __init__(self, token_url: str, client_id: str, client_secret: str | None, refresh_token: str, *,
                 scope: str | list[str] | None = None, session: requests.Session | None = None,
                 auth_style: Literal["body", "basic"] = "body", clock: Callable[[], float] = time.monotonic,
                 timeout: tuple[float, float] = (5, 30)) -> None:
        super().__init__(token_url, client_id, client_secret, scope=scope, session=session,
                         auth_style=auth_style, clock=clock, timeout=timeout)
        self._refresh_token = refresh_token

    def grant_form(self) -> dict[str, str]:
        return {"grant_type": "refresh_token", "refresh_token": self._refresh_token}

    def accept_token_body(self, body: dict[str, Any]) -> None:
        rotated = body.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != self._refresh_token:
            log.info("%s: the server rotated the refresh token of client %r; using the new one from now on",
                     type(self).__name__, self.client_id)
            self._refresh_token = rotated


def _oauth_error(response: requests.Response) -> str:
    """The RFC 6749 `error`/`error_description` of a refused token request (they carry no secrets)."""
    try:
        body = response.json()
        return ": ".join(str(body[k]) for k in ("error", "error_description") if body.get(k))
    except (ValueError, TypeError, AttributeError):
        return ""


class BasicTokenAuth(CachedTokenAuth):
    """A username and password (HTTP basic) exchanged for a bearer token at `token_url`, cached and refreshed.

    For APIs that issue session tokens for basic credentials, e.g. Jamf Pro `POST /api/v1/auth/token` ->
    `{"token": "...", "expires": "2024-06-02T08:28:40.123Z"}`. The token is read at the dotted `token_path`
    of the JSON body; its lifetime at `expires_path`, either seconds to live (a number) or an absolute
    ISO-8601 expiry time (a string, compared with `wall_clock`). No lifetime: kept until a 401.
    """

    def __init__(self, token_url: str, username: str, password: str, *, token_path: str = "token",
                 expires_path: str | None = "expires", session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 timeout: tuple[float, float] = (5, 30)) -> None:
        super().__init__(clock=clock)
        self.token_url, self.username = token_url, username
        self._password = password
        self._token_path, self._expires_path = token_path, expires_path
        self._session = session or requests.Session()
        self._wall_clock, self._timeout = wall_clock, timeout

    def fetch_token(self) -> tuple[str, float | None]:
        response = self._session.post(self.token_url, auth=HTTPBasicAuth(self.username, self._password),
                                      timeout=self._timeout, headers={"Accept": "application/json"})
        url = redact_url(self.token_url)
        check_token_response(response, url, f"token request for user {self.username!r} refused "
                                            f"({response.status_code}); check the token URL, username and password")
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        token = get_path(body, self._token_path)
        if not isinstance(token, str) or not token:
            raise HttpError(f"token endpoint returned no token at {self._token_path!r} "
                            f"({response.status_code})", status=response.status_code, url=url)
        expires = get_path(body, self._expires_path) if self._expires_path else None
        return token, self._lifetime(expires)

    def _lifetime(self, expires: Any) -> float | None:
        """Seconds the token lives: a number as is, an ISO time minus now; None when unknown or unreadable."""
        if isinstance(expires, int | float) and not isinstance(expires, bool):
            return float(expires)
        if not isinstance(expires, str) or not expires:
            return None
        try:
            at = datetime.fromisoformat(expires.strip())
        except ValueError:
            log.warning("%s: unreadable token expiry %r; keeping the token until a 401", type(self).__name__,
                        expires)
            return None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        left = at.timestamp() - self._wall_clock()
        if left <= 0:  # our clock is ahead of the server's: trust the 401 rather than refetch every request
            log.warning("%s: token already expired by our clock (skew?); keeping it until a 401",
                        type(self).__name__)
            return None
        return left

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token_url={redact_url(self.token_url)!r}, username={self.username!r})"
