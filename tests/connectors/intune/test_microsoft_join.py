"""Intune and Defender for Endpoint synced into one store: devices join on the Entra device id.

Intune `azureADDeviceId` = Defender `aadDeviceId` = Entra `deviceId`. Defender has no serial numbers, so for
a phone (no usable MAC) the Entra device id is the only key the two sources share.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from itam_sync.connectors.defender.connector import DefenderConnector
from itam_sync.connectors.intune.connector import IntuneConnector
from test_intune import SETTINGS as INTUNE_SETTINGS
from test_intune import FakeGraph, ms_login

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import run_connector
from itam_sync.model.canonical import EntityType
from itam_sync.model.keys import KeyKinds, KeyScope
from itam_sync.settings import ConnectorConfig, IdentityConfig, Settings, StoreConfig
from itam_sync.store import Store

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
DEFENDER_FIXTURES = HERE.parent / "defender" / "fixtures"
REGISTRY = Registry(extra={"intune": IntuneConnector, "defender": DefenderConnector})
DEFENDER_SETTINGS = {**INTUNE_SETTINGS, "client_id": "itam-defender-reader"}  # same tenant, another app
KEYS_WITH_ENTRA = ["instance_id", "serial_number", "hardware_uuid", "entra_device_id", "udid", "imei",
                   "mac_addresses"]
ANNA_ENTRA = "80fe8ff8-2624-418e-9591-41f0491218f9"
GALAXY_ENTRA = "5d6e7f80-9a1b-4c2d-8e3f-4a5b6c7d8e9f"


@pytest.fixture(autouse=True)
def _no_real_waits(recorded_sleeps: list[float]) -> list[float]:
    return recorded_sleeps


def serve_defender(rsps: responses.RequestsMock) -> None:
    pages = {None: "machines_page1.json", "10000": "machines_page2.json", "20000": "machines_page3.json"}

    def machines(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        skip = parse_qs(urlsplit(str(request.url)).query).get("$skip", [None])[0]
        return 200, {"Content-Type": "application/json"}, (DEFENDER_FIXTURES / pages[skip]).read_text()

    rsps.add_callback(responses.GET, re.compile(r"https://api\.securitycenter\.microsoft\.com/api/machines"),
                      callback=machines)


def sync_both(tmp_path: Path, asset_keys: list[str]) -> list[tuple[int, dict[str, Any], str]]:
    settings = Settings(
        store=StoreConfig(url=f"sqlite:///{tmp_path / 'itam.db'}"),
        identity=IdentityConfig(asset_keys=asset_keys),
        connectors=[
            ConnectorConfig(name="intune", type="intune", mapping=str(ROOT / "mappings" / "intune.yaml"),
                            settings=INTUNE_SETTINGS),
            ConnectorConfig(name="defender", type="defender", mapping=str(ROOT / "mappings" / "defender.yaml"),
                            settings=DEFENDER_SETTINGS),
        ])
    with responses.RequestsMock() as rsps:
        ms_login(rsps)
        FakeGraph().serve(rsps)
        serve_defender(rsps)
        for name in ("intune", "defender"):
            assert run_connector(settings, name, full=True, registry=REGISTRY).status == "success"
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        assets = list(repo.entities.iter_entities("asset"))
        assert repo.entities.counts()["open_conflicts"] == 0
    store.close()
    return assets


def value(golden: dict[str, Any], name: str) -> Any:
    entry = golden.get(name)
    return entry[0] if entry else None


def by_entra(assets: list[tuple[int, dict[str, Any], str]], entra: str) -> list[dict[str, Any]]:
    return [g for _, g, _ in assets if value(g, "entra_device_id") == entra]


def test_entra_device_id_is_a_registration_default_key() -> None:
    # It names one registration (a re-enrolled laptop gets a new one), so two never contradict a serial match.
    assert KeyKinds().scope(EntityType.ASSET, "entra_device_id:x") is KeyScope.REGISTRATION
    keys = IdentityConfig().asset_keys
    assert keys.index("entra_device_id") == keys.index("hardware_uuid") + 1


def test_one_asset_per_device_across_intune_and_defender(tmp_path: Path) -> None:
    assets = sync_both(tmp_path, KEYS_WITH_ENTRA)
    # Intune: 4 devices (2 of its records are quarantined); Defender: 4 machines, 2 of them the same
    # devices as Intune's (Anna's laptop and the Galaxy phone) -> 6 real devices.
    assert len(assets) == 6
    (anna,) = by_entra(assets, ANNA_ENTRA)
    assert value(anna, "serial_number") == "5CG1234XYZ"  # from Intune
    assert value(anna, "fqdn") == "lt-anna-w11.corp.example.com"  # from Defender
    assert value(anna, "mdm_managed") is True and value(anna, "edr_protected") is True
    assert value(anna, "compliance_state") == "compliant" and value(anna, "risk_level") == "medium"
    # Defender wrote the Galaxy's id in upper case; the uuid transform makes it the same key.
    (galaxy,) = by_entra(assets, GALAXY_ENTRA)
    assert value(galaxy, "imei") == "356938035643809" and value(galaxy, "edr_protected") is True
    assert value(galaxy, "mdm_managed") is True
    # All-zero Entra ids (an unregistered desktop, a discovered printer) never join anything.
    printer = [g for _, g, _ in assets if value(g, "hostname") == "printer-3f-west"]
    desktop = [g for _, g, _ in assets if value(g, "hostname") == "desktop-7q2k9lm"]
    assert len(printer) == len(desktop) == 1
    assert value(printer[0], "mdm_managed") is None and value(desktop[0], "edr_protected") is None


def test_without_the_entra_key_the_phone_splits(tmp_path: Path) -> None:
    keys = [k for k in KEYS_WITH_ENTRA if k != "entra_device_id"]
    assets = sync_both(tmp_path, keys)
    # Anna's laptop still joins on its Wi-Fi MAC; the phone (randomised MAC, no serial in Defender) cannot.
    assert len(assets) == 7
    galaxies = [g for _, g, _ in assets if value(g, "entra_device_id") == GALAXY_ENTRA]
    assert len(galaxies) == 2
