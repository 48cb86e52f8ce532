"""Shared fixtures: recorded HTTP waits, a demo config copy, and a real PostgreSQL server when available."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from itam_sync.sdk.http import HttpClient

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def recorded_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every HttpClient made during the test sleeps into this list instead of really waiting."""
    sleeps: list[float] = []
    original = HttpClient.__init__

    def init(self: HttpClient, *args: Any, **kwargs: Any) -> None:
        kwargs["sleep"] = sleeps.append
        original(self, *args, **kwargs)

    monkeypatch.setattr(HttpClient, "__init__", init)
    return sleeps


@pytest.fixture
def project_root() -> Iterator[Path]:
    yield ROOT
