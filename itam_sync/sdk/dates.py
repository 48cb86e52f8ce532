"""Shifting the dates of recorded data, so a demo or test data set tells the same story on any day.

A file source with `dates_relative_to: 2026-11-26T09:00:00Z` says "these records were written at that instant":
every value that is exactly an ISO date-time (2026-11-25T07:45:00Z, with or without seconds, fractions or an
offset) moves by (now - that instant), and every ISO date (2023-02-14) by the same number of whole days, each
keeping its format. So a device last seen "25 hours ago" is 25 hours old whenever the data is read. Nothing
else in the record changes. Real sources never set it.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2}))?(\.\d+)?(Z|[+-]\d{2}:?\d{2})?)?$")


def shift_value(value: Any, delta: timedelta) -> Any:
    """`value` moved by `delta` if it is an ISO date-time (dates: by its whole days); lists and objects too."""
    if isinstance(value, str):
        m = _ISO.match(value)
        if not m:
            return value
        y, mo, d, hh, mi, ss, frac, zone = m.groups()
        try:
            if hh is None:
                return (date(int(y), int(mo), int(d)) + timedelta(days=delta.days)).isoformat()
            moved = datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss or 0)) + delta
        except ValueError:
            return value  # not a real calendar date: leave it for the mapping to reject
        text = moved.strftime("%Y-%m-%dT%H:%M") + (moved.strftime(":%S") if ss is not None else "")
        return text + (frac or "") + (zone or "")
    if isinstance(value, dict):
        return {k: shift_value(v, delta) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_value(v, delta) for v in value]
    return value


def shift_record(record: dict[str, Any], delta: timedelta) -> dict[str, Any]:
    """A copy of `record` with every ISO date and date-time moved by `delta` (the record itself when zero)."""
    if not delta:
        return record
    return {k: shift_value(v, delta) for k, v in record.items()}
