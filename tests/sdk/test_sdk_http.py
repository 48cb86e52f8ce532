"""HttpClient through real requests code paths (`responses`): retries, waits, 401 refresh, errors, logging."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import requests
import responses
from conftest import BASE, NOW

from itam_sync.sdk.auth import BearerAuth, HeaderAuth, OAuth2ClientCredentials
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient

URL = f"{BASE}/v1/things"
TOKEN_URL = "https://login.example.test/oauth2/token"
MakeClient = Callable[..., HttpClient]


def test_sends_timeout_user_agent_and_joins_base_path(mock: responses.RequestsMock,
                                                      make_client: MakeClient) -> None:
    mock.get(f"{BASE}/api/v2/things", json={"ok": True})
    client = make_client(base_url=f"{BASE}/api/", timeout=(3, 30), extra_headers={"X-Tenant": "t1"})
    assert client.get_json("v2/things") == {"ok": True}
    call = mock.calls[0]
    assert call.request.url == f"{BASE}/api/v2/things"
    assert call.request.req_kwargs["timeout"] == (3, 30)  # type: ignore[attr-defined]
    assert call.request.headers["User-Agent"].startswith("itam-sync/")
    assert call.request.headers["X-Tenant"] == "t1"


def test_429_retry_after_then_success_waits_exactly(mock: responses.RequestsMock, make_client: MakeClient,
                                                    sleeps: list[float]) -> None:
    mock.get(URL, status=429, headers={"Retry-After": "7"})
    mock.get(URL, json={"ok": 1})
    assert make_client().get_json(URL) == {"ok": 1}
    assert sleeps == [7.0]
    assert len(mock.calls) == 2


def test_okta_reset_epoch_header(mock: responses.RequestsMock, make_client: MakeClient,
                                 sleeps: list[float]) -> None:
    mock.get(URL, status=429, json={"errorCode": "E0000047"},
             headers={"X-Rate-Limit-Reset": str(int(NOW) + 30), "X-Rate-Limit-Remaining": "0"})
    mock.get(URL, json=[])
    make_client().request("GET", URL)
    assert sleeps == [30.0]


def test_crowdstrike_retry_after_epoch_header(mock: responses.RequestsMock, make_client: MakeClient,
                                              sleeps: list[float]) -> None:
    mock.get(URL, status=429, headers={"X-RateLimit-RetryAfter": str(int(NOW) + 12)})
    mock.get(URL, status=429, headers={"X-RateLimit-RetryAfter": str(int(NOW) + 2)})
    mock.get(URL, json={})
    make_client().request("GET", URL)
    assert sleeps == [12.0, 2.0]


def test_server_wait_is_capped_at_max_wait(mock: responses.RequestsMock, make_client: MakeClient,
                                           sleeps: list[float]) -> None:
    mock.get(URL, status=429, headers={"Retry-After": "86400"})
    mock.get(URL, json={})
    make_client(max_wait=120).request("GET", URL)
    assert sleeps == [120.0]


def test_503_without_header_backs_off_exponentially(mock: responses.RequestsMock, make_client: MakeClient,
                                                    sleeps: list[float]) -> None:
    mock.get(URL, status=503)
    mock.get(URL, status=503)
    mock.get(URL, status=503)
    mock.get(URL, json={})
    make_client().request("GET", URL)
    assert len(sleeps) == 3
    # 1 s, 2 s, 4 s, each plus up to 1 s of jitter
    for sleep, base in zip(sleeps, (1, 2, 4), strict=True):
        assert base <= sleep <= base + 1


def test_5xx_gives_up_after_max_attempts(mock: responses.RequestsMock, make_client: MakeClient,
                                         sleeps: list[float]) -> None:
    mock.get(URL, status=502)
    with pytest.raises(HttpError) as info:
        make_client(max_attempts=4).request("GET", URL, params={"page": 3})
    assert len(mock.calls) == 4 and len(sleeps) == 3
    err = info.value
    assert (err.kind, err.status) == ("system", 502)
    assert str(err) == f"gave up on GET {URL}?page=3 after 4 attempts (last: HTTP 502)"
    assert err.url == f"{URL}?page=3"


def test_connection_error_is_retried(mock: responses.RequestsMock, make_client: MakeClient,
                                     sleeps: list[float]) -> None:
    mock.get(URL, body=requests.ConnectionError("connection reset"))
    mock.get(URL, json={"ok": 1})
    assert make_client().get_json(URL) == {"ok": 1}
    assert len(sleeps) == 1


def test_google_403_rate_limit_is_retried(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, status=403, json={"error": {"errors": [{"reason": "userRateLimitExceeded"}]}})
    mock.get(URL, json={"ok": 1})
    assert make_client().get_json(URL) == {"ok": 1}


def test_404_is_a_config_error_and_not_retried(mock: responses.RequestsMock, make_client: MakeClient,
                                               sleeps: list[float]) -> None:
    mock.get(URL, status=404, json={"message": "Not Found"})
    with pytest.raises(HttpError) as info:
        make_client().request("GET", URL)
    assert info.value.kind == "config" and info.value.status == 404
    assert "check the base URL" in str(info.value)
    assert len(mock.calls) == 1 and sleeps == []


def test_401_with_static_token_fails_at_once(mock: responses.RequestsMock, make_client: MakeClient) -> None:
    mock.get(URL, status=401)
    with pytest.raises(HttpError) as info:
        make_client(auth=BearerAuth("static")).request("GET", URL)
    assert info.value.kind == "config" and "credentials" in str(info.value)
    assert len(mock.calls) == 1


def _oauth(clock: Callable[[], float] = lambda: 0.0) -> OAuth2ClientCredentials:
    return OAuth2ClientCredentials(TOKEN_URL, "cid", "csecret", scope="read", clock=clock)


def test_401_refreshes_the_token_once_and_retries(mock: responses.RequestsMock,
                                                  make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, json={"access_token": "revoked", "expires_in": 3600})
    mock.post(TOKEN_URL, json={"access_token": "fresh", "expires_in": 3600})
    mock.get(URL, status=401)
    mock.get(URL, json={"ok": 1})
    client = make_client(auth=_oauth())
    assert client.get_json(URL) == {"ok": 1}
    assert client.get_json(URL) == {"ok": 1}  # the fresh token is cached: no third token request
    assert sum(c.request.url == TOKEN_URL for c in mock.calls) == 2
    sent = [c.request.headers["Authorization"] for c in mock.calls if c.request.url == URL]
    assert sent == ["Bearer revoked", "Bearer fresh", "Bearer fresh"]


def test_401_refresh_uses_the_new_token_and_gives_up_after_one(mock: responses.RequestsMock,
                                                               make_client: MakeClient) -> None:
    mock.post(TOKEN_URL, json={"access_token": "old", "expires_in": 3600})
    mock.post(TOKEN_URL, json={"access_token": "new", "expires_in": 3600})
    api = mock.get(URL, status=401)
    with pytest.raises(HttpError) as info:
        make_client(auth=_oauth()).request("GET", URL)
    assert info.value.kind == "config" and info.value.status == 401
    assert api.call_count == 2
    sent = [c.request.headers["Authorization"] for c in mock.calls if c.request.url == URL]
    assert sent == ["Bearer old", "Bearer new"]


def test_secrets_stay_out_of_logs_reprs_and_errors(mock: responses.RequestsMock, make_client: MakeClient,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    mock.get(URL, status=503)
    mock.get(URL, status=500)
    client = make_client(auth=HeaderAuth("Authorization", "SSWS hdr-SECRET"), max_attempts=2)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HttpError) as info:
        client.request("GET", URL, params={"api_key": "q-SECRET", "limit": 5})
    assert "SECRET" not in str(info.value) and "SECRET" not in repr(client)
    assert "SECRET" not in caplog.text
    assert "GET https://api.example.test/v1/things?api_key=***&limit=5 -> 503" in caplog.text
    assert "retrying in" in caplog.text


def test_request_json_posts_a_body_retries_and_rejects_non_json(mock: responses.RequestsMock,
                                                                make_client: MakeClient,
                                                                sleeps: list[float]) -> None:
    mock.post(URL, status=503)
    mock.post(URL, json={"rows": [1]})
    mock.post(URL, body="<html>maintenance</html>")
    client = make_client()
    assert client.request_json("POST", URL, json={"q": 1}, params={"format": "JSON"}) == {"rows": [1]}
    assert mock.calls[1].request.body == b'{"q": 1}' and mock.calls[1].request.url == f"{URL}?format=JSON"
    assert len(sleeps) == 1
    with pytest.raises(HttpError, match="not JSON"):
        client.request_json("POST", URL)
