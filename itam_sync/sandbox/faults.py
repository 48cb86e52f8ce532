"""Fault injection for the sandbox: a spec such as `429:0.05,5xx:0.02,slow:0.01@0.5s,token_expire:60s`.

Items, comma-separated (probabilities are per data request; token and discovery endpoints are never faulted):

| item | what the sandbox does |
|---|---|
| `429:P[@N]` | a 429 storm: the request is throttled N times in a row (default 3), each time with the |
|             | vendor's wait header (Retry-After, Okta `X-Rate-Limit-Reset`, CrowdStrike `X-RateLimit-RetryAfter`) |
| `5xx:P` | 500, 502, 503 or 504 with no wait hint |
| `slow:P[@S]` | answers after S seconds (default 0.5s) |
| `reset:P` | resets the TCP connection instead of answering |
| `truncate:P` | sends the headers and half the body, then closes the connection |
| `malformed:P` | a complete 200 whose body is cut in half (not JSON) |
| `token_expire:T` | issued tokens stop working after T (`60s`, or `40req` = 40 requests), though they claim an hour |
| `mutate_between_pages[:N]` | after every Nth page served (default 2), ~2% of the records change (content only) |
| `retry_after:S` | the wait the 429s ask for (default 1 second) |
| `seed:K` | varies which requests are hit (default 0) |

Which request gets which fault is a pure function of (seed, request, how many times that request was made),
so a run replays identically whatever the thread timing.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from dataclasses import dataclass, field

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|req)?$")


class FaultSpecError(ValueError):
    """A fault spec that cannot be parsed; the message names the item and the accepted forms."""


@dataclass(frozen=True)
class FaultSpec:
    """Parsed fault settings (all off by default)."""

    p429: float = 0.0
    storm: int = 3
    retry_after: float = 1.0
    p5xx: float = 0.0
    pslow: float = 0.0
    slow_s: float = 0.5
    preset: float = 0.0
    ptruncate: float = 0.0
    pmalformed: float = 0.0
    token_ttl_s: float | None = None
    token_ttl_requests: int | None = None
    mutate_every: int = 0
    seed: int = 0
    text: str = ""

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec:
        """Parse a spec string; '' or None means no faults. Raises FaultSpecError naming the bad item."""
        values: dict[str, object] = {"text": (text or "").strip()}
        for raw in (text or "").split(","):
            item = raw.strip()
            if not item:
                continue
            name, _, arg = item.partition(":")
            arg, _, param = arg.partition("@")
            name = name.strip().lower()
            try:
                if name in ("429", "5xx", "slow", "reset", "truncate", "malformed"):
                    p = float(arg)
                    if not 0 <= p <= 1:
                        raise ValueError("probability must be between 0 and 1")
                    key = {"429": "p429", "5xx": "p5xx", "slow": "pslow", "reset": "preset",
                           "truncate": "ptruncate", "malformed": "pmalformed"}[name]
                    values[key] = p
                    if name == "429" and param:
                        values["storm"] = int(param)
                    elif name == "slow" and param:
                        values["slow_s"] = _seconds(param)
                    elif param:
                        raise ValueError(f"{name} takes no @parameter")
                elif name == "token_expire":
                    m = _DURATION.match(arg.strip())
                    if not m:
                        raise ValueError("use e.g. token_expire:60s or token_expire:40req")
                    if m.group(2) == "req":
                        values["token_ttl_requests"] = int(float(m.group(1)))
                    else:
                        values["token_ttl_s"] = _seconds(arg)
                elif name == "mutate_between_pages":
                    values["mutate_every"] = int(arg) if arg else 2
                elif name == "retry_after":
                    values["retry_after"] = _seconds(arg)
                elif name == "seed":
                    values["seed"] = int(arg)
                else:
                    raise ValueError("unknown fault; known: 429, 5xx, slow, reset, truncate, malformed, "
                                     "token_expire, mutate_between_pages, retry_after, seed")
            except ValueError as exc:
                raise FaultSpecError(f"fault spec item {item!r}: {exc}") from None
        return cls(**values)  # type: ignore[arg-type]

    @property
    def active(self) -> bool:
        return bool(self.p429 or self.p5xx or self.pslow or self.preset or self.ptruncate or self.pmalformed
                    or self.token_ttl_s or self.token_ttl_requests or self.mutate_every)


def _seconds(text: str) -> float:
    m = _DURATION.match(text.strip())
    if not m or m.group(2) == "req":
        raise ValueError(f"bad duration {text!r}: use e.g. 0.5s, 250ms, 2m")
    n = float(m.group(1))
    return n / 1000 if m.group(2) == "ms" else n * 60 if m.group(2) == "m" else n


@dataclass
class Injector:
    """Decides the fault of each data request and counts what it injected."""

    spec: FaultSpec = field(default_factory=FaultSpec)
    injected: Counter[str] = field(default_factory=Counter)
    _attempts: Counter[str] = field(default_factory=Counter)
    _storms: dict[str, int] = field(default_factory=dict)
    _pages: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def configure(self, spec: FaultSpec) -> None:
        """Switch to `spec` and forget per-request history (so the same run replays the same faults)."""
        with self._lock:
            self.spec = spec
            self._attempts.clear()
            self._storms.clear()
            self._pages = 0

    def decide(self, key: str) -> tuple[str | None, bool]:
        """(fault or None, slow?) for one data request identified by `key` (method, path, query, body)."""
        s = self.spec
        if not (s.p429 or s.p5xx or s.preset or s.ptruncate or s.pmalformed or s.pslow):
            return None, False
        with self._lock:
            self._attempts[key] += 1
            n = self._attempts[key]
            storm_left = self._storms.get(key, 0)
            if storm_left > 0:
                self._storms[key] = storm_left - 1
                self.injected["429"] += 1
                return "429", False
        u = _unit(s.seed, key, n, "fault")
        fault: str | None = None
        for name, p in (("429", s.p429), ("5xx", s.p5xx), ("reset", s.preset), ("truncate", s.ptruncate),
                        ("malformed", s.pmalformed)):
            if u < p:
                fault = name
                break
            u -= p
        slow = s.pslow > 0 and _unit(s.seed, key, n, "slow") < s.pslow
        with self._lock:
            if fault == "429" and s.storm > 1:
                self._storms[key] = s.storm - 1
            if fault:
                self.injected[fault] += 1
            if slow:
                self.injected["slow"] += 1
        return fault, slow

    def page_served(self) -> bool:
        """Count a served page; True when the population should change now (mutate_between_pages)."""
        every = self.spec.mutate_every
        if not every:
            return False
        with self._lock:
            self._pages += 1
            if self._pages % every == 0:
                self.injected["mutate"] += 1
                return True
        return False

    def pick(self, key: str, options: tuple[int, ...]) -> int:
        """A deterministic choice among `options` for `key` (e.g. which 5xx status)."""
        return options[int(_unit(self.spec.seed, key, 0, "pick") * len(options))]


def _unit(seed: int, key: str, n: int, salt: str) -> float:
    digest = hashlib.blake2b(f"{seed}|{salt}|{n}|{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
