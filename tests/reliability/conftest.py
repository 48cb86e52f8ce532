"""Fixtures of the reliability suite: one sandbox for the session, a baseline store and fault-free references."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reliability_helpers import StoreState, history  # type: ignore[import-not-found]

from itam_sync import sandbox

DEVICES, SEED, MAX_PAGE = 150, 7, 40


@pytest.fixture(scope="session")
def reliability_sandbox() -> Iterator[sandbox.SandboxHandle]:
    """One in-process sandbox for the whole suite (each test sets its version and faults)."""
    with sandbox.start(devices=DEVICES, seed=SEED, max_page=MAX_PAGE) as sb:
        yield sb


def _use(sb: sandbox.SandboxHandle, mp: pytest.MonkeyPatch) -> None:
    for k, v in sb.env().items():
        mp.setenv(k, v)
    sb.set_faults("")
    sb.set_version(0, forget_history=True)
    sb.reset_stats()


@pytest.fixture
def sbx(reliability_sandbox: sandbox.SandboxHandle, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[sandbox.SandboxHandle]:
    """The session sandbox, reset: population version 0 with a fresh history, no faults, env pointing at it."""
    _use(reliability_sandbox, monkeypatch)
    yield reliability_sandbox
    reliability_sandbox.set_faults("")


@pytest.fixture(scope="session")
def baseline_and_reference(reliability_sandbox: sandbox.SandboxHandle, tmp_path_factory: pytest.TempPathFactory
                           ) -> tuple[StoreState, StoreState]:
    """(a store after a clean full sync at version 0, a store after clean full syncs at versions 0 then 1)."""
    with pytest.MonkeyPatch.context() as mp:
        _use(reliability_sandbox, mp)
        base = history(reliability_sandbox, tmp_path_factory.mktemp("baseline"), [0])
        reference = history(reliability_sandbox, tmp_path_factory.mktemp("reference"), [0, 1])
    return base, reference


@pytest.fixture
def baseline(baseline_and_reference: tuple[StoreState, StoreState]) -> StoreState:
    return baseline_and_reference[0]


@pytest.fixture
def reference(baseline_and_reference: tuple[StoreState, StoreState]) -> StoreState:
    return baseline_and_reference[1]
