"""Leases: one holder at a time, expiry, take-over of a dead holder, renewal, fencing, and `run` waiting for one.

Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from itam_sync.engine.runner import ConnectorBusy, SyncFailed, run_connector
from itam_sync.settings import DATABASE_URL_ENV
from itam_sync.store import Store
from itam_sync.store.leases import Lease, LeaseBusy, LeaseInfo, connector_lease, read_lease


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'leases.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    yield s
    s.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_one_holder_then_release(store: Store) -> None:
    a, b = Lease(store, "connector:x", 30), Lease(store, "connector:x", 30)
    a.acquire(wait=0)
    with pytest.raises(LeaseBusy) as busy:
        b.acquire(wait=0)
    assert busy.value.info is not None and busy.value.info.holder == a.holder
    assert a.holder in str(busy.value)
    a.release()
    b.acquire(wait=0)
    assert read_lease(store, "connector:x").holder == b.holder  # type: ignore[union-attr]
    b.release()
    assert read_lease(store, "connector:x") is None


def test_expired_lease_of_another_host_is_taken(store: Store) -> None:
    gone = Lease(store, "connector:x", 0.2, holder="elsewhere:123:aaa")  # another host: liveness unknown
    gone.acquire(wait=0)
    mine = Lease(store, "connector:x", 30)
    with pytest.raises(LeaseBusy):
        mine.acquire(wait=0)
    time.sleep(0.3)  # its holder stopped renewing: expired
    mine.acquire(wait=0)
    assert read_lease(store, "connector:x").holder == mine.holder  # type: ignore[union-attr]
    assert gone.renew() is False and gone.lost


def test_lease_of_a_dead_process_on_this_host_is_taken_at_once(store: Store) -> None:
    dead = Lease(store, "connector:x", 3600, holder=f"{socket.gethostname()}:{_dead_pid()}:bbb")
    dead.acquire(wait=0)
    mine = Lease(store, "connector:x", 30)
    mine.acquire(wait=0)  # no need to wait an hour: that process is gone
    assert read_lease(store, "connector:x").holder == mine.holder  # type: ignore[union-attr]


def test_expired_lease_of_a_live_process_on_this_host_is_not_stolen(store: Store) -> None:
    alive = Lease(store, "connector:x", 0.1, holder=f"{socket.gethostname()}:{os.getpid()}:ccc")
    alive.acquire(wait=0)
    time.sleep(0.2)
    with pytest.raises(LeaseBusy):
        Lease(store, "connector:x", 0.1).acquire(wait=0)
    time.sleep(1.0)  # expired for over 10 times its time to live: not renewing, whatever holds that pid now
    Lease(store, "connector:x", 0.1).acquire(wait=0)


def test_renewal_keeps_a_short_lease(store: Store) -> None:
    lease = Lease(store, "connector:x", 1.0, holder="elsewhere:1:ddd")
    with lease.holding(wait=0):
        time.sleep(2.0)  # twice its time to live: renewed every third of it
        with pytest.raises(LeaseBusy):
            Lease(store, "connector:x", 30).acquire(wait=0)
    assert read_lease(store, "connector:x") is None


def test_concurrent_acquirers_get_it_exactly_once(store: Store) -> None:
    winners: list[str] = []
    start = threading.Barrier(8)

    def grab() -> None:
        lease = Lease(store, "connector:race", 30, holder=f"elsewhere:{threading.get_ident()}:x")
        start.wait()
        try:
            lease.acquire(wait=0)
            winners.append(lease.holder)
        except LeaseBusy:
            pass

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert read_lease(store, "connector:race").holder == winners[0]  # type: ignore[union-attr]


def test_acquire_waits_and_reports_the_holder(store: Store) -> None:
    holder = Lease(store, "connector:x", 30, holder="elsewhere:7:eee")
    holder.acquire(wait=0)
    seen: list[LeaseInfo] = []
    threading.Timer(0.8, holder.release).start()
    t0 = time.monotonic()
    Lease(store, "connector:x", 30).acquire(wait=10, on_wait=seen.append)
    assert 0.7 < time.monotonic() - t0 < 5
    assert [i.holder for i in seen] == ["elsewhere:7:eee"]


def test_run_takes_the_connector_lease_and_no_wait_reports_the_holder(demo, store_url: str,  # type: ignore[no-untyped-def]
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    settings = demo.settings()
    store = Store.open(store_url)
    try:
        other = Lease(store, connector_lease("mdm"), 30, holder="worker-2:4242:fff")
        other.acquire(wait=0)
        with pytest.raises(ConnectorBusy, match="connector 'mdm' is being synced by worker-2:4242:fff"):
            run_connector(settings, "mdm", full=True, store=store, lease_wait=0)
        result = demo.cli("run", "--full", "--connector", "mdm", "--no-wait")
        assert result.exit_code == 1
        assert "worker-2:4242:fff" in result.output and "not waiting" in result.output
        # Without --no-wait the run waits, says for whom, and runs once the holder lets go.
        threading.Timer(1.0, other.release).start()
        result = demo.cli("run", "--full", "--connector", "mdm")
        assert result.exit_code == 0, result.output
        assert "waiting:" in result.output and "mdm is being synced by worker-2:4242:fff" in result.output
        runs = json.loads(demo.cli("runs", "--json", "--connector", "mdm").output)
        assert [r["status"] for r in runs] == ["success"]
        assert read_lease(store, connector_lease("mdm")) is None  # released after the run
    finally:
        store.close()


def test_a_run_that_lost_its_lease_keeps_nothing(demo, store_url: str,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Fencing: if another worker took the lease (we were presumed dead), our commit is refused."""
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    settings = demo.settings()
    store = Store.open(store_url)
    try:
        lease = Lease(store, connector_lease("mdm"), 30)
        lease.acquire(wait=0)

        def stolen(conn: str, stream: str, seen: int) -> None:
            with store.begin() as repo:  # what a worker that saw our lease expire would have done
                repo.db._exec("UPDATE leases SET holder='thief:1:x' WHERE name=?", (lease.name,))

        if store.is_sqlite:
            # The run holds SQLite's write lock while it stages: nobody can steal then. Simulate it up front.
            stolen("mdm", "devices", 0)
            with pytest.raises(SyncFailed, match="lost the lease"):
                run_connector(settings, "mdm", full=True, store=store, lease=lease)
        else:
            with pytest.raises(SyncFailed, match="lost the lease"):
                run_connector(settings, "mdm", full=True, store=store, lease=lease, progress=stolen)
        with store.begin() as repo:
            assert repo.entities.counts()["source_records"] == 0
            assert repo.runs.list_runs(1, "mdm")[0]["status"] == "failed"
    finally:
        store.close()
