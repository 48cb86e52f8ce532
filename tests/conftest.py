"""Shared fixtures: recorded HTTP waits, a demo config copy, and a real PostgreSQL server when available."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from itam_sync import clock
from itam_sync.testing import record_sleeps
from tests.tests_helpers import DEMO_ANCHOR, Demo, clock_shift_to, make_demo

ROOT = Path(__file__).resolve().parents[1]

# Date-sensitive suites: `make test` runs them again with the clock moved 3 years ahead and 1 year back
# (`pytest -m clock --clock-shift=+3y`), so a test that compares against a literal date or age fails at once.
CLOCK_SENSITIVE = ("tests/web/", "tests/insight/", "tests/publish/", "tests/audit/", "tests/connectors/certificates/",
                   "tests/engine/test_merge_rules.py", "tests/integration/test_demo_sync.py", "tests/test_clock.py")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--clock-shift", default=None, metavar="SHIFT",
                     help="Move itam-sync's clock (ITAM_SYNC_CLOCK_SHIFT) for the whole run, e.g. +3y or -1y.")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clock: a date-sensitive test, re-run with the clock moved (make test)")
    shift = config.getoption("--clock-shift")
    if shift:
        clock.parse_shift(shift)  # fail fast on a typo
        os.environ[clock.SHIFT_ENV] = shift


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(ROOT).as_posix()
        if rel.startswith(CLOCK_SENSITIVE):
            item.add_marker(pytest.mark.clock)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[clock.Clock]:
    """Pin itam-sync's clock (for this process and its subprocesses) to the current instant, to the second."""
    pinned = clock.now().replace(microsecond=0)
    monkeypatch.setenv(clock.NOW_ENV, pinned.strftime("%Y-%m-%dT%H:%M:%SZ"))
    yield clock.Clock(pinned)


@pytest.fixture
def recorded_sleeps() -> Iterator[list[float]]:
    """Every HttpClient made during the test sleeps into this list instead of really waiting."""
    with record_sleeps() as sleeps:
        yield sleeps


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Demo:
    """A private copy of the demo (data, mappings, config) on a tmp SQLite file, with itam-sync's clock running
    from the instant the demo files were written at (tests/integration/test_demo_any_date.py runs it at others)."""
    monkeypatch.delenv(clock.NOW_ENV, raising=False)
    monkeypatch.setenv(clock.SHIFT_ENV, clock_shift_to(DEMO_ANCHOR))
    return make_demo(tmp_path)


@pytest.fixture
def project_root() -> Iterator[Path]:
    yield ROOT


def _pg_bindir() -> Path | None:
    import glob
    import shutil

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real PostgreSQL server for the session: initdb into a temp dir, started on a unix socket.

    .ci/run installs the server binaries; without them the PostgreSQL tests are skipped with a reason.
    """
    import os
    import pwd
    import shutil
    import socket
    import subprocess

    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb) not installed; .ci/run installs them")
    import tempfile

    # Not under pytest's tmp root: that is private to the test user, and the server may run as `postgres`.
    base = Path(tempfile.mkdtemp(prefix="itam-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    run_as: list[str] = []
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:  # postgres refuses to run as root: use the postgres system user
        user = "postgres"
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", user, "-A", "trust", "--no-sync"],
                   check=True, capture_output=True)
    log = base / "pg.log"
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
                    f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off -c synchronous_commit=off",
                    "start"], check=True, capture_output=True)
    try:
        yield {"host": str(sock), "port": port, "user": user}
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: dict[str, Any], request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    import re

    import psycopg

    name = "t_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:50]
    dsn = dict(host=postgres_server["host"], port=postgres_server["port"], user=postgres_server["user"])
    with psycopg.connect(dbname="postgres", autocommit=True, **dsn) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return (f"postgresql+psycopg://{postgres_server['user']}@/{name}"
            f"?host={postgres_server['host']}&port={postgres_server['port']}")
