"""Calendar arithmetic of the lifecycle reports: whole months, calendar quarters, ISO dates in golden records."""

from __future__ import annotations

import calendar
from datetime import date


def parse_date(value: object) -> date | None:
    """The date of an ISO date or date-time value ('2024-03-01', '2024-03-01T10:00:00Z'); None otherwise."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def add_months(d: date, months: int) -> date:
    """`d` moved by whole months; the day is clamped to the target month's length (Jan 31 + 1 = Feb 28/29)."""
    index = d.year * 12 + (d.month - 1) + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(d.day, calendar.monthrange(year, month + 1)[1]))


def months_between(start: date, end: date) -> int:
    """Whole months from `start` to `end` (0 when end is earlier): a month counts once its day is reached."""
    n = (end.year - start.year) * 12 + (end.month - start.month)
    if n > 0 and add_months(start, n) > end:
        n -= 1
    return max(n, 0)


def quarter_of(d: date) -> tuple[int, int]:
    """(year, quarter 1..4) of a date."""
    return d.year, (d.month - 1) // 3 + 1


def quarter_label(d: date) -> str:
    """'2026-Q3'."""
    y, q = quarter_of(d)
    return f"{y}-Q{q}"


def quarter_start(d: date) -> date:
    """The first day of the quarter `d` is in."""
    return date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)


def quarter_end(d: date) -> date:
    """The last day of the quarter `d` is in."""
    return date.fromordinal(next_quarter_start(d).toordinal() - 1)


def next_quarter_start(d: date) -> date:
    """The first day of the quarter after the one `d` is in."""
    return add_months(quarter_start(d), 3)
