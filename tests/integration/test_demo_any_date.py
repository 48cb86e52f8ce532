"""`make demo` tells the same story on any date (issue 12): the demo files' dates move with the clock.

The demo is run with the clock at the instant its files were written at, three years later and one year
earlier. Every command's output must be the same once the dates in it are moved back by the same shift.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from itam_sync import clock
from itam_sync.sdk.dates import shift_value
from tests.tests_helpers import DEMO_ANCHOR, clock_shift_to, make_demo

SHIFTS = [timedelta(0), timedelta(days=3 * 365 + 17, hours=5), timedelta(days=-365, hours=-9)]
# When the run happened, not what the data says.
VOLATILE = {"at", "generated_at", "now", "run_id", "duration_s", "detected_at", "created_at", "started_at",
            "finished_at"}
ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?")


def _story(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shift: timedelta) -> dict[str, str]:
    monkeypatch.delenv(clock.NOW_ENV, raising=False)
    monkeypatch.setenv(clock.SHIFT_ENV, clock_shift_to(DEMO_ANCHOR + shift))
    demo = make_demo(tmp_path)
    assert demo.cli("run", "--full", "--quiet").exit_code == 0
    fwd = timedelta(hours=round(shift / timedelta(hours=1)))  # the files connector shifts by whole hours

    def unshift(text: str) -> str:
        def back(value: str) -> str:  # date-only values moved by fwd's whole days; date-times by fwd itself
            return shift_value(value, -timedelta(days=fwd.days) if "T" not in value else -fwd)
        return ISO.sub(lambda m: back(m.group(0)), text)

    out = {}
    for name, args in {
        "summary": ["summary"],
        "conflicts": ["conflicts", "--json"],
        "explain": ["explain", "C02FK1ABQ6L4", "--json"],
        "offboarding": ["report", "offboarding", "--format", "json"],
        "stale": ["report", "stale-devices", "--format", "json"],
        "kpis": ["report", "kpis", "--format", "json"],
    }.items():
        result = demo.cli(*args)
        assert result.exit_code == 0, (name, result.output)
        out[name] = unshift(result.output)
    return out


def _without_volatile(text: str) -> str:
    """Run ids, run times and generated-at stamps are not part of the story."""
    try:
        data = json.loads(text)
    except ValueError:
        return re.sub(r"\b\d+(\.\d+)?s\b", "<secs>", text)
    def scrub(v: object) -> object:
        if isinstance(v, dict):
            return {k: scrub(x) for k, x in v.items() if k not in VOLATILE}
        if isinstance(v, list):
            return [scrub(x) for x in v]
        return v
    return json.dumps(scrub(data), sort_keys=True)


def test_the_demo_tells_the_same_story_on_any_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stories = [_story(tmp_path / f"s{i}", monkeypatch, s) for i, s in enumerate(SHIFTS)]
    base = {k: _without_volatile(v) for k, v in stories[0].items()}
    # The story itself: the reassigned laptop's holder comes from the MDM within the freshness window.
    assert "bob.li@example.com" in stories[0]["explain"]
    assert "carla.diaz@example.com" in stories[0]["offboarding"]
    for shift, story in zip(SHIFTS[1:], stories[1:], strict=True):
        for name, text in story.items():
            assert _without_volatile(text) == base[name], f"{name} differs when the demo runs {shift} later"
