"""What both HTTP servers (`serve`'s hooks and runs, the `web` UI and API) do to every request before a route
sees it, and to every response: pure ASGI middleware, no itam_sync imports (a leaf, like itam_sync.clock).

- `RequestGuard`: a body over the cap is refused with 413 before it is read when its Content-Length says so,
  and as soon as the cap is passed when it comes chunked (nothing more is read); a JSON body nested deeper
  than the limit is refused with 400 before anything parses it (Python's parser recurses: 100k levels would
  be a RecursionError). Routes then read the body, at most the cap, from memory.
- `SecurityHeaders`: headers added to every response that has not set its own.
- `is_loopback_host`: the Host header names this machine (no tokens: the servers answer only such requests,
  which also stops DNS rebinding: a web page's script reaching 127.0.0.1 under its own host name).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_DB_INT = 2**63 - 1  # the largest id or number SQLite and PostgreSQL BIGINT hold
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

# Browser-facing pages: scripts, styles and images from this origin only (no inline script or handler), no
# plugins, forms post only here, not framed by other sites.
WEB_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'",
    "x-frame-options": "SAMEORIGIN",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
# Machine endpoints (serve): nothing to render, frame or cache.
API_HEADERS = {
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_too_deep(body: bytes, max_depth: int) -> bool:
    """Does the JSON text `body` nest arrays/objects deeper than `max_depth`? (Brackets inside strings do not
    count.) Linear in the body and stops at the first level too deep."""
    text = _JSON_STRING.sub(b'""', body)
    if text.count(b"[") + text.count(b"{") <= max_depth:
        return False
    depth = 0
    for m in _BRACKETS.finditer(text):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def is_loopback_host(host_header: str) -> bool:
    """Does a Host header (`name[:port]`, `[v6][:port]`) name the loopback interface?"""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host.split("]", 1)[0] + "]"
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host in LOOPBACK_HOSTS


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def send_problem(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    """A JSON `{"detail": message}` response, closing the connection (the rest of the body is not read)."""
    body = json.dumps({"detail": message}).encode()
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *extra]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Caps request bodies at `max_bytes` and JSON nesting at `max_json_depth`, for every route."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_depth: int,
                 headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_depth = max_json_depth
        self.headers = headers or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = (f"the request body is larger than this server accepts ({self.max_bytes} bytes; "
                   "http.max_body_bytes)")
        length = _header(scope, b"content-length")
        if length is not None:
            if not (length.strip().isascii() and length.strip().isdigit()):
                await send_problem(send, 400, "Content-Length is not a number", self.headers)
                return
            if int(length) > self.max_bytes:
                await send_problem(send, 413, too_big, self.headers)
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await send_problem(send, 413, too_big, self.headers)
                return
            if not message.get("more_body", False):
                break
        kind = (_header(scope, b"content-type") or "").lower()
        if body and "json" in kind and json_too_deep(bytes(body), self.max_json_depth):
            await send_problem(send, 400, f"the JSON body is nested more than {self.max_json_depth} levels deep",
                               self.headers)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # only a disconnect is left to come

        await self.app(scope, replay, send)


class SecurityHeaders:
    """Adds `headers` to every response that does not set them itself."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((k, v) for k, v in self.headers if k not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)
