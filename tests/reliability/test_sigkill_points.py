"""`itam-sync run` killed with SIGKILL at 24 seeded random points: every connector's state is either what it
was before the killed run or exactly what a complete fault-free run produces, nothing is marked missing, no
golden record is lost or duplicated, and the next run records the killed ones as interrupted and converges.

Each round, the sandbox population moves to its next version (content-only: ~2% of records change, so every
run has real work to commit) and a subprocess syncs every connector; it is killed somewhere between process
start-up and its final merge. A reference store follows the same versions without faults.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import (  # type: ignore[import-not-found]
    StoreState,
    copy_db,
    diff_exports,
    duplicates,
    export,
    integrity_ok,
    lost,
    settings_of,
    snapshot,
    sync_all,
    write_config,
)

from itam_sync import sandbox

KILLS = 24
SEED = 20261126
SLOW = "slow:1@0.01s"  # every answer 10 ms late: runs outlast start-up, so most kills land inside one


def _run(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "itam_sync", "run", "-c", str(config), "--full", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())


def _running(db: Path, pid: int | None = None) -> int:
    """Runs left `running` (by `pid`, or by anyone)."""
    with sqlite3.connect(db, timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM sync_runs WHERE status = 'running' AND (? IS NULL OR pid = ?)",
                                (pid, pid)).fetchone()[0])


def _killed_mid_run(db: Path, pid: int) -> bool:
    """Had the killed process started syncing (a run row of its own) without finishing its merge?"""
    with sqlite3.connect(db, timeout=30) as conn:
        rows = conn.execute("SELECT connector, status FROM sync_runs WHERE pid = ?", (pid,)).fetchall()
    return bool(rows) and ("(merge)", "success") not in rows


@pytest.mark.slow
def test_sigkill_at_random_points_keeps_state_and_converges(sbx: sandbox.SandboxHandle, baseline: StoreState,
                                                            tmp_path: Path) -> None:
    db = tmp_path / "itam.db"
    copy_db(baseline.db, db)
    config = write_config(tmp_path / "itam-sync.yaml", db)
    ref_db = tmp_path / "reference.db"
    copy_db(baseline.db, ref_db)
    ref_config = write_config(tmp_path / "reference.yaml", ref_db)
    ref_settings = settings_of(ref_config)
    keys = {n: {r[:2] + r[3:] for r in s.records} for n, s in baseline.snapshot.items()}

    # When a run starts writing and how long it takes here (answers slowed), to spread the kill points.
    sbx.advance(content_only=True)
    assert set(sync_all(ref_settings).values()) == {"success"}
    sbx.set_faults(SLOW)
    t0 = time.perf_counter()
    proc, started = _run(config), None
    while proc.poll() is None:
        time.sleep(0.02)
        if started is None and _running(db):
            started = time.perf_counter() - t0
    took = time.perf_counter() - t0
    assert proc.returncode == 0 and started is not None
    rng = random.Random(SEED)
    kills: list[bool] = []
    left_running = 0
    for _ in range(KILLS):
        version = sbx.advance(content_only=True)
        sbx.set_faults("")
        assert set(sync_all(ref_settings).values()) == {"success"}
        expected = snapshot(ref_db)
        before = snapshot(db)
        before_export = export(config)
        sbx.set_faults(SLOW)
        proc = _run(config)
        if len(kills) % 6 == 5:  # now and then during start-up (config, migrations, leases)
            time.sleep(rng.uniform(0, started))
        else:  # mostly at a random point after the run started writing: pulls, staging, commits, merge
            deadline = time.perf_counter() + 60
            while not _running(db, proc.pid) and proc.poll() is None and time.perf_counter() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.9 * (took - started)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills.append(_killed_mid_run(db, proc.pid))
        left_running += _running(db, proc.pid)

        assert integrity_ok(db)
        after = snapshot(db)
        for name, state in after.items():
            assert state in (before[name], expected[name]), \
                f"version {version}: {name} is neither its old state nor a complete run's"
            assert {r[:2] + r[3:] for r in state.records} == keys[name], f"{name}: records lost or marked missing"
        after_export = export(config)
        assert not duplicates(after_export)
        assert not lost(before_export, after_export, export(ref_config))
    assert sum(kills) >= KILLS // 2, f"only {sum(kills)} of {KILLS} kills landed inside a run"

    # The next run completes, records the killed runs as interrupted, and converges.
    sbx.set_faults("")
    assert set(sync_all(settings_of(config)).values()) == {"success"}
    with sqlite3.connect(db) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM sync_runs GROUP BY status").fetchall())
    assert "running" not in statuses and statuses.get("interrupted", 0) == left_running, statuses
    final, expected_export = export(config), export(ref_config)
    assert final == expected_export, diff_exports(final, expected_export)
