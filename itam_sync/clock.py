"""The one clock: every "now" the engine needs (ages, freshness windows, stale and warranty windows, reminders,
lease expiry, `--as-of` defaults, certificate expiry) comes from here, never from a scattered datetime.now().

It is the system clock unless the environment says otherwise, so tests and subprocesses can move it together:
- ITAM_SYNC_NOW=2026-01-15T12:00:00Z pins "now" (a fixed instant);
- ITAM_SYNC_CLOCK_SHIFT=+3y (or -1y, +400d, -12h) moves the system clock by that much.
A pinned instant ignores the shift. Functions that need a clock take `clock: Clock | None = None` so a caller
can inject one; `None` means the environment's clock.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

NOW_ENV = "ITAM_SYNC_NOW"
SHIFT_ENV = "ITAM_SYNC_CLOCK_SHIFT"
_SHIFT = re.compile(r"^\s*([+-])\s*(\d+(?:\.\d+)?)\s*([yMwdhms])\s*$")
_UNIT = {"y": 365.25 * 86400, "M": 30.4375 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_shift(text: str) -> timedelta:
    """'+3y', '-1y', '+400d', '-12h' -> a timedelta (y = 365.25 days, M = a twelfth of that)."""
    m = _SHIFT.match(text)
    if not m:
        raise ValueError(f"clock shift {text!r} is not like +3y, -1y, +400d or -12h")
    seconds = float(m.group(2)) * _UNIT[m.group(3)]
    return timedelta(seconds=-seconds if m.group(1) == "-" else seconds)


def parse_instant(text: str) -> datetime:
    """An ISO date or date-time (Z or an offset; naive means UTC) -> an aware UTC datetime."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Clock:
    """A source of "now": the system clock moved by `shift`, or a pinned instant."""

    pinned: datetime | None = None
    shift: timedelta = timedelta(0)

    def now(self) -> datetime:
        """The current instant, aware, in UTC."""
        if self.pinned is not None:
            return self.pinned
        return datetime.now(UTC) + self.shift

    def today(self) -> date:
        return self.now().date()

    def iso(self) -> str:
        """Now as the store writes times: 'YYYY-MM-DDTHH:MM:SSZ'."""
        return self.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def from_env(environ: dict[str, str] | None = None) -> Clock:
    """The clock the environment asks for (ITAM_SYNC_NOW, ITAM_SYNC_CLOCK_SHIFT), else the system clock."""
    env = os.environ if environ is None else environ
    pinned = env.get(NOW_ENV, "").strip()
    shift = env.get(SHIFT_ENV, "").strip()
    return Clock(parse_instant(pinned) if pinned else None, parse_shift(shift) if shift else timedelta(0))


def clock_or_env(clock: Clock | None) -> Clock:
    """`clock` when a caller injected one, else the environment's."""
    return clock if clock is not None else from_env()


def now(clock: Clock | None = None) -> datetime:
    """Now from `clock`, or from the environment's clock."""
    return clock_or_env(clock).now()


def now_iso(clock: Clock | None = None) -> str:
    """Now as 'YYYY-MM-DDTHH:MM:SSZ'."""
    return clock_or_env(clock).iso()


def today(clock: Clock | None = None) -> date:
    return clock_or_env(clock).today()
