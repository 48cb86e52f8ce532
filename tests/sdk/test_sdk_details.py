"""join_details: per-record detail requests a few at a time, through a real HttpClient over `responses`."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from conftest import BASE

from itam_sync.sdk.detail_cache import DetailCache, fingerprint
from itam_sync.sdk.details import join_details
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient, observe_http
from itam_sync.sdk.ratelimit import RateLimit, RequestPacer

DETAILS_RE = re.compile(rf"{re.escape(BASE)}/items/(\d+)/details")


class Server:
    """Serves `/items/{n}/details`; early items answer slowest (so responses complete out of order)."""

    def __init__(self, mock: responses.RequestsMock, delay: Callable[[int], float] = lambda n: 0.0,
                 status: Callable[[int], int] = lambda n: 200, gate: threading.Event | None = None) -> None:
        self.delay, self.status, self.gate = delay, status, gate  # gate: item 0 waits for it
        self.calls: list[int] = []  # in order of arrival
        self.done: list[int] = []  # in order of completion
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()
        mock.add_callback(responses.GET, DETAILS_RE, callback=self.details)

    def details(self, request: Any) -> tuple[int, dict[str, str], str]:
        match = DETAILS_RE.match(request.url)
        assert match
        n = int(match[1])
        with self._lock:
            self.calls.append(n)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if n == 0 and self.gate is not None:
                self.gate.wait(5)
            time.sleep(self.delay(n))
            status = self.status(n)
            return status, {}, f'{{"n": {n}, "mac": "mac-{n}"}}' if status == 200 else '{"detail": "nope"}'
        finally:
            with self._lock:
                self.in_flight -= 1
                self.done.append(n)


def rows(count: int) -> list[dict[str, Any]]:
    return [{"id": str(n), "name": f"item {n}"} for n in range(count)]


def joined(client: HttpClient, items: Iterator[dict[str, Any]] | list[dict[str, Any]], concurrency: int,
           **kwargs: Any) -> Generator[tuple[dict[str, Any], Any], None, None]:
    return join_details(items, lambda key: client.get_json(f"/items/{key}/details"), key=lambda r: r["id"],
                        concurrency=concurrency, **kwargs)


def test_rows_come_out_in_list_order_when_details_complete_out_of_order(
        mock: responses.RequestsMock, make_client: Callable[..., HttpClient]) -> None:
    server = Server(mock, delay=lambda n: 0.08 if n % 4 == 0 else 0.0)  # every 4th item answers last
    client = make_client()
    out = list(joined(client, rows(12), concurrency=4))
    assert [(r["id"], d["n"]) for r, d in out] == [(str(n), n) for n in range(12)]
    assert sorted(server.calls) == list(range(12))
    assert server.done[0] != 0  # the slow first item really was overtaken


def test_at_most_concurrency_requests_in_flight(mock: responses.RequestsMock,
                                                make_client: Callable[..., HttpClient]) -> None:
    server = Server(mock, delay=lambda n: 0.03)
    client = make_client(max_connections=4)
    assert len(list(joined(client, rows(24), concurrency=3))) == 24
    assert server.most_in_flight == 3  # in flight together, and never more
    assert client.requests_sent == 24


def test_concurrency_one_is_the_sequential_loop(mock: responses.RequestsMock,
                                                make_client: Callable[..., HttpClient]) -> None:
    server = Server(mock, delay=lambda n: 0.01 if n == 0 else 0.0)
    client = make_client()
    pulled: list[str] = []

    def listed() -> Iterator[dict[str, Any]]:
        for row in rows(4):
            pulled.append(row["id"])
            yield row

    out = joined(client, listed(), concurrency=1)
    row, details = next(out)
    assert pulled == ["0"] and server.calls == [0] and details["mac"] == "mac-0"  # fetched before it is yielded
    assert [r["id"] for r, _ in out] == ["1", "2", "3"] and server.calls == [0, 1, 2, 3]
    assert server.most_in_flight == 1


def test_the_list_is_read_ahead_by_the_window_only(mock: responses.RequestsMock,
                                                   make_client: Callable[..., HttpClient]) -> None:
    release = threading.Event()
    Server(mock, gate=release)  # item 0 hangs until released
    client = make_client()
    pulled: list[str] = []

    def listed() -> Iterator[dict[str, Any]]:
        for row in rows(50):
            pulled.append(row["id"])
            yield row

    out = joined(client, listed(), concurrency=2, window=5)
    waiter = threading.Timer(0.3, release.set)
    waiter.start()
    first, _ = next(out)
    # While item 0 hung, the list was read 5 rows ahead plus the one that filled the window, no further.
    assert first["id"] == "0" and len(pulled) == 6
    assert [r["id"] for r, _ in out] == [str(n) for n in range(1, 50)]
    waiter.join()


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_failing_detail_request_surfaces_at_its_place_as_in_the_sequential_loop(
        mock: responses.RequestsMock, make_client: Callable[..., HttpClient], concurrency: int) -> None:
    Server(mock, delay=lambda n: 0.02 if n < 3 else 0.0, status=lambda n: 403 if n == 5 else 200)
    client = make_client()
    seen: list[str] = []
    with pytest.raises(HttpError) as failed:
        for row, _details in joined(client, rows(20), concurrency=concurrency):
            seen.append(row["id"])
    # Every earlier row came out, then the detail request's own error (a 403 is a configuration error).
    assert seen == ["0", "1", "2", "3", "4"]
    assert failed.value.status == 403 and failed.value.kind == "config"
    assert "/items/5/details" in (failed.value.url or "")


def test_the_same_error_object_and_rows_for_every_concurrency(mock: responses.RequestsMock,
                                                              make_client: Callable[..., HttpClient]) -> None:
    Server(mock, status=lambda n: 500 if n == 2 else 200)
    outcomes = []
    for concurrency in (1, 3):
        client = make_client()
        seen: list[tuple[str, Any]] = []
        with pytest.raises(HttpError) as failed:
            for row, details in joined(client, rows(6), concurrency=concurrency):
                seen.append((row["id"], details))
        outcomes.append((seen, type(failed.value), str(failed.value), failed.value.kind))
    assert outcomes[0] == outcomes[1]
    assert "gave up on GET" in outcomes[0][2] and "after 5 attempts (last: HTTP 500)" in outcomes[0][2]


def test_a_failing_list_read_surfaces_after_the_rows_already_listed(mock: responses.RequestsMock,
                                                                    make_client: Callable[..., HttpClient]) -> None:
    Server(mock, delay=lambda n: 0.02)
    client = make_client()

    def listed() -> Iterator[dict[str, Any]]:
        yield from rows(3)
        raise HttpError("list page 2 failed", status=503)

    seen: list[str] = []
    with pytest.raises(HttpError, match="list page 2 failed"):
        for row, details in joined(client, listed(), concurrency=4):
            assert details["n"] == int(row["id"])
            seen.append(row["id"])
    assert seen == ["0", "1", "2"]


def test_rows_without_a_key_pass_through_in_place_without_a_request(
        mock: responses.RequestsMock, make_client: Callable[..., HttpClient]) -> None:
    server = Server(mock, delay=lambda n: 0.02)
    client = make_client()
    items: list[Any] = [{"id": "0"}, "bad row", {"id": "1"}, "bad row 2", {"id": "2"}]
    out = list(join_details(items, lambda key: client.get_json(f"/items/{key}/details"),
                            key=lambda r: r["id"] if isinstance(r, dict) else None, concurrency=3))
    assert [(r, d and d["n"]) for r, d in out] == [({"id": "0"}, 0), ("bad row", None), ({"id": "1"}, 1),
                                                    ("bad row 2", None), ({"id": "2"}, 2)]
    assert sorted(server.calls) == [0, 1, 2]


def test_the_request_budget_counts_every_request_under_concurrency(
        mock: responses.RequestsMock, make_client: Callable[..., HttpClient], sleeps: list[float]) -> None:
    Server(mock, delay=lambda n: 0.005)
    client = make_client(rate_limit=RateLimit(per_hour=100, budget_per_hour=10))
    assert len(list(joined(client, rows(40), concurrency=8))) == 40
    assert client.requests_sent == 40 and len(mock.calls) == 40
    # Each of the 30 requests over the budget waited exactly once, the same waits as one after the other.
    assert len(sleeps) == 30 and sleeps == sequential_waits(budget=10, requests=40)


def sequential_waits(budget: int, requests: int) -> list[float]:
    """The waits of `requests` requests sent one after the other at a clock standing still."""
    waits: list[float] = []
    pacer = RequestPacer(RateLimit(budget_per_hour=budget), lambda: 1_000.0, waits.append, "sequential")
    for _ in range(requests):
        pacer.acquire()
    return waits


def test_the_pacer_keeps_the_budget_exactly_across_threads() -> None:
    """Eight threads race for slots; the clock yields the GIL between read and use, as a slow clock would."""
    def clock() -> float:
        time.sleep(0.0005)
        return 1_000.0

    waits: list[float] = []
    pacer = RequestPacer(RateLimit(budget_per_hour=25), clock, waits.append, "test")
    threads = [threading.Thread(target=lambda: [pacer.acquire() for _ in range(10)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(waits) == 80 - 25 and len(pacer._sent) == 25
    assert waits == sequential_waits(budget=25, requests=80)


def test_the_detail_cache_skips_unchanged_rows_under_concurrency(
        mock: responses.RequestsMock, make_client: Callable[..., HttpClient], tmp_path: Path) -> None:
    server = Server(mock, delay=lambda n: 0.01)
    client = make_client()
    path = tmp_path / "details.sqlite"

    def run(items: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Any]]:
        cache = DetailCache(path, max_age_s=3600)
        try:
            return list(joined(client, items, concurrency=4, cache=cache, fingerprint=lambda r: fingerprint(r)))
        finally:
            cache.close()

    first = run(rows(10))
    assert sorted(server.calls) == list(range(10))
    server.calls.clear()
    changed = rows(10)
    changed[7]["name"] = "renamed"
    again = run(changed)
    assert server.calls == [7]  # only the changed row costs a request
    assert [d for _, d in again] == [d for _, d in first]  # the others come back with their remembered details


def test_retries_in_worker_threads_reach_the_callers_listener(mock: responses.RequestsMock,
                                                              make_client: Callable[..., HttpClient]) -> None:
    answers = iter([503])
    Server(mock, status=lambda n: next(answers, 200) if n == 1 else 200)
    events: list[str] = []
    with observe_http(lambda kind, value: events.append(kind)):
        out = list(joined(make_client(), rows(3), concurrency=3))
    assert [d["n"] for _, d in out] == [0, 1, 2]
    assert events == ["retry"]


def test_an_early_stop_drops_queued_requests_and_leaves_no_threads(mock: responses.RequestsMock,
                                                                   make_client: Callable[..., HttpClient]) -> None:
    server = Server(mock, delay=lambda n: 0.01)
    before = threading.active_count()
    out = joined(make_client(), rows(100), concurrency=4)
    next(out)
    out.close()
    assert threading.active_count() == before
    assert len(server.calls) <= 10  # the window (8) plus what was started; never the whole list


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(join_details([], str, key=str, concurrency=0))
    with pytest.raises(ValueError, match="fingerprint"):
        list(join_details([], str, key=str, concurrency=2, cache=DetailCache(None, max_age_s=1)))


def test_the_connection_pool_is_sized_for_the_threads(make_client: Callable[..., HttpClient]) -> None:
    # urllib3 keeps 10 connections per host by default; more threads would open and drop connections.
    assert make_client().session.get_adapter(BASE)._pool_maxsize == 10  # type: ignore[attr-defined]
    assert make_client(max_connections=17).session.get_adapter(BASE)._pool_maxsize == 17  # type: ignore[attr-defined]
