"""OAuth2RefreshToken: the refresh-token grant, caching, 401 refresh, rotation, refusals, no secret leaks."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from urllib.parse import parse_qs

import pytest
import responses
from conftest import BASE

from itam_sync.sdk.auth import OAuth2RefreshToken
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient

URL = f"{BASE}/v1/workers"
TOKEN_URL = "https://wd2-impl-services1.workday.example/ccx/oauth2/acme/token"
MakeClient = Callable[..., HttpClient]


def _forms(mock: responses.RequestsMock) -> list[dict[str, list[str]]]:
    return [parse_qs(str(c.request.body)) for c in mock.calls if c.request.url == TOKEN_URL]


def _auth_headers(mock: responses.RequestsMock) -> list[str]:
    return [c.request.headers["Authorization"] for c in mock.calls if c.request.url == URL]


def test_refresh_grant_form_and_bearer(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, json={"access_token": "at1", "token_type": "Bearer", "expires_in": 3600})
    mock.get(URL, json={})
    auth = OAuth2RefreshToken(TOKEN_URL, "cid", "csecret", "rt-SECRET")
    client = make_client(auth=auth)
    client.request("GET", URL)
    client.request("GET", URL)  # the token is cached: one token request for two calls
    assert _forms(mock) == [{"grant_type": ["refresh_token"], "refresh_token": ["rt-SECRET"],
                             "client_id": ["cid"], "client_secret": ["csecret"]}]
    assert _auth_headers(mock) == ["Bearer at1", "Bearer at1"]


def test_basic_client_auth_keeps_the_secret_out_of_the_form(mock: responses.RequestsMock,
                                                            make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, json={"access_token": "at1", "expires_in": 3600})
    mock.get(URL, json={})
    auth = OAuth2RefreshToken(TOKEN_URL, "cid", "csecret", "rt", auth_style="basic", scope=["a", "b"])
    make_client(auth=auth).request("GET", URL)
    token_request = mock.calls[0].request
    assert token_request.headers["Authorization"] == "Basic " + base64.b64encode(b"cid:csecret").decode()
    assert parse_qs(str(token_request.body)) == {"grant_type": ["refresh_token"], "refresh_token": ["rt"],
                                                 "scope": ["a b"]}


def test_401_fetches_a_new_access_token_once(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, json={"access_token": "old", "expires_in": 3600})
    mock.post(TOKEN_URL, json={"access_token": "new", "expires_in": 3600})
    mock.get(URL, status=401)
    mock.get(URL, json={"ok": True})
    auth = OAuth2RefreshToken(TOKEN_URL, "cid", "cs", "rt")
    assert make_client(auth=auth).get_json(URL) == {"ok": True}
    assert _auth_headers(mock) == ["Bearer old", "Bearer new"]
    assert len(_forms(mock)) == 2


def test_rotated_refresh_token_is_used_next_time(mock: responses.RequestsMock, make_client: MakeClient,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    mock.post(TOKEN_URL, json={"access_token": "at1", "expires_in": 3600, "refresh_token": "rt-2-SECRET"})
    mock.post(TOKEN_URL, json={"access_token": "at2", "expires_in": 3600})
    mock.get(URL, json={})
    auth = OAuth2RefreshToken(TOKEN_URL, "cid", "cs", "rt-1-SECRET")
    client = make_client(auth=auth)
    with caplog.at_level(logging.DEBUG):
        client.request("GET", URL)
        auth.invalidate()
        client.request("GET", URL)
    assert [f["refresh_token"] for f in _forms(mock)] == [["rt-1-SECRET"], ["rt-2-SECRET"]]
    assert "rotated" in caplog.text and "SECRET" not in caplog.text


def test_expired_refresh_token_is_a_config_error_naming_the_refresh_token(mock: responses.RequestsMock,
                                                                          make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "token expired"})
    auth = OAuth2RefreshToken(TOKEN_URL, "cid", "cs", "rt-SECRET")
    with pytest.raises(HttpError, match="invalid_grant: token expired.*refresh token") as err:
        make_client(auth=auth).request("GET", URL)
    assert err.value.kind == "config"
    assert "rt-SECRET" not in str(err.value)


def test_token_endpoint_5xx_is_retried_by_the_client(mock: responses.RequestsMock, make_client: MakeClient,
                                                     sleeps: list[float]) -> None:
    mock.post(TOKEN_URL, status=503)
    mock.post(TOKEN_URL, json={"access_token": "at", "expires_in": 3600})
    mock.get(URL, json={"ok": 1})
    auth = OAuth2RefreshToken(TOKEN_URL, "cid", "cs", "rt")
    assert make_client(auth=auth).get_json(URL) == {"ok": 1}
    assert len(sleeps) == 1


def test_repr_hides_every_secret() -> None:
    auth = OAuth2RefreshToken(TOKEN_URL, "cid", "C-SECRET", "R-SECRET")
    assert "SECRET" not in repr(auth) and "cid" in repr(auth)
