"""The web UI and API against hostile or odd requests (issue 20): server-side sessions that sign-out ends, with
idle and absolute timeouts; cross-site form posts refused; security headers on every answer; the schema
behind the token; a capped body; numbers too large for a date or a database id answered with a 4xx."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from itam_sync.web import create_app
from itam_sync.web.auth import COOKIE, ENV_TOKENS, Sessions

TOKEN = "tok-20c5a1d4-hardening"
TEMPLATES = Path(__file__).resolve().parents[2] / "itam_sync" / "web" / "templates"


class FakeClock:
    """Seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def app(demo, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.delenv(ENV_TOKENS, raising=False)
    store = demo.store()
    yield create_app(demo.settings(), tokens=[TOKEN], store=store)
    store.close()


@pytest.fixture
def clock(app) -> FakeClock:  # type: ignore[no-untyped-def]
    fake = FakeClock()
    sessions: Sessions = app.state.auth.sessions
    sessions.clock = fake
    return fake


@pytest.fixture
def web(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app, follow_redirects=False, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def local(demo, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """No tokens: local only."""
    monkeypatch.delenv(ENV_TOKENS, raising=False)
    store = demo.store()
    with TestClient(create_app(demo.settings(), tokens=[], store=store), base_url="http://127.0.0.1",
                    follow_redirects=False, raise_server_exceptions=False) as client:
        yield client
    store.close()


def _sign_in(client: TestClient, **headers: str) -> str:
    r = client.post("/login", data={"token": TOKEN, "next": "/"}, headers=headers)
    assert r.status_code == 303, r.text
    cookie = r.cookies.get(COOKIE)
    assert cookie
    return cookie


# -- 5. sessions ------------------------------------------------------------------------------------------
def test_each_sign_in_is_a_new_session_and_sign_out_ends_it(web: TestClient) -> None:
    first = _sign_in(web)
    web.cookies.clear()
    second = _sign_in(web)
    assert first != second and TOKEN not in first and len(first) >= 40
    for cookie in (first, second):
        web.cookies.set(COOKIE, cookie)
        assert web.get("/").status_code == 200
    r = web.post("/logout")  # the client sends `second`
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert 'itam_sync_session=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    web.cookies.set(COOKIE, second)  # replayed after sign-out: ended on the server
    assert web.get("/").status_code == 401 and web.get("/api/v1/overview").status_code == 401
    web.cookies.set(COOKIE, first)  # another browser's session goes on
    assert web.get("/").status_code == 200


def test_sessions_end_when_idle_and_at_their_maximum_age(web: TestClient, clock: FakeClock) -> None:
    _sign_in(web)
    idle, most = 1800.0, 43200.0  # the http section's defaults
    clock.t += idle - 1
    assert web.get("/").status_code == 200  # in use: the idle timer starts again
    clock.t += idle - 1
    assert web.get("/").status_code == 200
    clock.t += idle + 1
    assert web.get("/").status_code == 401  # idle too long
    web.cookies.clear()
    cookie, signed_in, seen = _sign_in(web), clock.t, []
    while clock.t - signed_in < most + idle:  # used every 29 minutes, never idle for long
        clock.t += idle - 60
        web.cookies.set(COOKIE, cookie)
        seen.append((clock.t - signed_in, web.get("/").status_code))
    assert {s for age, s in seen if age < most} == {200}
    assert {s for age, s in seen if age >= most} == {401}  # yet over the absolute limit, it ended


def test_the_session_cookie_is_secure_over_tls(app) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app, base_url="https://itam.example.com", follow_redirects=False) as tls:
        r = tls.post("/login", data={"token": TOKEN})
        assert r.status_code == 303
        attrs = [a.strip().lower() for a in r.headers["set-cookie"].split(";")]
        assert "secure" in attrs and "httponly" in attrs and "samesite=lax" in attrs
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as plain:
        assert "secure" not in plain.post("/login", data={"token": TOKEN}).headers["set-cookie"].lower()


def test_the_live_session_count_is_bounded() -> None:
    sessions = Sessions(limit=3)
    ids = [sessions.start() for _ in range(5)]
    assert len(sessions) == 3
    assert [sessions.check(i) for i in ids] == [False, False, True, True, True]


# -- 6. CSRF ----------------------------------------------------------------------------------------------
def test_cross_site_posts_are_refused(web: TestClient) -> None:
    foreign = [{"Origin": "https://evil.example"}, {"Origin": "null"},
               {"Referer": "https://evil.example/page"}, {"Sec-Fetch-Site": "cross-site"},
               {"Origin": "http://testserver.evil.example"}]
    for headers in foreign:
        r = web.post("/login", data={"token": TOKEN}, headers=headers)
        assert r.status_code == 403 and "refused" in r.text and COOKIE not in r.headers.get("set-cookie", ""), headers
    # From the pages themselves (or from no browser at all), it works.
    _sign_in(web, Origin="http://testserver")
    _sign_in(web, Referer="http://testserver/login?next=/", **{"Sec-Fetch-Site": "same-origin"})
    cookie = _sign_in(web)
    # Another site cannot sign the browser out either, nor with a link.
    assert web.post("/logout", headers={"Origin": "https://evil.example"}).status_code == 403
    assert web.get("/logout").status_code == 405
    web.cookies.set(COOKIE, cookie)
    assert web.get("/").status_code == 200


def test_the_pages_sign_out_with_a_form_post(web: TestClient) -> None:
    _sign_in(web)
    page = web.get("/").text
    assert '<form class="signout" method="post" action="/logout">' in page
    assert 'href="/logout"' not in page


# -- 7. headers -------------------------------------------------------------------------------------------
def test_every_answer_carries_the_security_headers(web: TestClient) -> None:
    cookie = _sign_in(web)
    web.cookies.set(COOKIE, cookie)
    answers = {url: web.get(url) for url in ("/", "/assets", "/api/v1/overview", "/static/itam.js", "/login",
                                             "/nope", "/api/v1/runs/abc", "/openapi.json", "/healthz")}
    answers["POST /login (cross-site)"] = web.post("/login", headers={"Origin": "https://evil.example"})
    web.cookies.clear()
    answers["/ (signed out)"] = web.get("/")
    for url, r in answers.items():
        csp = r.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors 'self'" in csp and "unsafe-inline" not in csp, url
        assert "object-src 'none'" in csp and "base-uri 'none'" in csp and "form-action 'self'" in csp, url
        assert r.headers["x-frame-options"] == "SAMEORIGIN", url
        assert r.headers["x-content-type-options"] == "nosniff", url
        assert r.headers["referrer-policy"] == "same-origin", url


def test_templates_have_no_inline_script_or_handlers() -> None:
    """The CSP allows no inline script: every script is a file under /static, every handler is in itam.js."""
    for path in sorted(TEMPLATES.glob("*.html")):
        text = path.read_text()
        for attrs, body in re.findall(r"<script\b([^>]*)>(.*?)</script>", text, re.I | re.S):
            assert 'src="/static/' in attrs and not body.strip(), (path.name, attrs, body[:80])
        assert text.lower().count("<script") == len(re.findall(r"<script\b[^>]*>.*?</script>", text, re.I | re.S))
        assert not re.search(r"\son[a-z]+\s*=", text, re.I), path.name
        assert "javascript:" not in text.lower() and not re.search(r"\sstyle\s*=", text, re.I), path.name


def test_the_api_schema_needs_the_token(web: TestClient, local: TestClient) -> None:
    assert web.get("/openapi.json").status_code == 401
    r = web.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.json()["info"]["title"] == "itam-sync"
    web.cookies.set(COOKIE, _sign_in(web))  # the footer's link, from a signed-in browser
    assert web.get("/openapi.json").status_code == 200
    assert local.get("/openapi.json").status_code == 200  # no tokens: local only, no sign-in


# -- 1. and 4.: bodies and odd numbers ----------------------------------------------------------------------
def test_a_body_over_the_cap_is_refused(web: TestClient) -> None:
    r = web.post("/login", content=b"token=" + b"x" * (2 << 20),
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and "http.max_body_bytes" in r.json()["detail"]


@pytest.mark.parametrize(("url", "status", "says"), [
    ("/api/v1/assets?after=9223372036854775808", 422, "less than or equal to 9223372036854775807"),
    ("/api/v1/assets?before=9223372036854775808", 422, "less than or equal to 9223372036854775807"),
    ("/api/v1/runs?before=9223372036854775808", 422, "less than or equal to 9223372036854775807"),
    ("/api/v1/runs/99999999999999999999", 422, "less than or equal to 9223372036854775807"),
    ("/api/v1/assets/99999999999999999999", 404, "no entity with id 99999999999999999999"),
    ("/api/v1/assets/\u00b2", 404, "no entity"),
    ("/api/v1/reports/stale-devices?days=999999999", 422, "less than or equal to 36500"),
    ("/api/v1/reports/warranty?days=999999999", 422, "less than or equal to 36500"),
    ("/assets?after=9223372036854775808", 400, "after must be a whole number"),
    ("/runs/99999999999999999999", 400, "run_id: Input should be less than or equal to 9223372036854775807"),
    ("/runs/abc", 400, "run_id: Input should be a valid integer"),
    ("/assets/99999999999999999999", 404, "no entity with id 99999999999999999999"),
    ("/reports/stale-devices?days=999999999", 400, "out of range"),
    ("/reports/renewals?days=99999999", 400, "out of range"),
])
def test_numbers_out_of_range_are_a_4xx_that_says_why(local: TestClient, url: str, status: int, says: str) -> None:
    r = local.get(url)
    assert r.status_code == status, (url, r.text[:300])
    assert says in (str(r.json()) if url.startswith("/api/") else r.text), (url, r.text[:500])
