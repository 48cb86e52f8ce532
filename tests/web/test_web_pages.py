"""The HTML pages (server-rendered) on the demo store, through the ASGI test client: content, filters,
paging, redirects, errors and the browser sign-in (login form, ?token= link, session cookie)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from itam_sync.web import create_app
from itam_sync.web.auth import COOKIE, ENV_TOKENS

TOKEN = "tok-8d1b7e55-pages"


@pytest.fixture
def synced(demo):  # type: ignore[no-untyped-def]
    result = demo.cli("run", "--full", "-q")
    assert result.exit_code == 0, result.output
    return demo


@pytest.fixture
def site(synced, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(ENV_TOKENS, raising=False)
    store = synced.store()
    with TestClient(create_app(synced.settings(), tokens=[], store=store), base_url="http://127.0.0.1",
                    follow_redirects=False) as client:
        yield client
    store.close()


@pytest.fixture
def secured(synced) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    store = synced.store()
    with TestClient(create_app(synced.settings(), tokens=[TOKEN], store=store), follow_redirects=False) as client:
        yield client
    store.close()


def _html(client: TestClient, url: str, status: int = 200) -> str:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("text/html")
    return r.text


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)).strip()


def _rows(page: str) -> list[str]:
    """The text of each body row of the first list table."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [_text(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def _id_of(client: TestClient, ref: str) -> int:
    r = client.get(f"/assets/{ref}")
    assert r.status_code == 303
    return int(r.headers["location"].rsplit("/", 1)[1])


def test_asset_list_filters_and_paging(site: TestClient) -> None:
    page = _html(site, "/assets")
    rows = _rows(page)
    assert len(rows) == 10 and "10 assets" in _text(page)
    first = rows[0].split()
    assert "C02FK1ABQ6L4" in first and "bob.li@example.com" in first
    assert _rows(_html(site, "/assets?kind=mobile"))[0].split()[1] == "F17ZK3LMN0D8"
    conflicted = _rows(_html(site, "/assets?conflict=yes"))
    assert [r.split()[1] for r in conflicted] == ["PF3ABCDE", "PF3ZZZZZ"] and all("conflict" in r for r in conflicted)
    page = _html(site, "/assets?q=lt-bob")
    assert [r.split()[1] for r in _rows(page)] == ["5CG1234XYZ"] and "1 asset matches" in _text(page)
    assert "No assets match." in _html(site, "/assets?q=zzz-nothing")
    # Paging keeps the filters and walks every laptop exactly once.
    seen: list[str] = []
    url = "/assets?kind=laptop&limit=3"
    while url:
        page = _html(site, url)
        seen += [r.split()[0] for r in _rows(page)]
        m = re.search(r'<a rel="next" href="([^"]+)"', page)
        url = m.group(1).replace("&amp;", "&") if m else ""
        if url:
            assert "kind=laptop" in url and "after=" in url
    assert len(seen) == 8 and len(set(seen)) == 8
    back = re.search(r'<a rel="prev" href="([^"]+)"', _html(site, f"/assets?kind=laptop&limit=3&after={seen[5]}"))
    assert back and f"before={seen[6]}" in back.group(1)
    # The filter form shows what is selected.
    assert '<option value="server" selected>' in _html(site, "/assets?kind=server")


def test_asset_page_shows_why(site: TestClient) -> None:
    asset = _id_of(site, "C02FK1ABQ6L4")
    page = _html(site, f"/assets/{asset}")
    assert "<h1>Laptop C02FK1ABQ6L4" in page
    row = re.search(r'<tr id="field-assigned_to".*?</tr>', page, re.S)
    assert row is not None
    text = _text(row.group(0))
    assert text.startswith("assigned_to bob.li@example.com mdm 1d freshness:90d")
    assert "procurement ana.souza@example.com" in text and "older than 90d" in text
    assert re.search(r'<a href="/people/\d+">bob.li@example.com</a>', row.group(0))
    assert "edr</span>/hosts/<code>cs-a1</code>" in page  # the source records feeding it
    assert "c02f k1ab q6l4" in page  # the raw EDR record, as sent
    history = page.split('id="history"', 1)[1]
    assert "assigned_to" in history and "freshness:90d" in history
    # History pages by id: older rows only.
    ids = [int(x) for x in re.findall(r"<tr><td>(\d+)</td><td>20", history)]
    older = _html(site, f"/assets/{asset}?before={ids[2]}").split('id="history"', 1)[1]
    assert [int(x) for x in re.findall(r"<tr><td>(\d+)</td><td>20", older)] == [i for i in ids if i < ids[2]]
    assert "« Newest" in older


def test_person_page_search_and_other_pages(site: TestClient) -> None:
    r = site.get("/search?q=C02FK1ABQ6L4")  # one hit: straight to its page
    assert r.status_code == 303 and r.headers["location"].startswith("/assets/")
    r = site.get("/search?q=bob.li@example.com")  # Bob and the laptop assigned to him: both listed
    assert r.status_code == 200 and "Bob Li" in r.text and "C02FK1ABQ6L4" in r.text
    bob = re.search(r'href="/people/(\d+)"', r.text)
    assert bob is not None
    page = _html(site, f"/people/{bob.group(1)}")
    assert "<h1>Bob Li" in page and "Assets assigned to this person" in page and "C02FK1ABQ6L4" in page
    assert "mac:3c18a00b7c11" in _html(site, "/conflicts")
    assert "No resolved conflicts." in _html(site, "/conflicts?status=resolved")
    runs = _html(site, "/runs")
    assert "okta-users" in runs and "success" in runs
    run_id = re.search(r'href="/runs/(\d+)"', runs)
    assert run_id and "Counts" in _html(site, f"/runs/{run_id.group(1)}")
    overview = _text(_html(site, "/"))
    assert "10 assets" in overview and "6 people" in overview and "1 open conflicts" in overview
    reports = _html(site, "/reports")
    assert 'href="/reports/coverage-gaps"' in reports
    kpis = _html(site, "/reports/kpis")
    assert '<svg class="chart"' in kpis and "assets_with_owner_pct" in kpis
    assert "Subscriptions" in _html(site, "/subscriptions")


def test_errors_and_redirects(site: TestClient) -> None:
    assert "no entity matches" in _html(site, "/assets/NO-SUCH-THING", 404)
    asset = _id_of(site, "C02FK1ABQ6L4")
    assert f"entity {asset} is an asset, not a person" in _html(site, f"/people/{asset}", 404)
    assert "after must be a whole number" in _html(site, "/assets?after=abc", 400)
    assert "no report" in _html(site, "/reports/nope", 404)
    assert site.get("/static/itam.css").status_code == 200
    assert site.get("/login").headers["location"] == "/"  # nothing to sign in to


def test_browser_sign_in(secured: TestClient) -> None:
    page = _html(secured, "/assets", 401)
    assert '<form class="login" method="post" action="/login">' in page
    assert 'name="next" value="/assets"' in page
    assert "that token is not valid" in _html(secured, "/assets?token=wrong", 401)
    # A link with ?token= signs the browser in and lands on the same page without the token.
    r = secured.get(f"/assets?kind=laptop&token={TOKEN}")
    assert r.status_code == 303 and r.headers["location"] == "/assets?kind=laptop"
    cookie = r.cookies.get(COOKIE)
    assert cookie and TOKEN not in cookie and TOKEN not in r.headers["set-cookie"]
    assert "HttpOnly" in r.headers["set-cookie"] and "samesite=lax" in r.headers["set-cookie"].lower()
    assert len(_rows(_html(secured, "/assets?kind=laptop"))) == 8  # the client keeps the cookie
    assert TOKEN not in _html(secured, "/assets")
    # A signed-in browser follows the pages' JSON and CSV links into the API with its session cookie.
    assert secured.get("/api/v1/reports/kpis?format=csv").status_code == 200
    assert secured.get("/logout").status_code == 405  # signing out is a POST: a link cannot do it
    r = secured.post("/logout")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    # The session ended on the server: the old cookie, replayed, is worth nothing.
    secured.cookies.set(COOKIE, cookie)
    _html(secured, "/assets", 401)
    assert secured.get("/api/v1/assets").status_code == 401
    secured.cookies.clear()
    # The login form; `next` only ever points back into this site.
    r = secured.post("/login", data={"token": "nope", "next": "/people"})
    assert r.status_code == 401 and "that token is not valid" in r.text
    r = secured.post("/login", data={"token": TOKEN, "next": "/people?q=bob"})
    assert r.status_code == 303 and r.headers["location"] == "/people?q=bob"
    assert "Bob Li" in _html(secured, "/people?q=bob")
    secured.cookies.clear()
    r = secured.post("/login", data={"token": TOKEN, "next": "//evil.example/x"})
    assert r.headers["location"] == "/"
    # A bearer token works for pages too (scripts, curl).
    secured.cookies.clear()
    assert secured.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert secured.get("/static/itam.js").status_code == 200  # static files need no token


def test_a_session_from_another_server_is_refused(synced) -> None:  # type: ignore[no-untyped-def]
    store = synced.store()
    with TestClient(create_app(synced.settings(), tokens=[TOKEN], store=store), follow_redirects=False) as one:
        cookie = one.get(f"/?token={TOKEN}").cookies.get(COOKIE)
        assert cookie and one.get("/").status_code == 200
    with TestClient(create_app(synced.settings(), tokens=[TOKEN], store=store), follow_redirects=False) as two:
        two.cookies.set(COOKIE, cookie)
        assert two.get("/").status_code == 401
    store.close()
