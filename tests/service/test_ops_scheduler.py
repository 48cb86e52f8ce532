"""Schedules, and the dispatcher that runs one connector at a time, folds bursts together and debounces."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from itam_sync.service.scheduler import Dispatcher, Request, Schedule
from itam_sync.settings import ConfigError, ConnectorConfig, Settings

T = datetime(2026, 11, 26, 13, 10, 25, 500000, tzinfo=UTC)


def test_interval_schedules_are_aligned_so_every_worker_agrees() -> None:
    s = Schedule.parse("every 15m")
    assert s.last_due(T) == datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
    assert s.next_after(T) == datetime(2026, 11, 26, 13, 15, tzinfo=UTC)
    assert s.next_after(datetime(2026, 11, 26, 13, 15, tzinfo=UTC)) == datetime(2026, 11, 26, 13, 30, tzinfo=UTC)
    two = Schedule.parse("every 2s")
    assert two.last_due(T) == datetime(2026, 11, 26, 13, 10, 24, tzinfo=UTC)
    assert two.jitter(30) == pytest.approx(0.2)  # never more than a tenth of the interval
    assert Schedule.parse("every 7d").jitter(30) == 30


def test_cron_schedules_know_their_last_and_next_fire_time() -> None:
    s = Schedule.parse("0 6 * * *", timezone="UTC")
    assert s.last_due(T) == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    assert s.next_after(T) == datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
    weekly = Schedule.parse("30 3 * * sun", timezone="Europe/Lisbon")
    assert weekly.last_due(T) == datetime(2026, 11, 22, 3, 30, tzinfo=UTC)  # Lisbon is UTC in November
    every5 = Schedule.parse("*/5 * * * *", timezone="UTC")
    assert every5.last_due(T) == datetime(2026, 11, 26, 13, 10, tzinfo=UTC)


def test_bad_schedules_fail_at_start_with_where_and_how() -> None:
    with pytest.raises(ConfigError, match=r"connectors.x.schedule: '61 \* \* \* \*' is not a valid schedule"):
        Schedule.parse("61 * * * *", where="connectors.x.schedule")
    with pytest.raises(ConfigError, match="at least 1s"):
        Schedule.parse("every 0s")
    with pytest.raises(ConfigError, match="unknown time zone"):
        Schedule.parse("0 6 * * *", timezone="Mars/Olympus")
    # full_schedule is validated like schedule when the config loads
    with pytest.raises(ValueError, match="5-field cron"):
        Settings(connectors=[ConnectorConfig(name="x", type="csv", full_schedule="weekly")])


def test_requests_merge_into_one_that_serves_both() -> None:
    due1, due2 = T, T + timedelta(minutes=5)
    inc = Request("x", due=due1)
    assert inc.merged(Request("x", due=due2)).due == due2
    full = inc.merged(Request("x", full=True, reason="full_schedule", due=due2))
    assert full.full and full.due == due2 and full.reason == "full_schedule"
    event = inc.merged(Request("x", reason="event", wait=True))
    assert event.due is None and event.wait  # an event always runs, and waits for the lease


def _recording_dispatcher(max_parallel: int, hold: float) -> tuple[Dispatcher, list[tuple[str, str, float, float]]]:
    runs: list[tuple[str, str, float, float]] = []
    lock = threading.Lock()

    def execute(req: Request) -> None:
        t0 = time.monotonic()
        time.sleep(hold)
        with lock:
            runs.append((req.connector, "full" if req.full else "incremental", t0, time.monotonic()))

    return Dispatcher(execute, max_parallel), runs


def test_one_run_per_connector_and_a_burst_makes_one_more_run() -> None:
    d, runs = _recording_dispatcher(4, 0.3)
    for _ in range(10):
        d.submit(Request("a"))
    d.submit(Request("a", full=True))
    assert d.wait_idle(5)
    assert [m for c, m, _, _ in runs] == ["incremental", "full"]  # the 10 + 1 became 2 runs, the 2nd full
    (_, _, s1, e1), (_, _, s2, _) = runs
    assert s2 >= e1  # never at the same time


def test_different_connectors_run_in_parallel_up_to_the_limit() -> None:
    d, runs = _recording_dispatcher(2, 0.4)
    for name in "abcd":
        d.submit(Request(name))
    assert d.wait_idle(5)
    starts = sorted(s for _, _, s, _ in runs)
    assert len(runs) == 4
    assert starts[1] - starts[0] < 0.2  # two at once
    assert starts[2] - starts[0] >= 0.35  # the third waited for a free slot


def test_debounce_turns_a_burst_of_events_into_one_run() -> None:
    d, runs = _recording_dispatcher(2, 0.0)
    results = [d.submit_debounced(Request("okta", reason="event"), 0.4) for _ in range(20)]
    assert results == [True] + [False] * 19
    time.sleep(0.2)
    assert runs == []  # still inside the window
    time.sleep(0.5)
    assert d.wait_idle(2) and len(runs) == 1
    d.submit_debounced(Request("okta", reason="event"), 0.1)  # a later event opens a new window
    time.sleep(0.4)
    assert d.wait_idle(2) and len(runs) == 2


def test_closing_drops_queued_work_and_refuses_more() -> None:
    d, runs = _recording_dispatcher(1, 0.3)
    d.submit(Request("a"))
    d.submit(Request("b"))  # queued behind a (one slot)
    d.submit(Request("c"), delay=0.1)  # a jittered scheduled run
    time.sleep(0.05)
    d.close()
    assert d.submit(Request("d")) is False
    assert d.wait_idle(3)
    assert [c for c, *_ in runs] == ["a"]
