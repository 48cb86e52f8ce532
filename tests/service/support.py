"""What the `serve` tests share: the webhook/API secrets in the environment, a Service built from the demo
config, and waiting for something the worker does in the background."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from itam_sync.service.server import Service
from itam_sync.settings import load_settings

SECRETS = {"ITAM_TEST_API_TOKEN": "op-token", "ITAM_TEST_OKTA_HOOK": "okta-secret",
           "ITAM_TEST_JAMF_HOOK": "jamf-secret", "ITAM_TEST_JAMF_PW": "jamf-pw",
           "ITAM_TEST_GRAPH_STATE": "graph-state"}


def set_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets the test service configs reference, as environment variables."""
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)


def demo_service(demo: Any, service: dict[str, Any], *, schedules: bool = False,
                 extra: dict[str, Any] | None = None) -> Service:
    """A Service on the demo config with this `service:` section (and `extra` top-level sections); without
    `schedules` no connector runs on its own."""
    cfg = yaml.safe_load(demo.config.read_text())
    cfg["service"] = service
    cfg.update(extra or {})
    if not schedules:
        for c in cfg["connectors"]:
            c.pop("schedule", None)
    demo.config.write_text(yaml.safe_dump(cfg))
    return Service(load_settings(demo.config).settings)


def wait_for(pred: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll `pred` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")
