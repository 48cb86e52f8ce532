"""Auth objects: headers, OAuth2 client-credentials caching/refresh, SDK token providers, no secret leaks."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from urllib.parse import parse_qs

import pytest
import requests
import responses
from conftest import BASE

from itam_sync.sdk.auth import BasicAuth, BearerAuth, HeaderAuth, OAuth2ClientCredentials, TokenProviderAuth
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient

URL = f"{BASE}/v1/devices"
TOKEN_URL = "https://login.example.test/tenant/oauth2/v2.0/token"
MakeClient = Callable[..., HttpClient]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _auth_headers(mock: responses.RequestsMock) -> list[str]:
    return [c.request.headers["Authorization"] for c in mock.calls if c.request.url == URL]


def test_header_bearer_and_basic(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, json={})
    for auth in (HeaderAuth("Authorization", "SSWS okta-key"), BearerAuth("bt"), BasicAuth("u", "pw")):
        make_client(auth=auth).request("GET", URL)
    basic = "Basic " + base64.b64encode(b"u:pw").decode()
    assert _auth_headers(mock) == ["SSWS okta-key", "Bearer bt", basic]


def test_reprs_hide_secrets() -> None:
    auths = [HeaderAuth("X-Api-Key", "K-SECRET"), BearerAuth("B-SECRET"), BasicAuth("alice", "P-SECRET"),
             OAuth2ClientCredentials(TOKEN_URL, "cid", "C-SECRET"),
             TokenProviderAuth(lambda: ("T-SECRET", 60))]
    for auth in auths:
        assert "SECRET" not in repr(auth)
    assert "alice" in repr(auths[2]) and "cid" in repr(auths[3])


def test_oauth_form_in_body(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, json={"access_token": "at", "expires_in": 3600, "token_type": "Bearer"})
    mock.get(URL, json={})
    auth = OAuth2ClientCredentials(TOKEN_URL, "cid", "csecret", scope=["a.read", "b.read"],
                                   extra_form={"resource": "https://r"})
    make_client(auth=auth).request("GET", URL)
    form = parse_qs(str(mock.calls[0].request.body))
    assert form == {"grant_type": ["client_credentials"], "client_id": ["cid"], "client_secret": ["csecret"],
                    "scope": ["a.read b.read"], "resource": ["https://r"]}
    assert _auth_headers(mock) == ["Bearer at"]


def test_oauth_basic_auth_style(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, json={"access_token": "at", "expires_in": 3600})
    mock.get(URL, json={})
    auth = OAuth2ClientCredentials(TOKEN_URL, "cid", "csecret", auth_style="basic")
    make_client(auth=auth).request("GET", URL)
    token_request = mock.calls[0].request
    assert token_request.headers["Authorization"] == "Basic " + base64.b64encode(b"cid:csecret").decode()
    assert "csecret" not in str(token_request.body)


def test_oauth_token_cached_then_refreshed_after_expiry(mock: responses.RequestsMock,
                                                        make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, json={"access_token": "t1", "expires_in": 3600})
    mock.post(TOKEN_URL, json={"access_token": "t2", "expires_in": 3600})
    mock.get(URL, json={})
    clock = Clock()
    client = make_client(auth=OAuth2ClientCredentials(TOKEN_URL, "cid", "cs", clock=clock))
    client.request("GET", URL)
    clock.now += 3500  # still more than 60 s left
    client.request("GET", URL)
    clock.now += 50  # now within 60 s of expiry: refresh before it lapses mid-request
    client.request("GET", URL)
    assert _auth_headers(mock) == ["Bearer t1", "Bearer t1", "Bearer t2"]
    assert sum(c.request.url == TOKEN_URL for c in mock.calls) == 2


def test_oauth_token_endpoint_refusal_is_a_config_error(mock: responses.RequestsMock,
                                                        make_client: MakeClient,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    mock.post(TOKEN_URL, status=401, json={"error": "invalid_client", "error_description": "bad secret"})
    caplog.set_level(logging.DEBUG)
    auth = OAuth2ClientCredentials(TOKEN_URL, "cid", "S3CRET-VALUE")
    with pytest.raises(HttpError) as info:
        make_client(auth=auth).request("GET", URL)
    assert info.value.kind == "config" and "invalid_client" in str(info.value) and "cid" in str(info.value)
    assert "S3CRET" not in str(info.value) and "S3CRET" not in caplog.text
    assert not any(c.request.url == URL for c in mock.calls)


def test_oauth_token_endpoint_5xx_is_retried_by_the_client(mock: responses.RequestsMock,
                                                           make_client: MakeClient,
                                                           sleeps: list[float]) -> None:
    mock.post(TOKEN_URL, status=503)
    mock.post(TOKEN_URL, json={"access_token": "at", "expires_in": 3600})
    mock.get(URL, json={})
    make_client(auth=OAuth2ClientCredentials(TOKEN_URL, "cid", "cs")).request("GET", URL)
    assert len(sleeps) == 1 and _auth_headers(mock) == ["Bearer at"]


def test_oauth_token_response_without_access_token(mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, json={"token_type": "Bearer"})
    with pytest.raises(HttpError, match="no access_token"):
        OAuth2ClientCredentials(TOKEN_URL, "cid", "cs").token()


def test_token_provider_cache_expiry_and_invalidate() -> None:
    calls: list[int] = []

    def provider() -> tuple[str, float | None]:
        calls.append(1)
        return f"sdk{len(calls)}", 100  # short-lived: margin is half the lifetime, not 60 s

    clock = Clock()
    auth = TokenProviderAuth(provider, clock=clock)
    assert auth.token() == "sdk1"
    clock.now += 49
    assert auth.token() == "sdk1"
    clock.now += 1
    assert auth.token() == "sdk2"
    auth.invalidate()
    assert auth.token() == "sdk3"
    request = auth(requests.Request("GET", URL).prepare())
    assert request.headers["Authorization"] == "Bearer sdk3"


def test_token_without_expiry_is_kept_until_invalidated() -> None:
    tokens = iter(["a", "b"])
    clock = Clock()
    auth = TokenProviderAuth(lambda: (next(tokens), None), clock=clock)
    assert auth.token() == "a"
    clock.now += 10**6
    assert auth.token() == "a"
    auth.invalidate()
    assert auth.token() == "b"


def test_oauth_extra_form_callable_is_evaluated_per_token_request(mock: responses.RequestsMock,
                                                                  make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, json={"access_token": "t1", "expires_in": 3600})
    mock.post(TOKEN_URL, json={"access_token": "t2", "expires_in": 3600})
    mock.get(URL, status=401)
    mock.get(URL, json={})
    assertions = iter(["jwt-1", "jwt-2"])
    auth = OAuth2ClientCredentials(TOKEN_URL, "cid", extra_form=lambda: {"client_assertion": next(assertions)})
    make_client(auth=auth).request("GET", URL)  # 401 -> refresh: a second, fresh assertion
    forms = [parse_qs(str(c.request.body)) for c in mock.calls if c.request.url == TOKEN_URL]
    assert [f["client_assertion"] for f in forms] == [["jwt-1"], ["jwt-2"]]
    assert "client_secret" not in forms[0]
