"""When each connector runs under `serve`: schedules, the per-connector queue, APScheduler jobs.

- `Schedule` reads "every 15m" or a 5-field cron. Intervals are aligned to multiples of the interval since
  1970-01-01 UTC, so every worker agrees on when a run is due ("every 1h" fires on the hour, everywhere).
- `Dispatcher` runs requests on a pool of `service.max_parallel` threads, at most one run per connector in
  this process: a request for a connector that is already running or queued is folded into the one queued
  after it (a full run absorbs an incremental one), so a burst of triggers makes one more run, not many.
- `ServiceScheduler` turns each connector's `schedule` (incremental) and `full_schedule` (full) into
  APScheduler jobs that coalesce misfires and never overlap, and adds up to `service.jitter_s` of random
  delay so many workers (and many connectors) do not hit the sources in step.

Each scheduled request carries the nominal time it was due; the service runs it only if no run of that
connector started since then (on any worker), which is what makes "every scheduled run happened exactly
once" hold with several workers. Which worker runs a connector is decided by its lease (itam_sync.store.leases).
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from itam_sync import clock
from itam_sync.settings import ConfigError, ConnectorConfig, Settings, parse_duration

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SINK_PREFIX = "sink:"  # dispatcher key of a sink's push ("sink:<name>"); connectors are plain names
REMINDERS = "reminders"  # dispatcher key of the reminder digest
STARTUP_JITTER_S = 5.0  # catch-up runs at start are spread over at most this


def _zone(name: str | None) -> tzinfo | None:
    if name is None:
        return None  # APScheduler uses the host's zone
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError([f"service.timezone: unknown time zone {name!r} (use e.g. Europe/Lisbon or UTC)"]) from exc


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: an interval aligned to the epoch, or a cron expression in a time zone."""

    text: str
    interval_s: float | None
    trigger: BaseTrigger

    @classmethod
    def parse(cls, text: str, timezone: str | None = None, where: str = "schedule") -> Schedule:
        """'every 15m' or 'm h dom mon dow'; ConfigError naming `where` when it does not parse."""
        try:
            if text.startswith("every "):
                seconds = parse_duration(text[6:])
                if seconds < 1:
                    raise ValueError("an interval must be at least 1s")
                return cls(text, seconds, IntervalTrigger(seconds=seconds, start_date=EPOCH, timezone=UTC))
            return cls(text, None, CronTrigger.from_crontab(text, timezone=_zone(timezone)))
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError([f"{where}: {text!r} is not a valid schedule ({exc}); use 'every 15m' or a 5-field "
                               "cron expression such as '*/30 * * * *'"]) from exc

    def next_after(self, now: datetime) -> datetime | None:
        """The first nominal fire time after `now`."""
        t = self.trigger.get_next_fire_time(None, now)
        if t is not None and t <= now:
            t = self.trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
        return t

    def last_due(self, now: datetime) -> datetime | None:
        """The latest nominal fire time at or before `now` (None if there never was one)."""
        if self.interval_s is not None:
            n = math.floor((now - EPOCH).total_seconds() / self.interval_s)
            return EPOCH + timedelta(seconds=n * self.interval_s)
        # Cron: find a fire time in a window before `now`, widening it until one is found, then walk forward.
        for window in (timedelta(minutes=2), timedelta(hours=2), timedelta(days=2), timedelta(days=64),
                       timedelta(days=800)):
            t = self.trigger.get_next_fire_time(None, now - window)
            if t is not None and t <= now:
                while True:
                    nxt = self.trigger.get_next_fire_time(None, t + timedelta(seconds=1))
                    if nxt is None or nxt > now:
                        return t
                    t = nxt
        return None

    def jitter(self, max_jitter_s: float) -> float:
        """Up to `max_jitter_s`, and never more than a tenth of an interval (a 2 s schedule stays a 2 s one)."""
        return min(max_jitter_s, 0.1 * self.interval_s) if self.interval_s is not None else max_jitter_s


def connector_schedules(settings: Settings, conn: ConnectorConfig) -> tuple[Schedule | None, Schedule | None]:
    """(incremental, full) schedules of a connector; ConfigError on one that does not parse."""
    tz = settings.service.timezone
    inc = Schedule.parse(conn.schedule, tz, f"connectors.{conn.name}.schedule") if conn.schedule else None
    full = (Schedule.parse(conn.full_schedule, tz, f"connectors.{conn.name}.full_schedule")
            if conn.full_schedule else None)
    return inc, full


@dataclass(frozen=True)
class Request:
    """A wish for one run of one connector.

    `due` is the nominal time of a scheduled occurrence: the run is skipped when one already started since
    (here or on another worker). None means "run anyway" (vendor events, operators). `wait` says whether to
    wait for the connector's lease when another worker holds it (a scheduled run does not: the holder is
    doing the work).
    """

    connector: str
    full: bool = False
    reason: str = "schedule"  # schedule | full_schedule | startup | event | api
    due: datetime | None = None
    wait: bool = False

    def merged(self, other: Request) -> Request:
        """One request that satisfies both (a full run serves an incremental wish; no due beats a due)."""
        if self.full != other.full:
            big, small = (self, other) if self.full else (other, self)
            due = None if small.due is None else big.due
            return replace(big, due=due, wait=self.wait or other.wait)
        due = None if self.due is None or other.due is None else max(self.due, other.due)
        reason = self.reason if due == self.due else other.reason
        return replace(self, due=due, reason=reason, wait=self.wait or other.wait)


class _Slot:
    __slots__ = ("busy", "pending", "debounce")

    def __init__(self) -> None:
        self.busy = False
        self.pending: Request | None = None
        self.debounce: Request | None = None


class Dispatcher:
    """Runs requests on `max_parallel` threads, one at a time per connector, folding bursts together."""

    def __init__(self, execute: Callable[[Request], None], max_parallel: int) -> None:
        self._execute = execute
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="sync")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._slots: dict[str, _Slot] = {}
        self._timers: set[threading.Timer] = set()
        self._closed = False

    def submit(self, req: Request, delay: float = 0.0) -> bool:
        """Queue `req` (after `delay` seconds). False when closed (shutting down)."""
        if delay > 0:
            return self._later(delay, lambda: self.submit(req))
        with self._lock:
            if self._closed:
                return False
            slot = self._slots.setdefault(req.connector, _Slot())
            slot.pending = req if slot.pending is None else slot.pending.merged(req)
            if slot.busy:
                log.debug("%s is running or queued: folded %s request into the next run", req.connector, req.reason)
                return True
            slot.busy = True
        self._pool.submit(self._drain, req.connector)
        return True

    def submit_debounced(self, req: Request, window: float) -> bool:
        """Queue `req` at the end of a `window`-second quiet period: a burst within the window makes one run.
        Returns True if this started a window, False if it joined one already open."""
        with self._lock:
            if self._closed:
                return False
            slot = self._slots.setdefault(req.connector, _Slot())
            if slot.debounce is not None:
                slot.debounce = slot.debounce.merged(req)
                return False
            slot.debounce = req

        def fire() -> None:
            with self._lock:
                pending, slot.debounce = slot.debounce, None
            if pending is not None:
                self.submit(pending)

        self._later(window, fire)
        return True

    def _later(self, delay: float, fn: Callable[[], Any]) -> bool:
        with self._lock:
            if self._closed:
                return False

            def run() -> None:
                with self._lock:
                    self._timers.discard(timer)
                fn()

            timer = threading.Timer(delay, run)
            timer.daemon = True
            self._timers.add(timer)
        timer.start()
        return True

    def _drain(self, connector: str) -> None:
        slot = self._slots[connector]
        while True:
            with self._lock:
                req, slot.pending = slot.pending, None
                if req is None or self._closed:
                    slot.busy = False
                    slot.pending = None
                    self._idle.notify_all()
                    return
            try:
                self._execute(req)
            except Exception:  # noqa: BLE001 - one failed run must not stop this connector's later runs
                log.exception("run of %s (%s) failed unexpectedly", connector, req.reason)

    def running(self) -> list[str]:
        with self._lock:
            return sorted(n for n, s in self._slots.items() if s.busy)

    def pending(self) -> dict[str, Request]:
        with self._lock:
            return {n: s.pending for n, s in self._slots.items() if s.pending is not None}

    def close(self) -> None:
        """Take no more work: cancel timers, drop queued requests (running ones finish)."""
        with self._lock:
            self._closed = True
            timers, self._timers = list(self._timers), set()
            for s in self._slots.values():
                s.pending, s.debounce = None, None
        for t in timers:
            t.cancel()

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no run is in progress; False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: not any(s.busy for s in self._slots.values()), timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class ServiceScheduler:
    """APScheduler jobs, two per connector at most: `schedule` (incremental) and `full_schedule` (full)."""

    def __init__(self, settings: Settings, dispatcher: Dispatcher, connectors: list[str] | None = None) -> None:
        self.settings, self.dispatcher = settings, dispatcher
        self._scheduler = BackgroundScheduler(
            executors={"default": JobExecutor(2)},  # jobs only queue requests: they return at once
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC)
        self.schedules: dict[str, tuple[Schedule | None, Schedule | None]] = {}
        for conn in settings.connectors:
            if not conn.enabled or (connectors and conn.name not in connectors):
                continue
            inc, full = connector_schedules(settings, conn)
            self.schedules[conn.name] = (inc, full)
            for sched, is_full in ((inc, False), (full, True)):
                if sched is None:
                    continue
                self._scheduler.add_job(self._fire, sched.trigger, args=(conn.name, sched, is_full),
                                        id=f"{conn.name}:{'full' if is_full else 'incremental'}",
                                        name=f"{'full' if is_full else 'incremental'} sync of {conn.name}")
        # The outbound side runs on its own schedules too: each sink's push, and the reminder digest.
        self.tasks: dict[str, Schedule] = {}
        tz = settings.service.timezone
        for sink in settings.sinks:
            if sink.enabled and sink.schedule:
                where = f"sinks.{sink.name}.schedule"
                self.tasks[f"{SINK_PREFIX}{sink.name}"] = Schedule.parse(sink.schedule, tz, where)
        if settings.reminders.schedule and settings.reminders.rules:
            self.tasks[REMINDERS] = Schedule.parse(settings.reminders.schedule, tz, "reminders.schedule")
        for key, sched in self.tasks.items():
            self._scheduler.add_job(self._fire, sched.trigger, args=(key, sched, False), id=key, name=key)

    def _fire(self, connector: str, sched: Schedule, full: bool) -> None:
        now = clock.now()
        due = sched.last_due(now + timedelta(milliseconds=50)) or now  # never a hair before its own fire time
        req = Request(connector, full=full, reason="full_schedule" if full else "schedule", due=due)
        self.dispatcher.submit(req, delay=random.uniform(0, sched.jitter(self.settings.service.jitter_s)))

    def catch_up(self, served: Callable[[Request], bool]) -> list[Request]:
        """At start: queue, per connector, the run it missed while no worker was up (if any).

        `served(request)` says whether a run since the request's due time already did it. A connector that
        never ran gets a full run first if it has a full schedule."""
        now = clock.now()
        queued: list[Request] = []
        every: list[tuple[str, tuple[Schedule | None, Schedule | None]]] = [
            *self.schedules.items(), *((k, (v, None)) for k, v in self.tasks.items())]
        for name, (inc, full) in every:
            for sched, is_full in ((full, True), (inc, False)):
                if sched is None:
                    continue
                due = sched.last_due(now)
                if due is None or served(Request(name, full=is_full, due=due)):
                    continue
                req = Request(name, full=is_full, reason="startup", due=due)
                # A little jitter only: a worker that just started should show data soon.
                jitter = min(STARTUP_JITTER_S, sched.jitter(self.settings.service.jitter_s))
                self.dispatcher.submit(req, delay=random.uniform(0, jitter))
                queued.append(req)
                break  # a full catch-up run serves the incremental one too
        return queued

    def next_runs(self) -> dict[str, dict[str, datetime | None]]:
        """Per connector, the next nominal incremental and full run."""
        now = clock.now()
        return {n: {"incremental": inc.next_after(now) if inc else None, "full": full.next_after(now) if full else None}
                for n, (inc, full) in self.schedules.items()}

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
