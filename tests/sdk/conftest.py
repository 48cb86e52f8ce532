"""Fixtures for the shared HTTP layer tests: a `responses` mock, a recorded sleep, a fixed wall clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses

from itam_sync.sdk.http import HttpClient

BASE = "https://api.example.test"
NOW = 1_700_000_000.0  # fixed wall clock for epoch reset headers


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def sleeps() -> list[float]:
    """Every wait the client asked for, in order (nothing really sleeps)."""
    return []


@pytest.fixture
def make_client(sleeps: list[float]) -> Callable[..., HttpClient]:
    def make(**kwargs: Any) -> HttpClient:
        kwargs.setdefault("sleep", sleeps.append)
        kwargs.setdefault("clock", lambda: NOW)
        return HttpClient(kwargs.pop("base_url", BASE), **kwargs)

    return make
