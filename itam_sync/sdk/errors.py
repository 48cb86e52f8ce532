"""One classification table for HTTP outcomes: retry, wait, or fail (config or system).

Every REST connector goes through this table (via `HttpClient`), so "what is transient", "how long does the
vendor want us to wait" and "what should the user fix" are decided in exactly one place.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import requests

from itam_sync.sdk.connector import ConnectorError

DEFAULT_MAX_WAIT = 300.0
_RETRY_STATUSES = frozenset({408, 500, 502, 503, 504})
_GOOGLE_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
# Query keys whose values are secrets: matched as substrings of the lower-cased key, plus a few exact keys
# that would over-match as substrings ("sig" is in "assignment").
_SECRET_KEY_PARTS = ("token", "key", "secret", "password", "passwd", "signature", "credential", "assertion")
_SECRET_KEYS = frozenset({"sig", "code", "auth"})
REDACTED = "***"
_QUERY_RE = re.compile(r"([^&=]+)=([^&]*)")
_KV_RE = re.compile(r"([A-Za-z0-9_.-]+)=([^&\s'\"]+)")


class Action(StrEnum):
    """What to do with an HTTP outcome."""

    OK = "ok"
    RETRY = "retry"  # transient: back off exponentially and try again
    WAIT = "wait"  # throttled: sleep the server-given time (or back off if it gave none) and try again
    FAIL_CONFIG = "fail_config"  # the user must fix settings (URL, credentials, scopes)
    FAIL_SYSTEM = "fail_system"  # anything else: the source or we misbehaved


@dataclass(frozen=True)
class Decision:
    """The table's answer: the action, the wait in seconds (WAIT only; None = use backoff), and why."""

    action: Action
    wait: float | None = None
    message: str = ""


class HttpError(ConnectorError):
    """An HTTP call failed for good. `kind` is "config" (fix your settings) or "system" (try later)."""

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None,
                 kind: str = "system") -> None:
        super().__init__(message, kind=kind)
        self.status = status
        self.url = redact_url(url) if url else None


class RateLimitedError(Exception):
    """Internal: the server throttled us; tenacity waits `wait` seconds (None = backoff) and retries."""

    def __init__(self, message: str, *, wait: float | None, status: int | None, url: str | None) -> None:
        super().__init__(message)
        self.wait, self.status, self.url = wait, status, url


class TransientError(Exception):
    """Internal: a transient failure (5xx, connection error, timeout); tenacity backs off and retries."""

    def __init__(self, message: str, *, status: int | None, url: str | None) -> None:
        super().__init__(message)
        self.status, self.url = status, url


class QuotaWindowError(Exception):
    """Internal: throttled with no hint of when to come back, by a source whose `RateLimit` policy says
    "wait for the quota window". `HttpClient` waits in steps for up to one window instead of backing off
    a few seconds and giving up (tenacity does not retry this one)."""

    def __init__(self, message: str, *, status: int | None, url: str | None) -> None:
        super().__init__(message)
        self.status, self.url = status, url


def redact_url(url: str) -> str:
    """Return `url` with secret-looking query values and any user:password@ replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:  # credentials embedded in the URL
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    # Substitute in place rather than re-encode, so the logged URL reads like the one we sent.
    query = _QUERY_RE.sub(lambda m: f"{m[1]}={REDACTED}" if _is_secret_key(unquote_plus(m[1])) else m[0],
                          parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Scrub `key=value` pairs with secret-looking keys from free text (exception messages)."""
    return _KV_RE.sub(lambda m: f"{m[1]}={REDACTED}" if _is_secret_key(m[1]) else m[0], text)


def _is_secret_key(key: str) -> bool:
    low = key.lower()
    return low in _SECRET_KEYS or any(part in low for part in _SECRET_KEY_PARTS)


def wait_hint(response: requests.Response, *, max_wait: float = DEFAULT_MAX_WAIT,
              clock: Callable[[], float] = time.time, vendor_headers: bool = True) -> float | None:
    """Seconds the server asks us to wait, capped at max_wait; None if it gave no hint.

    Reads Retry-After (seconds or HTTP-date) and, if `vendor_headers`, the vendor reset headers: Okta
    X-Rate-Limit-Reset and CrowdStrike X-RateLimit-RetryAfter (epoch seconds), X-RateLimit-Reset (epoch
    if > 1e9, else seconds).
    """
    headers = response.headers
    wait: float | None = None
    if (value := headers.get("Retry-After")) is not None:
        wait = _seconds_or_http_date(value, clock)
    elif vendor_headers:
        epoch = _number(headers.get("X-Rate-Limit-Reset") or headers.get("X-RateLimit-RetryAfter") or "")
        reset = _number(headers.get("X-RateLimit-Reset") or "")
        if epoch is None and reset is not None:
            epoch, wait = (reset, None) if reset > 1e9 else (None, reset)  # no delta is ~30 years long
        if epoch is not None:
            # A reset already past (clock skew) still means "not now": never hot-loop on a throttled server.
            wait = max(epoch - clock(), 1.0)
    return None if wait is None else min(max(wait, 0.0), max_wait)


def _number(value: str) -> float | None:
    if not value:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def _seconds_or_http_date(value: str, clock: Callable[[], float]) -> float | None:
    if (seconds := _number(value)) is not None:
        return seconds
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - clock()
    except (TypeError, ValueError):
        return None


def _google_rate_limited(response: requests.Response) -> bool:
    try:
        body = response.json()
        errors = body["error"].get("errors") or []
        return any(e.get("reason") in _GOOGLE_RATE_REASONS for e in errors)
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def snippet(response: requests.Response, limit: int = 200) -> str:
    """The first `limit` characters of the body on one line, for error messages."""
    text = redact_text(" ".join((response.text or "").split()))
    return text[:limit] + ("..." if len(text) > limit else "")


_CONFIG_HINTS = {
    400: "the source rejected the request; check filters and other query settings",
    401: "authentication failed; check the credentials (API token, client id/secret) and their expiry",
    403: "permission denied; the credentials work but lack a required scope, role or API permission",
    404: "not found; check the base URL, region and tenant/org in the connector settings",
}


def classify(outcome: requests.Response | BaseException, *, max_wait: float = DEFAULT_MAX_WAIT,
             clock: Callable[[], float] = time.time) -> Decision:
    """Decide what to do with a response or a `requests` exception. 401 means a refresh was already tried."""
    if isinstance(outcome, BaseException):
        return _classify_exception(outcome)
    status = outcome.status_code
    url = redact_url(outcome.url or "")
    if status < 400:
        return Decision(Action.OK)
    if status == 429 or (status == 403 and _google_rate_limited(outcome)):
        hint = wait_hint(outcome, max_wait=max_wait, clock=clock)
        return Decision(Action.WAIT, hint, f"rate limited by {url} ({status})")
    if status in _RETRY_STATUSES:
        # Graph and BambooHR send 503 + Retry-After when throttling: honour it rather than guess. Only
        # Retry-After: Okta sends its rate-window reset on every response, which says nothing about a 5xx.
        hint = wait_hint(outcome, max_wait=max_wait, clock=clock, vendor_headers=False)
        if hint is not None:
            return Decision(Action.WAIT, hint, f"{url} asked us to wait ({status})")
        return Decision(Action.RETRY, None, f"transient error from {url} ({status})")
    if status in _CONFIG_HINTS:
        detail = snippet(outcome)
        msg = f"HTTP {status} from {url}: {_CONFIG_HINTS[status]}"
        msg += f". Server said: {detail}" if detail else ""
        return Decision(Action.FAIL_CONFIG, None, msg)
    return Decision(Action.FAIL_SYSTEM, None, f"HTTP {status} from {url}: {snippet(outcome)}")


def _classify_exception(exc: BaseException) -> Decision:
    name = type(exc).__name__
    # Order matters: SSLError is a ConnectionError, but a certificate problem will not fix itself.
    if isinstance(exc, requests.exceptions.SSLError):
        return Decision(Action.FAIL_CONFIG, None, f"TLS error ({name}); check the URL and the CA bundle")
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return Decision(Action.RETRY, None, f"{name} talking to the source")
    # A body cut short (IncompleteRead while reading the chunks) or a 2xx body that does not decode as JSON:
    # the connection dropped mid-answer, like a reset. Retried; a body that stays broken fails after the
    # attempts with what it looked like.
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return Decision(Action.RETRY, None, f"truncated response body ({name})")
    if isinstance(exc, json.JSONDecodeError | requests.exceptions.JSONDecodeError):
        return Decision(Action.RETRY, None, f"response body is not complete JSON ({name})")
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema
                  | requests.exceptions.InvalidSchema):
        return Decision(Action.FAIL_CONFIG, None, f"invalid URL ({name}); check the base URL setting")
    # requests puts the URL (query included) in its messages, so scrub them.
    return Decision(Action.FAIL_SYSTEM, None, f"{name}: {redact_text(str(exc))}")
