"""The classification table: status/exception -> retry | wait | fail, wait hints and URL redaction."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from itam_sync.sdk.errors import Action, classify, redact_url, wait_hint

NOW = 1_700_000_000.0


def resp(status: int, headers: dict[str, str] | None = None, body: Any = None,
         url: str = "https://api.example.test/v1/things") -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.headers.update(headers or {})
    r._content = (body if isinstance(body, str) else json.dumps(body or {})).encode()
    r.url = url
    return r


@pytest.mark.parametrize(
    ("status", "action"),
    [(200, Action.OK), (204, Action.OK), (500, Action.RETRY), (502, Action.RETRY), (503, Action.RETRY),
     (504, Action.RETRY), (429, Action.WAIT), (400, Action.FAIL_CONFIG), (401, Action.FAIL_CONFIG),
     (403, Action.FAIL_CONFIG), (404, Action.FAIL_CONFIG), (409, Action.FAIL_SYSTEM),
     (501, Action.FAIL_SYSTEM), (422, Action.FAIL_SYSTEM)],
)
def test_status_table(status: int, action: Action) -> None:
    assert classify(resp(status)).action is action


def test_503_with_retry_after_waits_that_long() -> None:
    decision = classify(resp(503, {"Retry-After": "12"}))
    assert (decision.action, decision.wait) == (Action.WAIT, 12.0)


def test_5xx_ignores_okta_window_reset_which_is_on_every_response() -> None:
    decision = classify(resp(503, {"X-Rate-Limit-Reset": str(int(NOW) + 40)}), clock=lambda: NOW)
    assert decision.action is Action.RETRY


@pytest.mark.parametrize("reason", ["rateLimitExceeded", "userRateLimitExceeded"])
def test_google_403_rate_limit_is_a_wait(reason: str) -> None:
    body = {"error": {"code": 403, "errors": [{"reason": reason, "domain": "usageLimits"}]}}
    decision = classify(resp(403, body=body))
    assert (decision.action, decision.wait) == (Action.WAIT, None)  # no hint: back off


def test_plain_403_is_a_permission_problem() -> None:
    body = {"error": {"code": 403, "errors": [{"reason": "forbidden"}]}}
    decision = classify(resp(403, body=body))
    assert decision.action is Action.FAIL_CONFIG
    assert "scope" in decision.message


def test_404_tells_the_user_to_check_the_base_url() -> None:
    decision = classify(resp(404, body="no such route"))
    assert decision.action is Action.FAIL_CONFIG
    assert "base URL" in decision.message and "https://api.example.test/v1/things" in decision.message


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "Tue, 14 Nov 2023 22:13:40 GMT"}, 20.0),  # NOW is 22:13:20 GMT
        ({"X-Rate-Limit-Reset": str(int(NOW) + 30)}, 30.0),  # Okta: epoch
        ({"X-RateLimit-RetryAfter": str(int(NOW) + 12)}, 12.0),  # CrowdStrike: epoch
        ({"X-RateLimit-Reset": "45"}, 45.0),  # a delta
        ({"X-RateLimit-Reset": str(int(NOW) + 9)}, 9.0),  # an epoch
        ({"Retry-After": "3600"}, 300.0),  # capped
        ({"X-Rate-Limit-Reset": str(int(NOW) - 5)}, 1.0),  # already past (clock skew): not zero
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_wait_hint(headers: dict[str, str], expected: float | None) -> None:
    assert wait_hint(resp(429, headers), clock=lambda: NOW) == expected


def test_wait_cap_is_configurable() -> None:
    assert classify(resp(429, {"Retry-After": "90"}), max_wait=60).wait == 60.0


@pytest.mark.parametrize(
    ("exc", "action"),
    [
        (requests.ConnectionError("refused"), Action.RETRY),
        (requests.ReadTimeout("slow"), Action.RETRY),
        (requests.ConnectTimeout("slow"), Action.RETRY),
        (requests.exceptions.SSLError("bad cert"), Action.FAIL_CONFIG),
        (requests.exceptions.MissingSchema("no scheme"), Action.FAIL_CONFIG),
        (requests.exceptions.ContentDecodingError("gzip"), Action.FAIL_SYSTEM),
    ],
)
def test_exceptions(exc: BaseException, action: Action) -> None:
    assert classify(exc).action is action


def test_exception_message_is_scrubbed() -> None:
    exc = requests.exceptions.ContentDecodingError("bad body from /x?api_key=S3CRET&page=2")
    assert "S3CRET" not in classify(exc).message


def test_redact_url() -> None:
    url = ("https://user:pw@h.test/p?access_token=T1&api_key=K1&client_secret=S1&sig=G1&code=C1"
           "&assignment=keep&after=abc%20def")
    red = redact_url(url)
    for secret in ("T1", "K1", "S1", "G1", "C1", "pw"):
        assert secret not in red
    assert "assignment=keep" in red and "after=abc%20def" in red and red.startswith("https://***@h.test/p?")
