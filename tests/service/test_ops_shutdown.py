"""A real `itam-sync serve` process and SIGTERM: finish within the grace period, or stop cleanly; exit 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from itam_sync.cli.main import main; main()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _big_jsonl(path: Path, n: int) -> None:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"d{i}", "deviceName": f"LT-{i}", "serialNumber": f"SNX{i:08d}",
                                 "wiFiMacAddress": "", "userPrincipalName": f"u{i % 500}@example.com",
                                 "lastSyncDateTime": "2026-11-01T00:00:00Z", "model": "m", "manufacturer": "Apple",
                                 "operatingSystem": "macOS", "osVersion": "14"}) + "\n")


def _config(tmp: Path, data: Path, grace: float) -> Path:
    cfg = {"store": {"url": f"sqlite:///{tmp / 'itam.db'}"},
           "service": {"grace_period_s": grace, "jitter_s": 0},
           "connectors": [{"name": "mdm", "type": "jsonl", "full_schedule": "every 1h",
                           "mapping": str(ROOT / "mappings" / "demo" / "mdm.yaml"),
                           "settings": {"path": str(data), "stream": "devices"}}]}
    path = tmp / "itam-sync.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_leftover_workers() -> Iterator[None]:
    """A failed assertion must not leave a worker running."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _serve(config: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*CLI, "serve", "-c", str(config), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    _STARTED.append(proc)
    return proc


def _wait_running(port: int, proc: subprocess.Popen[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
            if health["running"]:
                return dict(health)
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("the catch-up run never started")


def _cli(config: Path, *args: str) -> str:
    out = subprocess.run([*CLI, args[0], "-c", str(config), *args[1:]],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    return out.stdout


def test_sigterm_lets_a_running_sync_finish_within_the_grace_period(tmp_path: Path) -> None:
    data = tmp_path / "devices.jsonl"
    _big_jsonl(data, 15_000)
    config, port = _config(tmp_path, data, grace=60), _free_port()
    proc = _serve(config, port)
    health = _wait_running(port, proc)
    assert health["running"]["mdm"]["mode"] == "full" and health["running"]["mdm"]["reason"] == "startup"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopping: no new runs; waiting up to 60 s for mdm" in out
    runs = json.loads(_cli(config, "runs", "--json"))
    mdm = [r for r in runs if r["connector"] == "mdm"]
    assert [(r["mode"], r["status"]) for r in mdm] == [("full", "success")]
    assert mdm[0]["counts"]["devices"]["new"] == 15_000


def test_sigterm_after_the_grace_period_stops_the_sync_with_nothing_kept(tmp_path: Path) -> None:
    data = tmp_path / "devices.jsonl"
    _big_jsonl(data, 150_000)
    config, port = _config(tmp_path, data, grace=0.5), _free_port()
    proc = _serve(config, port)
    _wait_running(port, proc)
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert time.monotonic() - t0 < 10
    assert "grace period over: stopping mdm" in out
    runs = json.loads(_cli(config, "runs", "--json"))
    assert [(r["connector"], r["status"]) for r in runs] == [("mdm", "interrupted")]
    assert "nothing it read was kept" in runs[0]["error"]
    summary = json.loads(_cli(config, "export", "--entity", "assets"))
    assert summary == []  # no partial state: the run's one transaction rolled back
    status = json.loads(_cli(config, "status", "--json"))
    assert status["connectors"][0]["lease"] is None  # released on the way out


def test_a_sync_stuck_in_io_does_not_keep_the_worker_alive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A source that accepts the connection and never answers: the run sits in a socket read.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    monkeypatch.setenv("ITAM_TEST_OKTA_TOKEN", "t0ken")
    config, port = _config(tmp_path, tmp_path / "unused.jsonl", grace=0.5), _free_port()
    cfg = yaml.safe_load(config.read_text())
    cfg["connectors"] = [{"name": "okta", "type": "okta", "full_schedule": "every 1h",
                          "settings": {"org_url": f"http://127.0.0.1:{silent.getsockname()[1]}",
                                       "api_token": "${env:ITAM_TEST_OKTA_TOKEN}", "timeout": 120}}]
    cfg["mappings_dir"] = str(ROOT / "mappings")
    config.write_text(yaml.safe_dump(cfg))
    proc = _serve(config, port)
    try:
        _wait_running(port, proc)
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        silent.close()
    assert proc.returncode == 0, out
    assert time.monotonic() - t0 < 8
    assert "still running after the grace period: okta" in out
    # The next run records the abandoned one as interrupted (its process is gone) and goes on.
    result = subprocess.run([*CLI, "run", "-q", "-c", str(config), "--full"], capture_output=True, text=True,
                            cwd=ROOT, check=False)
    assert result.returncode == 1  # nobody answers now: connection refused
    runs = json.loads(_cli(config, "runs", "--json"))
    assert [r["status"] for r in runs] == ["failed", "interrupted"]
    assert "the source looks down or unreachable" in runs[0]["error"]
