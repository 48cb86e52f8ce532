"""The sandbox's HTTP machinery: requests, routes, tokens, fault injection, listeners.

Plain `http.server.ThreadingHTTPServer` (HTTP/1.1 keep-alive, one thread per connection): no framework,
because the work per request is building one JSON page and the load goal is tens of thousands of records a
second. Each vendor module (`itam_sync.sandbox.vendors.*`) registers its routes on a `Router`; the
`Handler` parses a request, applies the configured fault (see `faults.py`) to data routes, checks auth and
calls the route. Every response is written with a single `sendall` (no Nagle stalls between header and
body segments).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import re
import secrets
import socket
import ssl
import struct
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from itam_sync.sandbox.faults import FaultSpec, Injector
from itam_sync.sandbox.population import Population

log = logging.getLogger(__name__)

_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass
class Request:
    """One parsed request. `base` is scheme://host:port as the client addressed us (for next links)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    base: str
    match: re.Match[str] | None = None

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def qint(self, name: str, default: int, lo: int = 0, hi: int = 1 << 30) -> int:
        try:
            return max(lo, min(hi, int(self.q(name) or default)))
        except ValueError:
            return default

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode("latin-1"), keep_blank_values=True).items()}

    def auth(self) -> str:
        return str(self.headers.get("Authorization") or "")


@dataclass
class Response:
    """What a route answers; `page` marks one page of a paged listing (for mutate_between_pages)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    page: bool = False


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None, page: bool = False) -> Response:
    """A JSON response (compact encoding: it is most of the sandbox's CPU time)."""
    return Response(status, json.dumps(obj, separators=(",", ":")).encode(),
                    {"Content-Type": "application/json", **(headers or {})}, page)


def encode_token(data: dict[str, Any]) -> str:
    """An opaque page token (as vendors' are): URL-safe base64 of compact JSON."""
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str | None) -> dict[str, Any] | None:
    """The data of a token made by `encode_token`, or None when it is not one."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def url(base: str, path: str, params: dict[str, Any]) -> str:
    return f"{base}{path}?{urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)}"


Route = Callable[[Request, "Sandbox"], Response]


@dataclass
class RouteSpec:
    """A route: method, path pattern, vendor (for stats, auth and throttling), whether faults apply."""

    method: str
    pattern: re.Pattern[str]
    vendor: str
    handler: Route
    faults: bool = True


class Router:
    """Routes by method and full-match path regex; vendors register throttle responses too."""

    def __init__(self) -> None:
        self.routes: list[RouteSpec] = []
        self.throttles: dict[str, Callable[[Request, float], Response]] = {}

    def add(self, method: str, pattern: str, vendor: str, handler: Route, faults: bool = True) -> None:
        self.routes.append(RouteSpec(method, re.compile(pattern), vendor, handler, faults))

    def find(self, method: str, path: str) -> tuple[RouteSpec | None, re.Match[str] | None, bool]:
        """(route, match, path_known): path_known is True when the path exists for another method."""
        known = False
        for r in self.routes:
            m = r.pattern.fullmatch(path)
            if m:
                if r.method == method:
                    return r, m, True
                known = True
        return None, None, known


@dataclass
class Token:
    token: str
    vendor: str
    issued: float
    uses: int = 0


class Sandbox:
    """Shared state of one sandbox: the population, the faults, issued tokens, counters, listing cache."""

    def __init__(self, population: Population, router: Router, faults: FaultSpec | None = None,
                 max_page: int | None = None) -> None:
        self.population = population
        self.router = router
        self.injector = Injector(faults or FaultSpec())
        self.max_page = max_page
        self.requests: Counter[str] = Counter()
        self.records: Counter[str] = Counter()
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.started = time.time()

    # -- paging -------------------------------------------------------------------------------------
    def page_size(self, asked: int, vendor_max: int) -> int:
        """The page size served: what the client asked, capped by the vendor's and the sandbox's maximum."""
        size = max(1, min(asked, vendor_max))
        return min(size, self.max_page) if self.max_page else size

    def cached(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """A listing (or any derived data) for the current state of the population, built once."""
        full = (self.population.epoch, *key)
        with self._lock:
            if full in self._cache:
                self._cache.move_to_end(full)
                return self._cache[full]
        value = build()
        with self._lock:
            self._cache[full] = value
            while len(self._cache) > 64:
                self._cache.popitem(last=False)
        return value

    # -- tokens -------------------------------------------------------------------------------------
    def issue_token(self, vendor: str) -> str:
        tok = f"sbx-{vendor}-{secrets.token_hex(12)}"
        with self._lock:
            self._tokens[tok] = Token(tok, vendor, time.monotonic())
        return tok

    def token_ok(self, token: str, vendor: str) -> bool:
        """Is an issued token valid? Under `token_expire`, tokens die early although they claimed an hour."""
        spec = self.injector.spec
        with self._lock:
            t = self._tokens.get(token)
            if t is None or t.vendor != vendor:
                return False
            t.uses += 1
            if spec.token_ttl_requests and t.uses > spec.token_ttl_requests:
                self.injector.injected["token_expired"] += 1
                return False
            if spec.token_ttl_s and time.monotonic() - t.issued > spec.token_ttl_s:
                self.injector.injected["token_expired"] += 1
                return False
        return True

    def bearer_ok(self, req: Request, vendor: str) -> bool:
        auth = req.auth()
        return auth[:7].lower() == "bearer " and self.token_ok(auth[7:].strip(), vendor)

    def status(self) -> dict[str, Any]:
        p = self.population
        with p.lock:
            return {"version": p.version, "devices": sum(1 for i in range(len(p.devices)) if p.device_live(i)),
                    "people": len(p.people), "seed": p.seed, "faults": self.injector.spec.text,
                    "requests": dict(self.requests), "records": dict(self.records),
                    "injected": dict(self.injector.injected)}


class Handler(BaseHTTPRequestHandler):
    """Parses, faults, routes and answers one request at a time on a keep-alive connection."""

    protocol_version = "HTTP/1.1"
    server: SandboxServer

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):  # not a TCP socket (tests may hand us a socketpair)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        # Never log request lines with their headers or bodies: they carry secrets. Paths only, at DEBUG.
        log.debug("sandbox %s", format % args if "%" in format else format)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        sb = self.server.sandbox
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        req = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True), self.headers, body,
                      f"{self.server.scheme}://{host}")
        route, match, known = sb.router.find(self.command, parts.path)
        if route is None:
            self._send(json_response({"error": "not found" if not known else "method not allowed",
                                      "path": parts.path}, 404 if not known else 405))
            return
        req.match = match
        with sb._lock:
            sb.requests[route.vendor] += 1
        fault, slow = (None, False)
        if route.faults:
            key = f"{self.command} {self.path} {hashlib.blake2b(body, digest_size=8).hexdigest() if body else ''}"
            fault, slow = sb.injector.decide(key)
            if slow:
                time.sleep(sb.injector.spec.slow_s)
            if fault == "429":
                throttle = sb.router.throttles.get(route.vendor, _default_throttle)
                self._send(throttle(req, sb.injector.spec.retry_after))
                return
            if fault == "5xx":
                status = sb.injector.pick(key, (500, 502, 503, 504))
                self._send(json_response({"error": {"code": "InternalServerError", "message": "sandbox fault"}},
                                         status))
                return
            if fault == "reset":
                self._reset()
                return
        try:
            response = route.handler(req, sb)
        except Exception as exc:  # a sandbox bug must read as a 500, not hang the client
            log.exception("sandbox route %s failed", parts.path)
            response = json_response({"error": f"sandbox error: {type(exc).__name__}"}, 500)
        if fault == "truncate":
            self._send(response, truncate=True)
            return
        if fault == "malformed":
            response.body = response.body[: max(1, len(response.body) // 2)]
        self._send(response)
        if response.page and response.status == 200 and sb.injector.page_served():
            sb.population.advance(content_only=True)

    def _send(self, response: Response, truncate: bool = False) -> None:
        head = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}",
                f"Content-Length: {len(response.body)}", "Server: itam-sync-sandbox"]
        head += [f"{k}: {v}" for k, v in response.headers.items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        try:
            if truncate:
                self.connection.sendall(data + response.body[: len(response.body) // 2])
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_WR)
                return
            self.connection.sendall(data + response.body)
        except OSError:
            self.close_connection = True

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), as a crashed load balancer does."""
        self.close_connection = True
        try:
            sock = self.connection
            if isinstance(sock, ssl.SSLSocket):
                sock = socket.socket(fileno=sock.fileno())  # the raw socket under the TLS layer
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.detach()
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def finish(self) -> None:
        with contextlib.suppress(OSError):  # the client hung up (or we reset the connection on purpose)
            super().finish()


def _default_throttle(req: Request, wait: float) -> Response:
    return json_response({"error": {"code": "TooManyRequests", "message": "sandbox: rate limit exceeded"}}, 429,
                         {"Retry-After": _fmt(wait)})


def _fmt(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


class SandboxServer(ThreadingHTTPServer):
    """One listener (HTTP, or HTTPS with `tls`) serving every vendor route of one `Sandbox`."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: Sandbox, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(address, Handler)
        self.sandbox = sandbox
        self.tls = tls
        self.scheme = "https" if tls else "http"

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        # The TLS handshake runs here, in the connection's own thread, never in the accept loop.
        try:
            with self.tls.wrap_socket(request, server_side=True) as conn:
                Handler(conn, client_address, self)
        except (ssl.SSLError, OSError) as exc:
            log.debug("sandbox TLS connection ended: %s", type(exc).__name__)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("sandbox connection error from %s", client_address, exc_info=True)

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                  name=f"itam-sandbox-{self.scheme}-{self.server_address[1]}", daemon=True)
        thread.start()
        return thread
