"""Schedules as `serve` reads them: "every <duration>" or a 5-field cron expression, checked field by field.

`validate`, `run` and `status` load the config through the same check, so `0 25 * * *` is refused when the
config is read, naming the field, not hours later when `serve` first computes a fire time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from apscheduler.triggers.cron import CronTrigger

CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_EXAMPLES = "e.g. '*/30 * * * *', '0 6 * * 1-5' or 'every 15m'"


def check_schedule_text(text: str) -> str:
    """`text` if it is a schedule `serve` can run; ValueError naming the bad part and a fix otherwise."""
    if text.startswith("every "):
        m = _DURATION.match(text[6:])
        if not m or float(m.group(1)) <= 0:
            raise ValueError(f"schedule {text!r}: the interval must be a positive number and a unit s, m, h, d or w "
                             f"({_EXAMPLES})")
        return text
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(f"schedule {text!r} must be a 5-field cron expression (minute hour day month day-of-week) "
                         f"or 'every <duration>' ({_EXAMPLES})")
    for name, part in zip(CRON_FIELDS, parts, strict=True):
        try:
            CronTrigger(**{name: part}, timezone=UTC)
        except ValueError as exc:
            why = str(exc).removeprefix(f"Error validating expression {part!r}: ")
            raise ValueError(f"schedule {text!r}: the {name.replace('_', '-')} field {part!r} is not valid ({why}; "
                             f"{_EXAMPLES})") from None
    trigger = CronTrigger.from_crontab(text, timezone=UTC)
    if trigger.get_next_fire_time(None, datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ValueError(f"schedule {text!r} never fires (no such date); {_EXAMPLES}")
    return text
