"""Private-key JWT client authentication (RFC 7523 / OpenID Connect `private_key_jwt`) for token requests.

An OAuth service app proves who it is by signing a short-lived JWT with its private key instead of sending a
client secret. Each token request needs a fresh one (single-use `jti`). Pass `private_key_jwt(...)` as the
`extra_form` of `OAuth2ClientCredentials`::

    OAuth2ClientCredentials(token_url, client_id, scope=scopes,
                            extra_form=lambda: private_key_jwt(client_id, key_pem, token_url, key_id))
"""

from __future__ import annotations

import time
import uuid

import jwt

from itam_sync.sdk.connector import ConnectorError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def private_key_jwt(client_id: str, private_key: str, token_url: str, key_id: str | None = None, *,
                    lifetime_s: int = 300, algorithm: str = "RS256") -> dict[str, str]:
    """The form fields of one token request: a fresh assertion with iss = sub = client id, aud = token URL.

    A key that cannot sign is a configuration error naming the setting, never echoing the key."""
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "iat": now, "exp": now + lifetime_s,
              "jti": uuid.uuid4().hex}
    try:
        assertion = jwt.encode(claims, private_key, algorithm=algorithm,
                               headers={"kid": key_id} if key_id else None)
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise ConnectorError(f"cannot sign the client assertion with private_key ({type(exc).__name__}); it "
                             f"must be an RSA private key in PEM form", kind="config") from None
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
