"""Google API client set-up for the GCP and Google Workspace connectors: credentials, services, paging.

Needs google-api-python-client and google-auth (`pip install itam-sync[gcp]` or `itam-sync[google]`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import google.auth
import google.auth.exceptions
import httplib2
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient import errors as gerrors
from googleapiclient.discovery import build

from itam_sync.sdk.cloud import VendorErrors, first_line
from itam_sync.sdk.connector import ConnectorError
from itam_sync.sdk.errors import HttpError, redact_url


def _google_status(exc: Exception) -> int:
    return int(getattr(getattr(exc, "resp", None), "status", 0) or 0)


GCP_ERRORS = VendorErrors(
    "GCP", (gerrors.HttpError, google.auth.exceptions.GoogleAuthError, httplib2.HttpLib2Error, OSError),
    lambda exc: isinstance(exc, google.auth.exceptions.GoogleAuthError) or _google_status(exc) in (400, 401, 403, 404))


def service_account_credentials(*, key_json: str | None, key_file: str | None, scopes: list[str],
                                subject: str | None = None, token_uri: str | None = None,
                                application_default: bool = False) -> Any:
    """Service-account credentials from the key's JSON text or file (with domain-wide delegation to `subject`
    when given), or Application Default Credentials when neither is set and `application_default`.
    Errors are config errors that never echo the key."""
    if key_json is None and key_file is None:
        if not application_default:
            raise ConnectorError("no service account key: set the key JSON or the key file", kind="config")
        try:
            return google.auth.default(scopes=scopes)[0]
        except google.auth.exceptions.GoogleAuthError as exc:
            raise ConnectorError(f"no Application Default Credentials ({first_line(exc)}); set a service account "
                                 "key", kind="config") from None
    try:
        info = json.loads(key_json if key_json is not None else Path(str(key_file)).read_text())
        if token_uri:
            info["token_uri"] = token_uri
        return service_account.Credentials.from_service_account_info(info, scopes=scopes, subject=subject)
    except OSError as exc:
        raise ConnectorError(f"cannot read credentials_file: {type(exc).__name__}: {exc.strerror}",
                             kind="config") from None
    except (ValueError, TypeError, AttributeError, google.auth.exceptions.GoogleAuthError) as exc:
        # Never echo the key: name only what kind of problem it is.
        raise ConnectorError(f"the service account key is not usable ({type(exc).__name__}); it must be the JSON "
                             "key file of a service account", kind="config") from None


class GoogleApis:
    """google-api-python-client services over one authorised transport.

    Each service is built from the discovery document bundled with the package (`static_discovery`: no
    network call to build it). google-auth signs the service-account JWT grant, caches the token and
    refreshes it near expiry and once more on a 401 (google_auth_httplib2's AuthorizedHttp).
    """

    def __init__(self, credentials: Callable[[], Any], transport: Callable[[], Any]) -> None:
        self._credentials, self._transport = credentials, transport
        self._http: AuthorizedHttp | None = None
        self._services: dict[tuple[str, str], Any] = {}

    def service(self, name: str, version: str, endpoint: str | None = None) -> Any:
        """The `name` `version` service (e.g. "admin", "directory_v1"), built once; `endpoint` overrides its URL."""
        if (name, version) not in self._services:
            if self._http is None:
                self._http = AuthorizedHttp(self._credentials(), http=self._transport())
            options = {"api_endpoint": endpoint} if endpoint else None
            self._services[(name, version)] = build(name, version, http=self._http, static_discovery=True,
                                                    cache_discovery=False, client_options=options)
        return self._services[(name, version)]

    def close(self) -> None:
        close = getattr(self._http.http, "close", None) if self._http is not None else None
        if callable(close):  # httplib2.Http has close(); test doubles may not
            close()
        self._http, self._services = None, {}


def google_pages(collection: Any, method: str, execute: Callable[[Any], Any],
                 **params: Any) -> Iterator[tuple[Any, Any]]:
    """(request, body) of every page of `collection.<method>(**params)`, following nextPageToken with the
    client's `<method>_next`; `execute` runs one request (retries and error translation are its job)."""
    request = getattr(collection, method)(**params)
    while request is not None:
        body = execute(request)
        yield request, body
        request = getattr(collection, f"{method}_next")(request, body)


def google_execute(request: Any, *, num_retries: int, hints: Mapping[int, str], refused: str) -> Any:
    """Run one request with the client's retries (429, rate-limit 403s, 5xx, dropped connections; exponential
    backoff); failures become errors that say what to fix: `hints` per HTTP status (those are config errors),
    `refused` when Google refuses the service account's token."""
    try:
        return request.execute(num_retries=num_retries)
    except gerrors.HttpError as exc:
        status = int(exc.resp.status)
        what = hints.get(status, f"gave up after {num_retries} retries")
        raise HttpError(f"HTTP {status} from {redact_url(request.uri)}: {what}. Server said: {exc.reason}",
                        status=status, url=request.uri, kind="config" if status in hints else "system") from None
    except google.auth.exceptions.RefreshError as exc:
        raise ConnectorError(f"Google refused the service account token ({first_line(exc)}); {refused}",
                             kind="config") from None
    except (google.auth.exceptions.TransportError, httplib2.HttpLib2Error, OSError) as exc:
        raise ConnectorError(f"cannot reach Google ({type(exc).__name__}) at {redact_url(request.uri)}",
                             kind="system") from None
    except ValueError as exc:  # the client could not decode the body
        raise HttpError(f"malformed page from {redact_url(request.uri)}: {type(exc).__name__}",
                        url=request.uri) from None
