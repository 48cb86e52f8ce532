"""Apple Business Manager (and Apple School Manager): the organisation's devices, from the ABM/ASM API.

Checked against Apple's reference (developer.apple.com/documentation/applebusinessapi and appleschoolmanagerapi:
"Get Organization Devices", "OrgDevice.Attributes", "Implementing OAuth for the Apple School Manager and Apple
Business API"); see tests/connectors/apple_business_manager/fixtures/README.md for what each fixture follows.
- auth: OAuth 2.0 client credentials with a signed client assertion. An API account created in ABM
  (Preferences > API) has a client id (`BUSINESSAPI.<uuid>`; `SCHOOLAPI.<uuid>` in ASM), a key id and an EC P-256
  private key. The assertion is a JWT signed ES256 with header `kid` = key id and claims `iss` = `sub` = client
  id, `aud` = https://account.apple.com/auth/oauth2/v2/token, `iat`, `exp` (at most 180 days later), `jti`. It is
  posted to https://account.apple.com/auth/oauth2/token with grant_type=client_credentials, client_id,
  client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer, client_assertion and
  scope=business.api (school.api); the access token lives an hour;
- listing: `GET https://api-business.apple.com/v1/orgDevices?limit=N` (api-school.apple.com for ASM; `limit`
  at most 1000), JSON:API style `{"data": [{"type": "orgDevices", "id": <serial>, "attributes": {...},
  "relationships", "links"}], "links": {"self", "next"}, "meta": {"paging": {"nextCursor", "limit"}}}`, paged
  by following `links.next` until there is none; 429 is a documented answer (the shared HTTP layer waits);
- still unverified: whether a device released from the organisation leaves the list (`releasedFromOrgDateTime`
  is only filled when one device is asked for, never in the list), and that no "changed since" filter exists,
  so every run lists every device (the engine skips the unchanged ones by hash; incremental runs never mark
  missing). Every URL, the audience and the scope are settings.

Signing needs PyJWT with `cryptography` (both already installed: msal depends on them). Where the private key
must not sit with itam-sync, mint the assertion elsewhere (it may be valid for up to 180 days) and give it as
`client_assertion` instead of `private_key`; it is then sent as is until it expires, and a refused assertion
is a config error.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, ClassVar

import jwt
from pydantic import Field, model_validator

from itam_sync.sdk.auth import OAuth2ClientCredentials
from itam_sync.sdk.connector import Connector, ConnectorError, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.http_stream import HttpStream
from itam_sync.sdk.pagination import NextLinkPaginator

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 20 * 60  # seconds; each token request signs a fresh one


class AbmSettings(ConnectorSettings):
    """Settings of the `apple_business_manager` connector."""

    client_id: str = Field(description="API account client id, BUSINESSAPI.<uuid> (SCHOOLAPI.<uuid> for ASM)")
    key_id: str | None = Field(default=None, description="Key id of the API account's private key")
    private_key: str | None = Field(default=None, description="The API account's EC private key (PEM); a "
                                                              "${file:...} reference")
    client_assertion: str | None = Field(default=None, description="A pre-minted client assertion JWT, instead "
                                                                   "of private_key + key_id")
    base_url: str = Field(default="https://api-business.apple.com",
                          description="API base URL (https://api-school.apple.com for Apple School Manager)")
    token_url: str = Field(default="https://account.apple.com/auth/oauth2/token", description="Token endpoint")
    audience: str = Field(default="https://account.apple.com/auth/oauth2/v2/token",
                          description="`aud` claim of the signed client assertion")
    scope: str = Field(default="business.api", description="OAuth scope (school.api for Apple School Manager)")
    page_size: int = Field(default=100, ge=1, le=1000, description="Devices per page (`limit`)")

    @model_validator(mode="after")
    def _one_auth(self) -> AbmSettings:
        if bool(self.private_key) == bool(self.client_assertion):
            raise ValueError("set exactly one of private_key (+ key_id) or client_assertion")
        if self.private_key and not self.key_id:
            raise ValueError("private_key needs key_id (the assertion's `kid`)")
        return self


class OrgDevices(HttpStream):
    """GET /v1/orgDevices: every device the organisation owns, following `links.next`."""

    name = "devices"
    path = "/v1/orgDevices"
    paginator = NextLinkPaginator(path="links.next")
    records_path = "data"
    connector: AppleBusinessManagerConnector

    def params(self, state: StreamState) -> dict[str, Any]:
        return {"limit": self.connector.settings.page_size}


class AppleBusinessManagerConnector(Connector):
    """Apple Business/School Manager organisation devices (-> assets: serial, model, order, purchase source)."""

    type_name = "apple_business_manager"
    description = "Apple Business Manager: organisation devices (ABM/ASM API)"
    settings_model = AbmSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "client_id": "BUSINESSAPI.00000000-0000-0000-0000-000000000000",
        "key_id": "00000000-0000-0000-0000-000000000000", "private_key": "${file:/etc/itam-sync/abm-key.pem}"}
    settings: AbmSettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        s = self.settings
        auth = OAuth2ClientCredentials(s.token_url, s.client_id, scope=s.scope, extra_form=self._assertion)
        self.http = HttpClient(s.base_url, auth)

    def _assertion(self) -> dict[str, str]:
        """The client assertion for one token request: the configured one, or a freshly signed ES256 JWT."""
        s = self.settings
        if s.client_assertion:
            return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": s.client_assertion}
        now = int(time.time())
        claims = {"iss": s.client_id, "sub": s.client_id, "aud": s.audience, "iat": now,
                  "exp": now + ASSERTION_LIFETIME, "jti": str(uuid.uuid4())}
        try:
            assertion = jwt.encode(claims, str(s.private_key), algorithm="ES256", headers={"kid": str(s.key_id)})
        except (ValueError, TypeError, jwt.PyJWTError) as exc:  # never echo the key
            raise ConnectorError(f"cannot sign the client assertion with private_key ({type(exc).__name__}); it "
                                 "must be the API account's EC P-256 private key in PEM form", kind="config") from None
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}

    def streams(self) -> list[Stream]:
        return [OrgDevices(self)]

    def close(self) -> None:
        self.http.close()
