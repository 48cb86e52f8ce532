"""BasicTokenAuth: basic credentials exchanged for a session token (Jamf Pro style), cached and refreshed."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import responses
from conftest import BASE, NOW

from itam_sync.sdk.auth import BasicTokenAuth
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient

URL = f"{BASE}/api/v1/computers-inventory"
TOKEN_URL = f"{BASE}/api/v1/auth/token"
Mock = responses.RequestsMock
MakeClient = Callable[..., HttpClient]
BASIC = "Basic " + base64.b64encode(b"svc-itam:pw").decode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.123Z")


def _api_auth(mock: responses.RequestsMock) -> list[str]:
    return [c.request.headers["Authorization"] for c in mock.calls if c.request.url == URL]


def test_posts_basic_credentials_and_uses_the_token(mock: Mock, make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, json={"token": "jt1", "expires": _iso(NOW + 1800)})
    mock.get(URL, json={})
    make_client(auth=BasicTokenAuth(TOKEN_URL, "svc-itam", "pw", wall_clock=lambda: NOW)).request("GET", URL)
    assert mock.calls[0].request.headers["Authorization"] == BASIC
    assert _api_auth(mock) == ["Bearer jt1"]


def test_absolute_expiry_refreshes_before_it_lapses(mock: Mock, make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, json={"token": "jt1", "expires": _iso(NOW + 1800)})
    mock.post(TOKEN_URL, json={"token": "jt2", "expires": _iso(NOW + 3600)})
    mock.get(URL, json={})
    clock = Clock()
    auth = BasicTokenAuth(TOKEN_URL, "svc-itam", "pw", clock=clock, wall_clock=lambda: NOW)
    client = make_client(auth=auth)
    client.request("GET", URL)
    clock.now += 1700  # 100 s left: still good
    client.request("GET", URL)
    clock.now += 50  # within the 60 s margin
    client.request("GET", URL)
    assert _api_auth(mock) == ["Bearer jt1", "Bearer jt1", "Bearer jt2"]


def test_numeric_expiry_and_nested_paths(mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, json={"data": {"Token": "nt", "ttl": 120}})
    clock = Clock()
    auth = BasicTokenAuth(TOKEN_URL, "u", "p", token_path="data.Token", expires_path="data.ttl", clock=clock)
    assert auth.token() == "nt"
    clock.now += 61  # 120 s lifetime: refreshed after half of it
    mock.replace(responses.POST, TOKEN_URL, json={"data": {"Token": "nt2", "ttl": 120}})
    assert auth.token() == "nt2"


def test_expiry_in_the_past_is_kept_until_a_401(mock: Mock, make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, json={"token": "skewed", "expires": _iso(NOW - 5)})
    mock.post(TOKEN_URL, json={"token": "fresh", "expires": _iso(NOW + 1800)})
    mock.get(URL, json={})
    client = make_client(auth=BasicTokenAuth(TOKEN_URL, "svc-itam", "pw", wall_clock=lambda: NOW))
    client.request("GET", URL)
    client.request("GET", URL)
    assert _api_auth(mock) == ["Bearer skewed", "Bearer skewed"]  # not one token request per call


def test_401_refetches_once(mock: Mock, make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, json={"token": "old", "expires": _iso(NOW + 1800)})
    mock.post(TOKEN_URL, json={"token": "new", "expires": _iso(NOW + 1800)})
    mock.get(URL, status=401)
    mock.get(URL, json={"ok": True})
    client = make_client(auth=BasicTokenAuth(TOKEN_URL, "svc-itam", "pw", wall_clock=lambda: NOW))
    assert client.get_json(URL) == {"ok": True}
    assert _api_auth(mock) == ["Bearer old", "Bearer new"]


def test_refused_is_a_config_error_without_the_password(mock: responses.RequestsMock,
                                                        make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, status=401, json={"httpStatus": 401, "errors": []})
    with pytest.raises(HttpError) as info:
        make_client(auth=BasicTokenAuth(TOKEN_URL, "svc-itam", "S3CRET")).request("GET", URL)
    assert info.value.kind == "config" and "svc-itam" in str(info.value)
    assert "S3CRET" not in str(info.value) and "S3CRET" not in repr(BasicTokenAuth(TOKEN_URL, "u", "S3CRET"))


def test_5xx_on_the_token_endpoint_is_retried(mock: Mock, make_client: MakeClient,
                                              sleeps: list[float]) -> None:
    mock.post(TOKEN_URL, status=502)
    mock.post(TOKEN_URL, json={"token": "jt", "expires": _iso(NOW + 1800)})
    mock.get(URL, json={})
    make_client(auth=BasicTokenAuth(TOKEN_URL, "svc-itam", "pw", wall_clock=lambda: NOW)).request("GET", URL)
    assert len(sleeps) == 1 and _api_auth(mock) == ["Bearer jt"]


def test_body_without_token(mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, json={"expires": "2030-01-01T00:00:00Z"})
    with pytest.raises(HttpError, match="no token"):
        BasicTokenAuth(TOKEN_URL, "u", "p").token()
