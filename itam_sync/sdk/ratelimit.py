"""A source's request quota, declared by its connector and kept by `HttpClient`.

Some vendors publish a quota but no way to see it being used up: Kandji (Iru) allows 10,000 requests an
hour per tenant, shared by every API token of the tenant, and documents neither a 429 body nor a reset
header. Backing off a few seconds and giving up fails the run long before the window reopens. A connector
declares the quota once and the client does the rest::

    RateLimit(per_hour=10_000, budget_per_hour=settings.requests_per_hour, wait_without_headers="window")

- `budget_per_hour`: the client never sends more than this many requests in any rolling hour; when the
  budget is spent it sleeps until the oldest request of the hour ages out (a log line says so). Set it
  below the quota: other tokens and tools share the tenant's budget.
- `wait_without_headers="window"`: a 429 that names no wait is waited out in growing steps (1, 2, 4, then
  every `probe_every_s`) for up to one window plus a minute, one probe request per step, with a log line
  per step; then the run fails. A 429 that names a wait (Retry-After, reset headers) is honoured as usual.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateLimit:
    """A request quota: what the vendor allows and how this client keeps to it."""

    per_hour: int | None = None  # the vendor's quota (messages only)
    budget_per_hour: int | None = None  # this client's ceiling in any rolling hour (None: no pacing)
    wait_without_headers: Literal["backoff", "window"] = "backoff"
    window_s: float = 3600.0  # length of the vendor's quota window
    first_probe_s: float = 60.0
    probe_every_s: float = 300.0  # longest step between probes while waiting for the window

    def window_steps(self) -> list[float]:
        """The waits between probes after a hint-less 429: 1, 2, 4 ... minutes up to `probe_every_s`, until
        one window plus a minute has passed (a rolling window frees its oldest slot by then)."""
        steps: list[float] = []
        step, total = self.first_probe_s, 0.0
        while total < self.window_s + 60:
            step = min(step, self.window_s + 60 - total)
            steps.append(step)
            total += step
            step = min(step * 2, self.probe_every_s)
        return steps

    def describe(self) -> str:
        """How the quota reads in a message."""
        return f"{self.per_hour:,} requests/hour" if self.per_hour else "its request quota"


class RequestPacer:
    """Keeps one client within `budget_per_hour` requests in any rolling window of `window_s`.

    Remembers when each request of the last window was sent; before a request that would exceed the budget
    it sleeps until the oldest one ages out. `sleep` may be a test double that does not advance `clock`:
    the slot waited for is then taken as freed, so a test sees exactly one wait per request over budget.
    Thread-safe: a connector fetching details on a few threads shares one pacer, and every request takes
    its slot under a lock. A thread waiting for a slot keeps the lock while it sleeps: the others would
    have to wait for the slots after it anyway, and this way each waits for its own, in turn.
    """

    def __init__(self, limit: RateLimit, clock: Callable[[], float], sleep: Callable[[float], None],
                 label: str) -> None:
        self.limit, self.clock, self.sleep, self.label = limit, clock, sleep, label
        self._sent: deque[float] = deque()
        self.waited = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait, if need be, until one more request fits the budget; return the seconds waited."""
        budget = self.limit.budget_per_hour
        if not budget:
            return 0.0
        with self._lock:
            return self._take(budget)

    def _take(self, budget: int) -> float:
        now = self.clock()
        while self._sent and self._sent[0] <= now - self.limit.window_s:
            self._sent.popleft()
        wait = 0.0
        if len(self._sent) >= budget:
            wait = max(self._sent[0] + self.limit.window_s - now, 0.0)
            if wait >= 10:
                log.info("%s: %d requests sent in the last %.0f min, this connector's budget "
                         "(the source allows %s): waiting %.0f s", self.label, len(self._sent),
                         self.limit.window_s / 60, self.limit.describe(), wait)
            if wait > 0:
                self.sleep(wait)
                self.waited += wait
            self._sent.popleft()
            now = max(self.clock(), now + wait)
        self._sent.append(now)
        return wait
