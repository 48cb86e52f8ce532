"""`serve` against hostile or odd requests (issue 20): bodies over the cap (announced or chunked), JSON nested
too deep, made-up connector names in metric labels, DNS rebinding without tokens, odd webhook bodies, and the
security headers on every answer. Each of these was a 500, a hang, unbounded memory or an open door before.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from itam_sync.service.server import Service
from tests.service.support import demo_service, set_secrets

CAP = 64 * 1024
SERVICE = {
    "debounce_s": 0.5, "jitter_s": 0, "grace_period_s": 5, "lease_ttl_s": 10,
    "api_tokens": ["${env:ITAM_TEST_API_TOKEN}"],
    "webhooks": {
        "okta-users": {"kind": "okta", "secret": "${env:ITAM_TEST_OKTA_HOOK}"},
        "procurement": {"kind": "jamf", "username": "jamf", "secret": "${env:ITAM_TEST_JAMF_PW}"},
        "edr": {"kind": "graph", "secret": "${env:ITAM_TEST_GRAPH_STATE}"},
    },
}
OKTA = {"Authorization": "okta-secret"}
TOKEN = {"Authorization": "Bearer op-token"}


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    set_secrets(monkeypatch)


def _service(demo, service: dict[str, Any]) -> Service:  # type: ignore[no-untyped-def]
    return demo_service(demo, service, extra={"http": {"max_body_bytes": CAP}})


@pytest.fixture
def svc(demo, secrets) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    s = _service(demo, SERVICE)
    s.start(http=False)
    yield s
    s.shutdown(grace_s=5)


@pytest.fixture
def served(demo, secrets) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    """A worker listening on a free port of 127.0.0.1, without API tokens (loopback only)."""
    s = _service(demo, {**SERVICE, "api_tokens": []})
    s.port = 0
    s.start()
    yield s
    s.shutdown(grace_s=5)


def _client(svc: Service) -> TestClient:
    return TestClient(svc.app, raise_server_exceptions=False)


def _raw(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send `request` on a fresh connection; what the server answers before closing (or until the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pass
        return data


# -- 1. memory: bodies over the cap, JSON nested too deep --------------------------------------------------
def test_an_announced_oversized_body_is_refused_before_it_is_read(served: Service) -> None:
    t0 = time.monotonic()
    answer = _raw(served.port, b"POST /hooks/edr HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 120000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"http.max_body_bytes" in answer and b"x-content-type-options: nosniff" in answer.lower()
    assert time.monotonic() - t0 < 4  # answered at once, not after waiting for 120 MB that never came


def test_a_chunked_body_stops_being_read_past_the_cap(svc: Service) -> None:
    """The app itself, driven as the ASGI server drives it: 20 MB arrive in 64 KiB pieces with no length."""
    pulled: list[int] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if len(pulled) < 320:
            pulled.append(64 * 1024)
            return {"type": "http.request", "body": b"x" * (64 * 1024), "more_body": True}
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/hooks/edr", "raw_path": b"/hooks/edr", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"transfer-encoding", b"chunked")],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8765)}
    asyncio.run(svc.app(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 413 and b"http.max_body_bytes" in sent[1]["body"]
    assert sum(pulled) <= CAP + 64 * 1024  # stopped reading right after the cap


def test_json_nested_too_deep_is_a_400_not_a_recursion_error(svc: Service) -> None:
    deep = "[" * 30_000 + "]" * 30_000  # 60 KB: under the cap; Python's parser gives up at ~1000 levels
    client = _client(svc)
    for url, headers in (("/hooks/edr", {}), ("/hooks/okta-users", OKTA), ("/runs", TOKEN)):
        r = client.post(url, content=deep, headers={"Content-Type": "application/json", **headers})
        assert r.status_code == 400 and r.json()["detail"] == "the JSON body is nested more than 32 levels deep", url
    # Brackets inside strings are text, not nesting; ordinary bodies pass.
    r = client.post("/hooks/okta-users", json={"data": {"events": [{"note": "[" * 1000}]}}, headers=OKTA)
    assert r.status_code == 200 and r.json()["accepted"] == 1


# -- 2. metric labels only from configured connectors, after authentication -------------------------------
def test_rejected_requests_do_not_mint_metric_series(svc: Service) -> None:
    client = _client(svc)
    for i in range(50):
        assert client.post("/runs", json={"connector": f"made-up-{i}"}).status_code == 401
        assert client.post(f"/hooks/made-up-{i}", json={}).status_code == 404
    text = client.get("/metrics").text
    assert "made-up" not in text
    assert 'itam_sync_events_total{connector="(unauthenticated)",result="rejected",source="api"} 50.0' in text
    assert client.post("/runs", json={"connector": "made-up"}, headers=TOKEN).status_code == 404
    assert "made-up" not in client.get("/metrics").text


# -- 3. no tokens: loopback host names only (DNS rebinding) ------------------------------------------------
def test_without_tokens_runs_need_a_loopback_host_header(served: Service) -> None:
    base = f"http://127.0.0.1:{served.port}"
    r = httpx.post(f"{base}/runs", json={"connector": "nope"}, headers={"Host": "attacker.example"})
    assert r.status_code == 403 and "addressed to 127.0.0.1 or localhost" in r.json()["error"]
    r = httpx.post(f"{base}/runs", json={"connector": "nope"}, headers={"Host": f"attacker.example:{served.port}"})
    assert r.status_code == 403
    for host in (f"127.0.0.1:{served.port}", f"localhost:{served.port}", "localhost"):
        assert httpx.post(f"{base}/runs", json={"connector": "nope"}, headers={"Host": host}).status_code == 404


# -- 4. odd webhook bodies: 4xx with a reason, never a 500 ------------------------------------------------
@pytest.mark.parametrize(("url", "headers", "body", "status", "says"), [
    ("/hooks/okta-users", OKTA, b'{"data":[]}', 400, "no data.events list"),
    ("/hooks/okta-users", OKTA, b'{"data":"x"}', 400, "no data.events list"),
    ("/hooks/okta-users", OKTA, b'{"data":{"events":{}}}', 400, "no data.events list"),
    ("/hooks/okta-users", OKTA, b"[1]", 400, "no data.events list"),
    ("/hooks/okta-users", OKTA, b"not json", 400, "Expecting value"),
    ("/hooks/okta-users", OKTA, b"\xff\xfe", 400, ""),
    ("/hooks/edr", {}, b'{"value":[{"clientState":123}]}', 403, "expected clientState"),
    ("/hooks/edr", {}, b'{"value":[{"clientState":null}, 5, "x"]}', 403, "expected clientState"),
    ("/hooks/edr", {}, b'{"value":{}}', 400, "no value list"),
    ("/hooks/procurement", {"Authorization": "Basic \u00e9t\u00e9".encode("latin-1")}, b"{}", 401, "not authenticated"),
    ("/hooks/procurement", {"Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()}, b"{}", 401,
     "not authenticated"),
])
def test_odd_webhook_bodies_are_refused_with_a_reason(svc: Service, url: str, headers: dict[str, str], body: bytes,
                                                      status: int, says: str) -> None:
    r = _client(svc).post(url, content=body, headers={"Content-Type": "application/json", **headers})
    assert r.status_code == status, r.text
    assert says in r.json()["error"]


# -- 7. headers -------------------------------------------------------------------------------------------
def test_every_answer_carries_the_security_headers(svc: Service) -> None:
    client = _client(svc)
    answers = [client.get("/healthz"), client.get("/metrics"), client.post("/runs", json={}),
               client.post("/hooks/edr?validationToken=%3Cscript%3Ealert(1)%3C%2Fscript%3E")]
    for r in answers:
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
    echo = answers[-1]  # Graph's handshake echoes the token: as text that no browser may sniff into HTML
    assert echo.text == "<script>alert(1)</script>" and echo.headers["content-type"].startswith("text/plain")
