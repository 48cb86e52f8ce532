"""Two real `itam-sync serve` workers on one PostgreSQL share the work.

Short schedules ("every 2s", full runs "every 4s") for about 16 s while the sources change; one worker is
killed with SIGKILL half-way. Then, from the store:
- each connector's runs never overlapped (one worker at a time), and both workers ran some;
- every scheduled occurrence ran once: at most one incremental run per 2 s slot and one full run per 4 s slot;
- nothing was merged twice: no two merge runs wrote the same entity/field/new value;
- the killed worker's connectors were picked up by the other one, and it stopped cleanly on SIGTERM (exit 0).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from itam_sync import clock
from itam_sync.store import Store

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from itam_sync.cli.main import main; main()"]
CONNECTORS = ("hr", "okta-users", "procurement", "mdm", "edr")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _device(i: int, os_version: str) -> str:
    return json.dumps({"id": f"mdm-x{i}", "deviceName": f"LT-X{i}", "serialNumber": f"SNW{i:07d}",
                       "wiFiMacAddress": "", "ethernetMacAddress": "", "manufacturer": "Apple", "model": "Mac14,2",
                       "operatingSystem": "macOS", "osVersion": os_version, "userPrincipalName": "",
                       "complianceState": "compliant", "lastSyncDateTime": "2026-11-20T07:45:00Z"})


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_two_workers_share_the_work_without_overlap_or_double_merges(demo, postgres_url: str,  # type: ignore[no-untyped-def]
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Run times are compared with this process's wall clock (the kill), so the workers run on the real clock.
    monkeypatch.delenv(clock.SHIFT_ENV, raising=False)
    mdm = demo.data / "mdm_devices.jsonl"
    base = mdm.read_text()
    mdm.write_text(base + "".join(_device(i, "14.0") + "\n" for i in range(3000)))  # runs that take a while
    cfg = yaml.safe_load(demo.config.read_text())
    for c in cfg["connectors"]:
        c["schedule"] = "every 2s"
        if c["name"] in ("mdm", "edr"):
            c["full_schedule"] = "every 4s"
    cfg["service"] = {"jitter_s": 0.5, "lease_ttl_s": 5, "grace_period_s": 20, "max_parallel": 3}
    demo.config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "ITAM_SYNC_DATABASE_URL": postgres_url, "PYTHONUNBUFFERED": "1"}
    Store.open(postgres_url).close()  # migrate once, before two workers race to
    workers = [subprocess.Popen([*CLI, "serve", "-c", str(demo.config), "--port", str(_free_port())],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
               for _ in range(2)]
    killed_at = 0.0
    try:
        time.sleep(5)
        with mdm.open("a") as fh:  # new devices appear
            fh.write("".join(_device(i, "14.0") + "\n" for i in range(3000, 3200)))
        time.sleep(3)
        workers[1].kill()  # a worker dies mid-flight: its leases must not block the other one for long
        killed_at = time.time()
        workers[1].wait()
        time.sleep(1)
        mdm.write_text(base + "".join(_device(i, "15.1" if i >= 3000 else "14.0") + "\n" for i in range(3200)))
        time.sleep(7)
        workers[0].send_signal(signal.SIGTERM)
        out, _ = workers[0].communicate(timeout=60)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert workers[0].returncode == 0, out
    survivor, dead = workers[0].pid, workers[1].pid

    store = Store.open(postgres_url)
    with store.engine.connect() as conn:
        runs = [dict(r._mapping) for r in conn.exec_driver_sql(
            "SELECT id, connector, mode, status, started_at, finished_at, pid, error FROM sync_runs ORDER BY id")]
        dupes = conn.exec_driver_sql(
            "SELECT entity_id, field, new_value, count(DISTINCT run_id) FROM merge_log "
            "WHERE action IN ('set', 'clear') GROUP BY entity_id, field, new_value HAVING count(DISTINCT run_id) > 1"
        ).fetchall()
        upgraded = conn.exec_driver_sql("SELECT count(*) FROM merge_log WHERE field='os_version' "
                                        "AND new_value='\"15.1\"'").scalar()
        leases = conn.exec_driver_sql("SELECT name, holder FROM leases").fetchall()
    store.close()

    syncs = [r for r in runs if r["connector"] in CONNECTORS]
    bad = [r for r in syncs if r["status"] not in ("success", "interrupted")]
    assert not bad, bad
    assert all(r["status"] == "success" for r in syncs if r["pid"] == survivor)
    assert {r["pid"] for r in syncs} == {survivor, dead}  # both workers did some of the work
    for name in CONNECTORS:
        mine = sorted((r for r in syncs if r["connector"] == name), key=lambda r: (r["started_at"], r["id"]))
        assert len(mine) >= 4, (name, len(mine))
        for a, b in zip(mine, mine[1:], strict=False):
            # One worker at a time: each run starts after the previous one finished (a killed worker's run,
            # recorded interrupted by whoever took over, has no real end: skip those).
            if a["status"] != "interrupted":
                assert b["started_at"] >= a["finished_at"], (name, a, b)
        for mode, slot in (("incremental", 2), ("full", 4)):
            per_slot = Counter(int(_ts(r["started_at"]) // slot) for r in mine if r["mode"] == mode)
            assert not per_slot or max(per_slot.values()) == 1, (name, mode, per_slot)
        # The survivor took the connector over after the kill.
        assert any(r["pid"] == survivor and _ts(r["started_at"]) >= killed_at + 1 for r in mine), name
    assert [r for r in runs if r["connector"] == "(merge)"]
    assert dupes == []  # nothing merged twice
    assert upgraded == 200  # the change was merged, once per device
    assert leases == []  # the survivor gave its leases back; the dead worker's were taken over
    assert "stopped" in out
