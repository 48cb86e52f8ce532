"""OS end of support for EDR sources through their real mappings: Defender's os_version carries the platform and
the feature update ("Windows 11 22H2": 22H2 alone is both Windows 10 and 11), CrowdStrike's carries the product
name and the build ("Windows 11 Enterprise (build 22631)": "Windows 11" alone names no release). The records are
the connectors' recorded fixtures (tests/connectors/{defender,crowdstrike}/fixtures), varied per case; the end
dates are the bundled OS data file's. The report runs at a fixed --as-of, so no clock is involved."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from itam_sync.insight.os_catalog import load_catalog, os_support
from itam_sync.insight.reports import run_report
from itam_sync.mapping.loader import load_mapping
from itam_sync.settings import Settings
from tests.insight.population import Source, build

ROOT = Path(__file__).resolve().parents[2]
AS_OF = date(2026, 1, 15)
DEFENDER = ROOT / "mappings" / "defender.yaml"
CROWDSTRIKE = ROOT / "mappings" / "crowdstrike.yaml"


def recorded(connector: str, name: str) -> Any:
    return json.loads((ROOT / "tests" / "connectors" / connector / "fixtures" / name).read_text())


def defender_machine(platform: str, version: str | None) -> dict[str, Any]:
    machine: dict[str, Any] = copy.deepcopy(recorded("defender", "machines_page1.json")["value"][0])
    machine["osPlatform"], machine["version"] = platform, version
    return machine


def crowdstrike_host(os_version: str, product: str | None, build: str | None) -> dict[str, Any]:
    host: dict[str, Any] = copy.deepcopy(recorded("crowdstrike", "hosts.json")["resources"][0])
    host["os_version"], host["os_product_name"], host["os_build"] = os_version, product, build
    return host


def support(fields: dict[str, Any]) -> tuple[str | None, str | None]:
    settings = Settings()
    sup = os_support(settings, load_catalog(settings), fields.get("os_name"), fields.get("os_version"),
                     fields.get("kind"), AS_OF)
    return (sup.line.title if sup.line else None), (sup.end.isoformat() if sup.end else sup.note)


@pytest.mark.parametrize(("platform", "version", "os_version", "release", "end"), [
    ("Windows11", "22H2", "Windows 11 22H2", "windows 11 22H2 (pro)", "2024-10-08"),
    ("Windows10", "22H2", "Windows 10 22H2", "windows 10 22H2", "2025-10-14"),
    ("Windows11", "23H2", "Windows 11 23H2", "windows 11 23H2 (pro)", "2025-11-11"),
    ("WindowsServer2019", "1809", "Windows Server 2019 1809", "windows-server 2019", "2029-01-09"),
    ("WindowsServer2012R2", "6.3", "Windows Server 2012 R2 6.3", "windows-server 2012 R2", None),
    ("Android", "14", "14", "android 14 Upside Down Cake", None),
    ("macOS", "14.5", "14.5", "macos 14 Sonoma", None),
])
def test_defender_os_version_names_the_platform_and_the_feature_update(
        platform: str, version: str, os_version: str, release: str, end: str | None) -> None:
    fields = load_mapping(DEFENDER).stream("machines").map(defender_machine(platform, version), "machines").fields
    assert fields["os_version"] == os_version
    got_release, got_end = support(fields)
    assert got_release == release
    if end is not None:
        assert got_end == end


def test_defender_machine_without_a_version_has_no_os_version() -> None:
    fields = load_mapping(DEFENDER).stream("machines").map(defender_machine("Windows11", None), "machines").fields
    assert "os_version" not in fields


@pytest.mark.parametrize(("os_version", "product", "build", "mapped", "release", "end"), [
    ("Windows 11", "Windows 11 Enterprise", "22631", "Windows 11 Enterprise (build 22631)",
     "windows 11 23H2 (enterprise)", "2026-11-10"),
    ("Windows 10", None, "19045", "Windows 10 (build 19045)", "windows 10 22H2", "2025-10-14"),
    ("Windows 11", "Windows 11 Pro", "26100", "Windows 11 Pro (build 26100)", "windows 11 24H2 (pro)", "2026-10-13"),
    ("Windows Server 2022", "Windows Server 2022 Datacenter", "20348",
     "Windows Server 2022 Datacenter (build 20348)", "windows-server 2022", "2031-10-14"),
    ("Windows 11", "Windows 11 Enterprise", None, "Windows 11", None, "without a feature update or build"),
])
def test_crowdstrike_os_version_carries_the_build(os_version: str, product: str | None, build: str | None,
                                                   mapped: str, release: str | None, end: str) -> None:
    fields = load_mapping(CROWDSTRIKE).stream("hosts").map(crowdstrike_host(os_version, product, build)).fields
    assert fields["os_version"] == mapped
    got_release, got_end = support(fields)
    assert got_release == release and got_end is not None and end in got_end


def test_crowdstrike_mac_and_linux_keep_their_os_version() -> None:
    hosts = recorded("crowdstrike", "hosts.json")["resources"][:5]  # the sixth is the fixture's malformed host
    stream = load_mapping(CROWDSTRIKE).stream("hosts")
    assert [stream.map(h).fields.get("os_version") for h in hosts] == [
        "Windows 11 Enterprise (build 22631)", "Amazon Linux 2023", "Windows Server 2022", "Sonoma (14)",
        "Windows 10"]


def test_os_eol_report_maps_defender_machines(tmp_path: Path) -> None:
    """Defender machines synced through the real Defender mapping into a store: the report places the 22H2 ones
    on their Windows 10 / Windows 11 lines instead of listing them as not mapped."""
    fields = yaml.safe_load(DEFENDER.read_text())["streams"]["machines"]["fields"]
    rows = []
    for n, (platform, version) in enumerate([("Windows10", "22H2"), ("Windows11", "22H2"), ("Windows11", "23H2"),
                                             ("WindowsServer2019", "1809")]):
        machine = defender_machine(platform, version)
        # Distinct machines: no shared MACs or Entra id for identity resolution to join them by.
        machine.update(key=f"m{n}", id=f"m{n}", computerDnsName=f"host-{n}.corp.example.com", aadDeviceId=None,
                       ipAddresses=[])
        rows.append(machine)
    store, settings = build(tmp_path, {"defender": Source("asset", rows, "edr", fields=fields)})
    try:
        rep = run_report(store, settings, "os-eol", now=datetime(2026, 1, 15, 12, tzinfo=UTC))
    finally:
        store.close()
    assert [(r.hostname, r.os_version, r.release, r.end_of_support, r.days_left, r.status) for r in rep.rows] == [
        ("host-1", "Windows 11 22H2", "windows 11 22H2 (pro)", "2024-10-08", -464, "past"),
        ("host-0", "Windows 10 22H2", "windows 10 22H2", "2025-10-14", -93, "past"),
        ("host-2", "Windows 11 23H2", "windows 11 23H2 (pro)", "2025-11-11", -65, "past"),
    ]
    assert not [t for t in rep.totals if t.status == "not mapped"]
