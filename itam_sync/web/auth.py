"""API tokens for the web UI and REST API: where they come from, how a request proves it holds one.

Tokens come from the config (`web.api_tokens`, secret references resolved at startup) and from the
ITAM_SYNC_WEB_TOKENS environment variable (comma-separated). Only their SHA-256 digests are kept in memory,
and no token is ever logged. With no token the server serves without auth and binds to loopback only.

The REST API takes `Authorization: Bearer <token>`. A browser signs in once (the login form, or a link with
`?token=...` that is swapped for a cookie and stripped from the address bar); the cookie holds an HMAC of
the token's digest under a key made when the server starts, so it is not the token and dies with the server.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from fastapi import Request
from fastapi.responses import Response

from itam_sync.settings import ConfigError, Settings, resolve_secrets

log = logging.getLogger(__name__)
ENV_TOKENS = "ITAM_SYNC_WEB_TOKENS"
COOKIE = "itam_sync_session"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass
class TokenAuth:
    """The accepted tokens (as digests) and the per-process key that signs browser sessions."""

    digests: list[bytes] = field(default_factory=list)
    session_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    @classmethod
    def from_tokens(cls, tokens: list[str]) -> TokenAuth:
        return cls([_digest(t) for t in dict.fromkeys(t.strip() for t in tokens) if t])

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def check_token(self, token: str | None) -> bool:
        """Is `token` one of the configured tokens? (constant-time per candidate)."""
        if not token:
            return False
        d = _digest(token)
        ok = False
        for candidate in self.digests:
            ok |= hmac.compare_digest(d, candidate)
        return ok

    def session_for(self, token: str) -> str:
        """The cookie value for a browser that presented `token`."""
        return hmac.new(self.session_key, _digest(token), hashlib.sha256).hexdigest()

    def check_session(self, value: str | None) -> bool:
        if not value:
            return False
        ok = False
        for candidate in self.digests:
            ok |= hmac.compare_digest(value, hmac.new(self.session_key, candidate, hashlib.sha256).hexdigest())
        return ok


def configured_tokens(settings: Settings, environ: dict[str, str] | None = None) -> list[str]:
    """Every token from the config (resolved secret references) and from ITAM_SYNC_WEB_TOKENS."""
    env = os.environ if environ is None else environ
    tokens = [str(t).strip() for t in resolve_secrets(list(settings.web.api_tokens), "web.api_tokens")]
    if any(not t for t in tokens):
        raise ConfigError(["web.api_tokens: a token reference resolved to an empty value "
                           "(fix: set the environment variable or secret file it names)"])
    tokens += [t.strip() for t in env.get(ENV_TOKENS, "").split(",") if t.strip()]
    return tokens


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def is_loopback(host: str) -> bool:
    return host.strip().lower() in LOOPBACK_HOSTS


def strip_token(query: str) -> str:
    """A query string without its `token` parameter (for redirects and access logs)."""
    return urlencode([(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "token"])


class RedactTokenFilter(logging.Filter):
    """Drops `token=...` from uvicorn's access-log lines: a sign-in link must not leave its token in logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "token=" in args[2]:
            path, _, query = args[2].partition("?")
            q = strip_token(query)
            record.args = (*args[:2], f"{path}?{q + '&' if q else ''}token=[redacted]", *args[3:])
        return True


SESSION_MAX_AGE = 12 * 3600


def set_session_cookie(request: Request, resp: Response, auth: TokenAuth, token: str) -> None:
    """Sign a browser in: an HttpOnly cookie holding a session value derived from the token."""
    resp.set_cookie(COOKIE, auth.session_for(token), max_age=SESSION_MAX_AGE, httponly=True, samesite="lax",
                    secure=request.url.scheme == "https", path="/")
