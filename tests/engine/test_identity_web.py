"""Identity in the web UI and API: identifiers and suggested matches, on the demo store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from itam_sync.web import create_app
from itam_sync.web.auth import ENV_TOKENS


@pytest.fixture
def client(demo, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(ENV_TOKENS, raising=False)
    assert demo.cli("run", "--full", "-q").exit_code == 0
    assert demo.cli("identifiers", "block", "~hostname:lt-loaner-07", "--reason", "help-desk loaner").exit_code == 0
    store = demo.store()
    with TestClient(create_app(demo.settings(), tokens=[], store=store), base_url="http://127.0.0.1") as c:
        yield c
    store.close()


def test_identifiers_in_the_api_and_the_page(client: TestClient) -> None:
    rows = client.get("/api/v1/identifiers").json()
    assert [(r["value"], r["status"], r["origin"], r["scope"]) for r in rows] == [
        ("mac:3c18a00b7c11", "ambiguous", "conflict", "network"),
        ("~hostname:lt-loaner-07", "blocked", "operator", "weak")]
    assert rows[0]["records"] == 3 and rows[0]["entities"] == 2
    assert rows[1]["why"].endswith(": help-desk loaner") and rows[1]["decision"]["action"] == "block"
    assert client.get("/api/v1/identifiers?type=person").json() == []
    page = client.get("/identifiers")
    assert page.status_code == 200
    assert "mac:3c18a00b7c11" in page.text and "held by records that cannot be one thing" in page.text
    assert 'href="/identifiers" aria-current="page"' in page.text


def test_suggestions_in_the_api_and_the_page(client: TestClient) -> None:
    assert client.get("/api/v1/suggestions").json() == []
    page = client.get("/suggestions?status=all")
    assert page.status_code == 200 and "No  suggestions." in page.text
    assert client.get("/api/v1/suggestions?status=bogus").status_code == 422
