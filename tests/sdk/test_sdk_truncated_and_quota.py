"""Issue #20 item 12 and issue #14: truncated bodies are transient; a declared quota is kept and waited out.

Through real `requests` code paths (`responses`): a body callback raising ChunkedEncodingError (what requests
raises for IncompleteRead), a 200 whose JSON is cut short, a 429 with no hint under a `RateLimit` policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import requests
import responses

from itam_sync.sdk.errors import Action, HttpError, classify
from itam_sync.sdk.http import HttpClient, observe_http
from itam_sync.sdk.pagination import OffsetPaginator
from itam_sync.sdk.ratelimit import RateLimit

BASE = "https://api.example.test"
URL = f"{BASE}/v1/things"
MakeClient = Callable[..., HttpClient]
INCOMPLETE = "('Connection broken: IncompleteRead(512 bytes read, 1536 more expected)', IncompleteRead(...))"


def fails_once_then(body: Any, error: Exception) -> Callable[[Any], tuple[int, dict[str, str], str]]:
    """A `responses` callback raising `error` on the first call, then answering `body`."""
    calls: list[int] = []

    def callback(_request: Any) -> tuple[int, dict[str, str], str]:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return 200, {}, body
    return callback


def test_the_table_calls_a_truncated_or_undecodable_body_transient() -> None:
    assert classify(requests.exceptions.ChunkedEncodingError(INCOMPLETE)).action is Action.RETRY
    try:
        requests.models.complexjson.loads('{"data": [{"id": 1}, {"id"')
    except ValueError as exc:
        assert classify(exc).action is Action.RETRY
    else:  # pragma: no cover
        pytest.fail("the body decoded")


def test_chunked_encoding_error_is_retried_like_a_reset(mock: responses.RequestsMock, make_client: MakeClient,
                                                        sleeps: list[float]) -> None:
    mock.add_callback(responses.GET, URL, callback=fails_once_then('{"ok": 1}', requests.exceptions
                                                                   .ChunkedEncodingError(INCOMPLETE)))
    assert make_client().get_json(URL) == {"ok": 1}
    assert len(mock.calls) == 2 and len(sleeps) == 1 and 1.0 <= sleeps[0] <= 2.0


def test_a_page_cut_short_is_fetched_again_not_read_as_the_end(mock: responses.RequestsMock,
                                                               make_client: MakeClient,
                                                               sleeps: list[float]) -> None:
    good = '{"rows": [{"id": 3}, {"id": 4}]}'
    mock.get(URL, json={"rows": [{"id": 1}, {"id": 2}]}, match=[responses.matchers.query_param_matcher(
        {"limit": "2", "offset": "0"})])
    calls: list[int] = []

    def second_page(_request: Any) -> tuple[int, dict[str, str], str]:
        calls.append(1)
        return 200, {}, good[:17] if len(calls) == 1 else good  # first answer: the body ends mid-record

    mock.add_callback(responses.GET, URL, callback=second_page,
                      match=[responses.matchers.query_param_matcher({"limit": "2", "offset": "2"})])
    mock.get(URL, json={"rows": []}, match=[responses.matchers.query_param_matcher({"limit": "2", "offset": "4"})])
    records = list(make_client().paginate(URL, OffsetPaginator(limit=2), records_path="rows"))
    assert [r["id"] for r in records] == [1, 2, 3, 4]
    assert len(calls) == 2 and len(sleeps) == 1


def test_a_body_that_stays_broken_fails_after_the_attempts_naming_what_came(mock: responses.RequestsMock,
                                                                           make_client: MakeClient,
                                                                           sleeps: list[float]) -> None:
    mock.get(URL, body='{"rows": [{"id": 1}, ', status=200)
    with pytest.raises(HttpError) as info:
        make_client(max_attempts=3).get_json(URL)
    assert len(mock.calls) == 3 and len(sleeps) == 2
    assert "gave up" in str(info.value) and "not JSON" in str(info.value) and '{"rows"' in str(info.value)
    assert info.value.kind == "system"


def test_429_without_hint_waits_for_the_quota_window_when_the_policy_says_so(
        mock: responses.RequestsMock, make_client: MakeClient, sleeps: list[float],
        caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(3):
        mock.get(URL, status=429, json={"detail": "Request was throttled."})
    mock.get(URL, json={"ok": 1})
    waits: list[tuple[str, float]] = []
    client = make_client(rate_limit=RateLimit(per_hour=10_000, wait_without_headers="window"))
    with caplog.at_level(logging.WARNING), observe_http(lambda kind, value: waits.append((kind, value))):
        assert client.get_json(URL) == {"ok": 1}
    # Not a few seconds of backoff and a failed run: one-minute, two-minute, four-minute probes.
    assert sleeps == [60.0, 120.0, 240.0]
    assert waits == [("rate_limit_wait", 60.0), ("rate_limit_wait", 120.0), ("rate_limit_wait", 240.0)]
    assert "10,000 requests/hour" in caplog.text and "quota window" in caplog.text


def test_the_window_wait_is_bounded_then_the_run_fails_with_the_fix(mock: responses.RequestsMock,
                                                                   make_client: MakeClient,
                                                                   sleeps: list[float]) -> None:
    mock.get(URL, status=429)
    client = make_client(rate_limit=RateLimit(per_hour=10_000, wait_without_headers="window"))
    with pytest.raises(HttpError) as info:
        client.get_json(URL)
    assert sum(sleeps) == 3660.0 and max(sleeps) == 300.0  # one window plus a minute, probing every 5 min
    assert len(mock.calls) == len(sleeps) + 1
    assert info.value.status == 429 and "still throttled" in str(info.value) and "budget" in str(info.value)


def test_429_with_a_hint_is_still_waited_exactly_under_the_window_policy(mock: responses.RequestsMock,
                                                                        make_client: MakeClient,
                                                                        sleeps: list[float]) -> None:
    mock.get(URL, status=429, headers={"Retry-After": "7"})
    mock.get(URL, json={})
    make_client(rate_limit=RateLimit(per_hour=10_000, wait_without_headers="window")).get_json(URL)
    assert sleeps == [7.0]


def test_without_a_policy_a_hintless_429_backs_off_as_before(mock: responses.RequestsMock,
                                                             make_client: MakeClient, sleeps: list[float]) -> None:
    mock.get(URL, status=429)
    with pytest.raises(HttpError, match="gave up"):
        make_client().get_json(URL)
    assert len(sleeps) == 4 and sum(sleeps) < 20


def test_the_budget_paces_requests_within_a_rolling_hour(mock: responses.RequestsMock, sleeps: list[float]) -> None:
    mock.get(URL, json={})
    now = [1_000.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    client = HttpClient(BASE, sleep=sleep, clock=lambda: now[0],
                        rate_limit=RateLimit(per_hour=10_000, budget_per_hour=3))
    for _ in range(3):
        client.get_json(URL)
        now[0] += 100  # three requests at t=1000, 1100, 1200
    client.get_json(URL)  # the fourth waits for the first to age out: 1000 + 3600 - 1300
    assert sleeps == [3300.0]
    client.get_json(URL)  # the second (t=1100) ages out at 4700; it is 4600 now
    assert sleeps == [3300.0, 100.0]
    assert client.requests_sent == 5 and len(mock.calls) == 5
