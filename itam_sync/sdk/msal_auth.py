"""Microsoft identity platform tokens (Graph, Defender) through msal, behind the shared token cache.

msal speaks `requests`, so tests fake it with `responses`: the OIDC discovery GET
`{authority}/v2.0/.well-known/openid-configuration` and the token POST `{authority}/oauth2/v2.0/token`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import msal
import msal.exceptions
import requests

from itam_sync.sdk.auth import TokenProviderAuth
from itam_sync.sdk.connector import ConnectorError
from itam_sync.sdk.errors import TransientError

log = logging.getLogger(__name__)


class MsalClientCredentials(TokenProviderAuth):
    """App-only (client credentials) tokens for one resource scope, e.g. https://graph.microsoft.com/.default.

    `authority_host` is a setting so national clouds work (login.microsoftonline.us, login.chinacloudapi.cn).
    """

    def __init__(self, tenant_id: str, client_id: str, client_secret: str, scope: str, *,
                 authority_host: str = "https://login.microsoftonline.com",
                 clock: Callable[[], float] = time.monotonic,
                 session: requests.Session | None = None) -> None:
        self._client_id, self._secret, self._session = client_id, client_secret, session
        self._authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        # Built on first use: msal fetches the tenant's OIDC configuration when the app is created, and a
        # connector must be constructible offline (validate, tests) with network errors classified here.
        self._app: msal.ConfidentialClientApplication | None = None
        self._scope = scope
        super().__init__(self._acquire, clock=clock)

    def _acquire(self) -> tuple[str, float | None]:
        try:
            if self._app is None:
                self._app = msal.ConfidentialClientApplication(
                    self._client_id, client_credential=self._secret, authority=self._authority,
                    http_client=self._session, instance_discovery=False)
            result = self._app.acquire_token_for_client(scopes=[self._scope])
        except (requests.ConnectionError, requests.Timeout, msal.exceptions.MsalServiceError) as exc:
            # Unreachable, or a 5xx from discovery or the token endpoint: transient, HttpClient backs off.
            raise TransientError(f"Microsoft identity platform unavailable ({type(exc).__name__})",
                                 status=None, url=self._authority) from exc
        except (requests.RequestException, ValueError) as exc:
            # msal raises ValueError when the tenant's OIDC discovery is refused (an unknown tenant).
            raise ConnectorError(f"cannot get a token from {self._authority}: {type(exc).__name__} "
                                 "(fix: check tenant_id and authority_host)", kind="config") from exc
        if "access_token" not in result:
            # error_description names the problem (bad secret, missing consent) and never holds the secret.
            desc = str(result.get("error_description", "")).splitlines()[0]
            raise ConnectorError(f"Microsoft token request refused: {result.get('error')}: {desc} "
                                 "(fix: check tenant_id, client_id, the client secret and admin consent)",
                                 kind="config")
        return result["access_token"], float(result.get("expires_in", 3599))

    def invalidate(self) -> None:
        super().invalidate()
        if self._app is None:
            return
        # msal caches too; drop its tokens so the next call really asks for a new one.
        cache = self._app.token_cache  # list() first: search() is a generator over the dict remove_at edits
        for access_token in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(access_token)

    def __repr__(self) -> str:
        return f"MsalClientCredentials(scope={self._scope!r})"
