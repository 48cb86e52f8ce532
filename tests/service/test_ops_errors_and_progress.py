"""What operators see: a failed run's error says what to do; pages and rate-limit waits reach the progress
display and metrics; logs as JSON lines for machines.

The failures go through a real connector (Okta) over `responses`, through the real HTTP client.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
import yaml

from itam_sync.engine.runner import run_connector
from itam_sync.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
ORG = "https://acme.okta.test"


def _user(i: int) -> dict[str, Any]:
    return {"id": f"00u{i}", "status": "ACTIVE", "created": "2024-01-01T00:00:00.000Z",
            "lastUpdated": f"2026-11-0{i}T00:00:00.000Z",
            "profile": {"login": f"p{i}@acme.test", "email": f"p{i}@acme.test", "firstName": "P", "lastName": str(i),
                        "employeeNumber": f"E{i}"}}


class Okta:
    """Users in two pages (Link header), no devices, no apps; `mode` = ok | throttle_once | 401 | 403 | 503."""

    def __init__(self, mode: str) -> None:
        self.mode, self.throttled = mode, False

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        url = urlsplit(str(request.url))
        headers = {"Content-Type": "application/json"}
        if self.mode in ("401", "403", "503"):
            body = {"401": "Invalid token provided", "403": "You do not have permission", "503": "Service Unavailable"}
            return int(self.mode), headers, json.dumps({"errorCode": "E0000011", "errorSummary": body[self.mode]})
        if self.mode == "throttle_once" and not self.throttled:
            self.throttled = True
            return 429, {**headers, "Retry-After": "7"}, json.dumps({"errorCode": "E0000047"})
        if url.path == "/api/v1/users":
            page = int(parse_qs(url.query).get("after", ["0"])[0])
            if page == 0:
                return 200, {**headers, "Link": f'<{ORG}/api/v1/users?after=1>; rel="next"'}, json.dumps(
                    [_user(1), _user(2)])
            return 200, headers, json.dumps([_user(3)])
        return 200, headers, "[]"


def _config(tmp_path: Path) -> Path:
    cfg = {"store": {"url": f"sqlite:///{tmp_path / 'itam.db'}"}, "mappings_dir": str(ROOT / "mappings"),
           "connectors": [{"name": "okta-prod", "type": "okta",
                           "settings": {"org_url": ORG, "api_token": "${env:ITAM_TEST_OKTA_TOKEN}"}}]}
    path = tmp_path / "itam-sync.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def okta_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded_sleeps: list[float]) -> Path:
    monkeypatch.setenv("ITAM_TEST_OKTA_TOKEN", "00abcSSWStoken")
    return _config(tmp_path)


def _cli(config: Path, *args: str) -> Any:
    from click.testing import CliRunner

    from itam_sync.cli.main import main

    return CliRunner().invoke(main, [args[0], "--config", str(config), *args[1:]], catch_exceptions=False)


@pytest.mark.parametrize("mode,advice", [
    ("401", "authentication failed; check the credentials (API token, client id/secret) and their expiry"),
    ("403", "permission denied; the credentials work but lack a required scope, role or API permission"),
    ("503", "the source looks down or unreachable: nothing was changed and the next run retries; if it persists, "
            "check the vendor's status page"),
])
def test_a_failed_run_says_what_to_do(okta_config: Path, mode: str, advice: str) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.GET, re.compile(re.escape(ORG) + r"/.*"), callback=Okta(mode))
        result = _cli(okta_config, "run", "-q", "--full")
    assert result.exit_code == 1
    assert advice in result.output
    runs = json.loads(_cli(okta_config, "runs", "--json").output)
    assert [(r["connector"], r["status"]) for r in runs] == [("okta-prod", "failed")]
    assert advice in runs[0]["error"] and "00abcSSWStoken" not in runs[0]["error"]
    text = _cli(okta_config, "runs").output
    assert "failed *" in text and re.sub(r"\s+", " ", advice) in re.sub(r"\s+", " ", text)
    if mode == "503":
        assert "gave up on GET https://acme.okta.test/api/v1/users" in runs[0]["error"]


def test_pages_and_rate_limit_waits_are_reported(okta_config: Path, recorded_sleeps: list[float]) -> None:
    events: list[tuple[str, str, str, float]] = []
    settings = load_settings(okta_config).settings
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.GET, re.compile(re.escape(ORG) + r"/.*"), callback=Okta("throttle_once"))
        result = run_connector(settings, "okta-prod", full=True, on_http=lambda *e: events.append(e))
    assert result.status == "success"
    assert recorded_sleeps == [7.0]  # Okta's Retry-After, honoured
    assert ("okta-prod", "users", "rate_limit_wait", 7.0) in events
    pages = [(stream, value) for _, stream, kind, value in events if kind == "page"]
    assert pages == [("users", 1.0), ("users", 1.0), ("devices", 1.0), ("apps", 1.0)]


def test_json_log_lines(demo) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run([sys.executable, "-c", "from itam_sync.cli.main import main; main()", "--log-format", "json",
                          "-v", "run", "-c", str(demo.config), "--full", "--connector", "mdm"],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    (run,) = [line for line in lines if line.get("run_id") is not None and line["logger"] == "itam_sync.engine.runner"]
    assert run["connector"] == "mdm" and run["status"] == "success" and run["mode"] == "full"
    assert run["records"] == 6 and run["level"] == "info"
    assert "sync runs" in out.stdout  # the summary table still goes to stdout


def test_quiet_prints_nothing_on_success(demo) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from itam_sync.cli.main import main

    result = CliRunner().invoke(main, ["--quiet", "run", "--config", str(demo.config), "--full"])
    assert result.exit_code == 0 and result.output == ""
