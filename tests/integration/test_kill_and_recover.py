"""A sync killed with SIGKILL mid-run leaves the previous golden state intact; the next run completes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from tests_helpers import golden_by_key  # type: ignore[import-not-found]


def _snapshot(demo):  # type: ignore[no-untyped-def]
    store = demo.store()
    with store.begin() as repo:
        snap = (repo.entities.counts(), list(repo.entities.iter_entities("asset")),
                list(repo.entities.iter_entities("person")),
                repo.runs.get_cursors("mdm"))
    store.close()
    return snap


@pytest.mark.slow
def test_sigkill_mid_run_keeps_last_good_state(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    before = _snapshot(demo)
    devices = demo.data / "mdm_devices.jsonl"
    original = demo.data / "mdm_devices.orig"
    shutil.copy(devices, original)
    with devices.open("a") as fh:  # enough work that the run is surely mid-flight when killed
        for i in range(120_000):
            fh.write(json.dumps({"id": f"bulk-{i}", "deviceName": f"LT-{i}", "serialNumber": f"BULK{i:08d}",
                                 "operatingSystem": "Windows", "lastSyncDateTime": "2026-11-25T00:00:00Z"}) + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "itam_sync", "run", "--config", str(demo.config),
                             "--connector", "mdm", "--full", "-q"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    running = False
    while time.time() < deadline and not running:
        time.sleep(0.1)
        with sqlite3.connect(demo.db, timeout=30) as db:
            running = db.execute("SELECT count(*) FROM sync_runs WHERE connector='mdm' AND status='running'"
                                 ).fetchone()[0] == 1
    assert running, "the run never started"
    time.sleep(1.0)
    assert proc.poll() is None, "the run finished before it could be killed; make it bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # The previous golden state, cursor and counts are exactly as they were.
    assert _snapshot(demo) == before
    # The next run (source back to normal) completes and records the killed run as interrupted.
    shutil.copy(original, devices)
    result = demo.cli("run", "--full", "-q", "--connector", "mdm")
    assert result.exit_code == 0, result.output
    runs = json.loads(demo.cli("runs", "--json", "--connector", "mdm").output)
    assert [r["status"] for r in runs[:2]] == ["success", "interrupted"]
    store = demo.store()
    with store.begin() as repo:
        assert repo.entities.counts()["missing_records"] == 0
        assert golden_by_key(repo, "asset", "serial_number:C02FK1ABQ6L4")["assigned_to"][0] == "bob.li@example.com"
    store.close()
