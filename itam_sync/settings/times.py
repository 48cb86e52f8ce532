"""The one parser for times an operator types (`--since`, `--until`, `--as-of`, `--expires`, `--now`).

Times are parsed into aware UTC datetimes, never compared as typed strings: `12/05/2026` is refused instead of
sorting after every ISO date, and `yesterday` means a time, not the word. "Now" comes from `itam_sync.clock`,
so ITAM_SYNC_NOW / ITAM_SYNC_CLOCK_SHIFT move relative forms too.

Accepted forms (ACCEPTED says so in every error):
- an ISO date `2026-11-01` (the start of that day, UTC; or its last second with `end_of_day`);
- an ISO date and time `2026-11-01T12:00`, `2026-11-01 12:00:00`, with `Z` or an offset (`+02:00`); without one
  it is UTC;
- `now`, `today`, `yesterday`, `tomorrow` (the day's start, or its end with `end_of_day`);
- a span back from now: `2d`, `12h`, `30m`, `90s`, `1w`, also written `2d ago` or `-2d`; `+2d` / `in 2d` is
  a span forward (an expiry takes a bare `30d` as forward too).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from itam_sync import clock

ACCEPTED = ("YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM], now, today, yesterday, tomorrow, or a span such as "
            "2d, 12h, 30m, 1w (ago; +2d or 'in 2d' for later)")
STORE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_SPAN = re.compile(r"^(?P<sign>[+-]|in\s+)?\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw])(?:\s+ago)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_DAYS = {"today": 0, "yesterday": -1, "tomorrow": 1}


class BadTime(ValueError):
    """A time the operator typed is not one of the accepted forms; the message lists them."""


def parse_when(text: str, *, end_of_day: bool = False, what: str = "time", now: datetime | None = None,
               ahead: bool = False) -> datetime:
    """`text` as an aware UTC datetime. A bare day (a date, today, yesterday) is its first second, or its
    last with `end_of_day` (so `--until 2026-06-30` includes that day). A bare span (`2d`) is that long ago,
    or from now with `ahead` (an expiry). `now` defaults to itam_sync.clock."""
    raw = text.strip()
    low = raw.lower()
    current = now or clock.now()
    if low == "now":
        return current.replace(microsecond=0)
    if low in _DAYS:
        return _day_edge(current.date() + timedelta(days=_DAYS[low]), end_of_day)
    m = _SPAN.match(low)
    if m:
        span = timedelta(seconds=float(m.group("n")) * _UNITS[m.group("unit")])
        sign = (m.group("sign") or "").strip()
        forward = sign in ("+", "in") or (ahead and not sign and not low.endswith("ago"))
        if sign in ("+", "in") and low.endswith("ago"):
            raise BadTime(f"{what} {text!r} points both ways; accepted: {ACCEPTED}")
        return (current + span if forward else current - span).replace(microsecond=0)
    try:
        if _DATE.match(raw):
            return _day_edge(datetime.strptime(raw, "%Y-%m-%d").date(), end_of_day)
        if _DATETIME.match(raw):
            value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "T"))
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).replace(microsecond=0)
    except ValueError:  # the right shape, but no such day or hour (2026-02-30, 25:00)
        raise BadTime(f"{what} {text!r} is not a real date or time; accepted: {ACCEPTED}") from None
    raise BadTime(f"{what} {text!r} is not a date or time itam-sync reads; accepted: {ACCEPTED}")


def parse_when_iso(text: str, *, end_of_day: bool = False, what: str = "time", now: datetime | None = None,
                   ahead: bool = False) -> str:
    """`parse_when` in the store's form, 'YYYY-MM-DDTHH:MM:SSZ' (what the merge log and runs hold)."""
    return parse_when(text, end_of_day=end_of_day, what=what, now=now, ahead=ahead).strftime(STORE_FORMAT)


def _day_edge(day: date, end_of_day: bool) -> datetime:
    return datetime.combine(day, time(23, 59, 59) if end_of_day else time(0), tzinfo=UTC)
