"""The sandbox serves what the vendors document: every source path a mapping reads that a recorded vendor
fixture (tests/connectors/<vendor>/fixtures, sourced in its README) holds, the sandbox's records hold too,
read through the real connector over HTTP. A path missing here would show up in `make demo-sandbox` and
bench_sync as a data-contract warning ("source path ... absent from all records") that no tenant gives."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from itam_sync import sandbox
from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import build_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.mapping.paths import StreamPaths, path_text, presence_check
from itam_sync.sdk.connector import BadRecord, StreamState
from itam_sync.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "connectors"


@pytest.fixture(scope="module")
def pulled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[Any]]]:
    """Kandji devices and CrowdStrike hosts of a small seeded sandbox, through config/sandbox.yaml."""
    tmp = tmp_path_factory.mktemp("shapes")
    with sandbox.start(devices=300, seed=1) as sb:
        saved = dict(os.environ)
        os.environ.update(sb.env())
        try:
            text = (ROOT / "config" / "sandbox.yaml").read_text().replace("sqlite:///../sandbox.db",
                                                                            f"sqlite:///{tmp}/shapes.db")
            cfg = tmp / "sandbox.yaml"
            cfg.write_text(text)
            settings = load_settings(cfg).settings
            out: dict[str, list[Any]] = {}
            for name in ("kandji", "crowdstrike"):
                conn_cfg = next(c for c in settings.connectors if c.name == name)
                connector = build_connector(settings, conn_cfg, Registry())
                try:
                    stream = connector.streams()[0]
                    out[name] = [r for r in stream.records(StreamState(full=True)) if not isinstance(r, BadRecord)]
                finally:
                    connector.close()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        yield out


def _paths(mapping: str, stream: str) -> list[tuple[str, ...]]:
    return StreamPaths.of(load_mapping(ROOT / "mappings" / mapping).streams[stream]).all_paths()


def _missing(paths: list[tuple[str, ...]], documented: list[Any], served: list[Any]) -> list[str]:
    """Mapped paths some documented record has and no sandbox record has."""
    out = []
    for path in paths:
        seen = presence_check(path)
        if any(seen(r) for r in documented) and not any(seen(r) for r in served):
            out.append(path_text(path))
    return out


def test_kandji_details_carry_the_documented_keys(pulled: dict[str, list[Any]]) -> None:
    devices = json.loads((FIXTURES / "kandji" / "fixtures" / "devices.json").read_text())
    details = json.loads((FIXTURES / "kandji" / "fixtures" / "details.json").read_text())
    documented = [{**d, "details": details.get(d.get("device_id"))} for d in devices]
    served = pulled["kandji"]
    assert _missing(_paths("kandji.yaml", "devices"), documented, served) == []
    # Macs report `mac_address`, iPhones and iPads `wifi_mac` (and a Bluetooth MAC that is never mapped).
    by_platform: dict[str, set[str]] = {}
    for record in served:
        by_platform.setdefault(record["platform"], set()).update((record["details"] or {}).get("network", {}))
    assert "mac_address" in by_platform["Mac"] and "wifi_mac" not in by_platform["Mac"]
    assert {"wifi_mac", "bluetooth_mac"} <= by_platform["iPhone"] and "mac_address" not in by_platform["iPhone"]


def test_crowdstrike_hosts_carry_the_documented_keys(pulled: dict[str, list[Any]]) -> None:
    documented = json.loads((FIXTURES / "crowdstrike" / "fixtures" / "hosts.json").read_text())["resources"]
    served = pulled["crowdstrike"]
    # Not served yet, alternatives of os_version (DeviceSwagger has both): serving them would turn the sandbox's
    # Windows versions into "Windows 11 Enterprise (build 22631)" and change the demo's merge story.
    assert _missing(_paths("crowdstrike.yaml", "hosts"), documented, served) == ["os_build", "os_product_name"]
    assert all(h["connection_ip"] == h["local_ip"] for h in served)


def test_the_sandbox_population_is_seeded(pulled: dict[str, list[Any]]) -> None:
    """Same seed, same devices: a second sandbox serves byte-identical Kandji details."""
    first = {r["device_id"]: r["details"] for r in pulled["kandji"]}
    with sandbox.start(devices=300, seed=1) as sb:
        import requests  # noqa: PLC0415 - only this test talks to the sandbox by hand

        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {sb.env()[sandbox.SECRET_ENV]}"
        some = sorted(first)[:5]
        again = {d: session.get(f"{sb.url}/kandji/api/v1/devices/{d}/details", timeout=10).json() for d in some}
    kept = ("general", "mdm", "kandji_agent", "hardware_overview", "network", "cellular")
    assert {d: {k: v for k, v in body.items() if k in kept} for d, body in again.items()} == \
        {d: first[d] for d in some}
