"""API tokens for the web UI and REST API: where they come from, how a request proves it holds one.

Tokens come from the config (`web.api_tokens`, secret references resolved at startup) and from the
ITAM_SYNC_WEB_TOKENS environment variable (comma-separated). Only their SHA-256 digests are kept in memory,
and no token is ever logged. With no token the server serves without auth and binds to loopback only.

The REST API takes `Authorization: Bearer <token>`. A browser signs in once (the login form, or a link with
`?token=...` that is swapped for a cookie and stripped from the address bar); the cookie holds a random
session id known only to this server process (`Sessions`): not the token, new at every sign-in, ended by
signing out, after `http.session_idle_s` without a request and `http.session_max_s` after sign-in, and when
the server stops.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
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


class Sessions:
    """Browser sessions of this server process: random ids (kept as SHA-256 digests), each with its sign-in
    time and last use. A session ends at sign-out, after `idle_s` unused, `max_s` after sign-in, or when the
    server stops; at most `limit` live at once (the oldest go first)."""

    def __init__(self, idle_s: float = 1800.0, max_s: float = 43200.0, limit: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s, self.max_s, self.limit, self.clock = idle_s, max_s, limit, clock
        self._live: dict[bytes, tuple[float, float]] = {}  # digest -> (signed in, last used)
        self._lock = threading.Lock()

    def start(self) -> str:
        """A new session; its id goes into the browser's cookie."""
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._live = {d: t for d, t in self._live.items() if self._alive(t, now)}
            while len(self._live) >= self.limit:
                self._live.pop(min(self._live, key=lambda d: self._live[d][0]))
            self._live[_digest(sid)] = (now, now)
        return sid

    def check(self, sid: str | None) -> bool:
        """Is `sid` a live session? (and note its use, for the idle timeout)"""
        if not sid:
            return False
        key, now = _digest(sid), self.clock()
        with self._lock:
            times = self._live.get(key)
            if times is None:
                return False
            if not self._alive(times, now):
                del self._live[key]
                return False
            self._live[key] = (times[0], now)
            return True

    def end(self, sid: str | None) -> None:
        """Sign out: the session id is worthless from now on."""
        if sid:
            with self._lock:
                self._live.pop(_digest(sid), None)

    def __len__(self) -> int:
        return len(self._live)

    def _alive(self, times: tuple[float, float], now: float) -> bool:
        return now - times[0] < self.max_s and now - times[1] < self.idle_s


@dataclass
class TokenAuth:
    """The accepted tokens (as digests) and the browser sessions signed in with one of them."""

    digests: list[bytes] = field(default_factory=list)
    sessions: Sessions = field(default_factory=Sessions)

    @classmethod
    def from_tokens(cls, tokens: list[str], sessions: Sessions | None = None) -> TokenAuth:
        return cls([_digest(t) for t in dict.fromkeys(t.strip() for t in tokens) if t], sessions or Sessions())

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

    def check_session(self, value: str | None) -> bool:
        """Is the cookie value `value` a live session of this server?"""
        return self.enabled and self.sessions.check(value)


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


def set_session_cookie(request: Request, resp: Response, auth: TokenAuth) -> None:
    """Sign a browser in (it proved a token): a new session in an HttpOnly cookie, Secure over TLS; a session
    the browser had before is ended (no fixation)."""
    auth.sessions.end(request.cookies.get(COOKIE))
    resp.set_cookie(COOKIE, auth.sessions.start(), max_age=int(auth.sessions.max_s), httponly=True,
                    samesite="lax", secure=request.url.scheme == "https", path="/")


def end_session(request: Request, resp: Response, auth: TokenAuth) -> None:
    """Sign a browser out: its session ends on the server and its cookie is dropped."""
    auth.sessions.end(request.cookies.get(COOKIE))
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https")
