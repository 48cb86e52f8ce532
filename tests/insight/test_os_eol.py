"""OS end of support: every connector's real version strings map to a release line (or to a stated reason), the
bundled data file names its source and snapshot, operator entries override it, and `report os-eol` lists past,
ending and unmapped devices at a fixed --as-of.

The version strings come from the connectors' recorded fixtures and mappings (tests/connectors/*/fixtures,
mappings/*.yaml); the end dates are the bundled file's (endoflife.date, snapshot 2026-08-22).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from itam_sync.insight.os_catalog import DATA_FILE, load_catalog, os_support
from itam_sync.insight.reports import run_report
from itam_sync.settings import Settings
from tests.insight.population import Source, build

AS_OF = date(2026, 1, 15)

# (connector, os_name, os_version, kind) -> (release line title, end of support) or (None, reason fragment)
CASES = [
    # Intune managedDevice osVersion / operatingSystem (tests/connectors/intune/fixtures, the demo MDM).
    ("intune", "Windows", "10.0.19045.3803", "laptop", "windows 10 22H2", "2025-10-14"),
    ("intune", "Windows", "10.0.22631.3737", "laptop", "windows 11 23H2 (pro)", "2025-11-11"),
    ("intune", "Windows", "10.0.26100.2033", "laptop", "windows 11 24H2 (pro)", "2026-10-13"),
    ("intune", "iOS", "17.5.1", "mobile", "ios 17", "2025-05-13"),
    ("intune", "Android", "13", "mobile", "android 13 Tiramisu", "2026-03-02"),
    # Entra device operatingSystemVersion.
    ("entra", "Windows", "10.0.22631.3593", None, "windows 11 23H2 (pro)", "2025-11-11"),
    ("entra", "iPadOS", "17.5.1", "tablet", "ipados 17", None),
    # Jamf computers operatingSystem.version, mobile devices general.osVersion.
    ("jamf", "macOS", "14.2.1", "laptop", "macos 14 Sonoma", None),
    ("jamf", "macOS", "13.6.7", "laptop", "macos 13 Ventura", "2025-09-15"),
    ("jamf", "iOS", "17.5.1", "mobile", "ios 17", "2025-05-13"),
    # Kandji os_version.
    ("kandji", "macOS", "14.5", "laptop", "macos 14 Sonoma", None),
    ("kandji", "macOS", "10.15.7", "laptop", "macos 10.15 Catalina", "2026-02-02"),
    # CrowdStrike os_version (product name style), the first choice of the mapping.
    ("crowdstrike", "macOS", "Ventura (13)", None, "macos 13 Ventura", "2025-09-15"),
    ("crowdstrike", "macOS", "Sonoma (14)", None, "macos 14 Sonoma", None),
    ("crowdstrike", "Windows", "Windows Server 2022", "server", "windows-server 2022", "2031-10-14"),
    ("crowdstrike", "Linux", "Amazon Linux 2023", "server", "amazon-linux 2023", "2029-06-30"),
    ("crowdstrike", "Windows", "Windows 11", None, None, "without a feature update or build"),
    # SentinelOne osRevision (the mapping's first choice).
    ("sentinelone", "Windows", "22631", "laptop", "windows 11 23H2 (pro)", "2025-11-11"),
    ("sentinelone", "Windows", "19045", "laptop", "windows 10 22H2", "2025-10-14"),
    ("sentinelone", "Windows", "19044", "desktop", "windows 10 21H2 (pro)", "2023-06-13"),
    ("sentinelone", "macOS", "14.5 (23F79)", "laptop", "macos 14 Sonoma", None),
    ("sentinelone", "Linux", "Red Hat Enterprise Linux 9.3", "server", "rhel 9", "2032-05-31"),
    # Defender machine `version` (os_name from osPlatform); 22H2 alone is both Windows 10 and 11.
    ("defender", "Windows", "23H2", None, "windows 11 23H2 (pro)", "2025-11-11"),
    ("defender", "Windows", "1809", "server", "windows-server 2019", "2029-01-09"),
    ("defender", "Windows", "22H2", None, None, "feature update of 10 22H2 and 11 22H2"),
    ("defender", "Windows", "Windows10 22H2", None, "windows 10 22H2", "2025-10-14"),
    ("defender", "Android", "14", "mobile", "android 14 Upside Down Cake", None),
    ("defender", "Linux", None, None, None, "no os_version reported"),
    # Google Workspace: ChromeOS osVersion is the Chrome version; mobile `os`.
    ("google_workspace", "ChromeOS", "125.0.6422.154", "laptop", "chromeos 125", "2024-06-11"),
    ("google_workspace", "Android", "Android 12", "mobile", "android 12 Snow Cone", "2025-03-03"),
    ("google_workspace", "iOS", "iOS 17.5.1", "mobile", "ios 17", "2025-05-13"),
    # Okta devices profile.osVersion.
    ("okta", "Windows", "Windows 11 23H2", None, "windows 11 23H2 (pro)", "2025-11-11"),
    # Cloud images when a mapping carries them (GCP licence, Azure image offer / SKU); AWS gives no version.
    ("gcp", "Linux", "debian-12-bookworm", "cloud_instance", "debian 12 Bookworm", "2026-07-11"),
    ("gcp", "Windows", "windows-server-2022-dc", "cloud_instance", "windows-server 2022", "2031-10-14"),
    ("azure", "Linux", "0001-com-ubuntu-server-jammy 22_04-lts-gen2", "cloud_instance",
     "ubuntu 22.04 Jammy Jellyfish", "2027-04-01"),
    ("aws", "Linux", None, "cloud_instance", None, "no os_version reported"),
    # The build of a cloud Windows machine is the server release.
    ("intune", "Windows", "10.0.26100.2033", "cloud_instance", "windows-server 2025", "2034-11-14"),
    # Editions stated in the text win over the configured default.
    ("sentinelone", "Windows", "Windows 10 Enterprise LTSC 2021", "desktop", "windows 10 21H2 (ltsc)", "2027-01-12"),
    ("okta", "Windows", "Windows 11 Enterprise 23H2", None, "windows 11 23H2 (enterprise)", "2026-11-10"),
    ("crowdstrike", "Linux", "SUSE Linux Enterprise Server 15 SP5", "server", "sles 15.5", "2024-12-31"),
    ("jamf", "macOS", "27.1", "laptop", None, "newer than the bundled data (snapshot 2026-08-22)"),
]


@pytest.mark.parametrize(("connector", "os_name", "os_version", "kind", "release", "end"), CASES,
                         ids=[f"{c[0]}:{c[2]}" for c in CASES])
def test_version_strings_map_to_release_lines(connector: str, os_name: str, os_version: str | None,
                                              kind: str | None, release: str | None, end: str | None) -> None:
    settings = Settings()
    sup = os_support(settings, load_catalog(settings), os_name, os_version, kind, AS_OF)
    if release is None:
        assert sup.line is None and end is not None and end in sup.note, sup
        return
    assert sup.line is not None, sup.note
    assert (sup.line.title, sup.end.isoformat() if sup.end else None) == (release, end)
    assert sup.days_left == ((date.fromisoformat(end) - AS_OF).days if end else None)


def test_data_file_names_source_and_snapshot_and_covers_every_family() -> None:
    doc = yaml.safe_load(DATA_FILE.read_text())
    assert doc["version"] == 1 and doc["snapshot"] == date(2026, 8, 22)
    assert doc["source"].startswith("https://github.com/endoflife-date/endoflife.date/")
    families = doc["families"]
    for fam in ("windows", "windows-server", "macos", "ios", "ipados", "android", "chromeos", "ubuntu", "debian",
                "rhel", "centos", "amazon-linux", "sles", "rocky-linux", "almalinux"):
        assert families[fam]["source"].startswith("https://endoflife.date/"), fam
        assert families[fam]["vendor"] and families[fam]["lines"], fam
    editions = {ln.get("edition") for ln in families["windows"]["lines"] if ln["release"] == "11 23H2"}
    assert editions == {"pro", "enterprise"}


def test_config_entries_add_and_override_lines_and_edition_default() -> None:
    settings = Settings.model_validate({"lifecycle": {"os": {
        "windows_edition": "enterprise", "support": "extended",
        "entries": [{"family": "macos", "release": "14", "end": "2026-11-30"},
                    {"family": "macos", "release": "27", "end": None, "label": "Next"}]}}})
    catalog = load_catalog(settings)
    sup = os_support(settings, catalog, "macOS", "14.6.1", None, AS_OF)
    assert sup.line is not None and sup.line.origin == "config" and sup.end == date(2026, 11, 30)
    assert os_support(settings, catalog, "macOS", "27.1", None, AS_OF).line is not None
    sup = os_support(settings, catalog, "Windows", "10.0.22631.1", None, AS_OF)
    assert (sup.end, sup.note) == (date(2026, 11, 10), "edition not reported: enterprise dates used")
    sup = os_support(settings, catalog, "Windows", "10.0.19045.1", None, AS_OF)
    assert sup.end == date(2028, 10, 10)  # support: extended counts the paid Extended Security Updates


def test_os_eol_report_lists_past_ending_and_unmapped(tmp_path: Path) -> None:
    def dev(key: str, os: str | None, osv: str | None, kind: str = "laptop", **kw: str) -> dict[str, object]:
        return {"key": key, "serial": key, "kind": kind, "os": os, "osv": osv, "state": "deployed", **kw}

    rows = [dev("W10", "Windows", "10.0.19045.3803", user="a@x.example"),  # past since 2025-10-14
            dev("W11", "Windows", "10.0.22631.3737"),  # 23H2 Home/Pro: past since 2025-11-11
            dev("W24", "Windows", "10.0.26100.2033"),  # 24H2 Home/Pro: ends 2026-10-13, beyond 90 days
            dev("MAC13", "macOS", "13.6.7"),  # past since 2025-09-15
            dev("MAC15", "macOS", "10.15.7"),  # Catalina: ends 2026-02-02, within 90 days
            dev("MAC14", "macOS", "14.5"),  # supported, no end known
            dev("CS", "Windows", "Windows 11"),  # not mapped: no build
            dev("OLD", "Windows", "10.0.19045.1", state="retired"),  # not in use
            dev("NOOS", None, None, kind="peripheral")]
    store, settings = build(tmp_path, {"mdm": Source("asset", rows, "mdm")})
    rep = run_report(store, settings, "os-eol", now=datetime(2026, 1, 15, 12, tzinfo=UTC))
    assert rep.params == {"days": 90}
    assert [(r.serial_number, r.release, r.end_of_support, r.days_left, r.status) for r in rep.rows] == [
        ("MAC13", "macos 13 Ventura", "2025-09-15", -122, "past"),  # longest past first
        ("W10", "windows 10 22H2", "2025-10-14", -93, "past"),
        ("W11", "windows 11 23H2 (pro)", "2025-11-11", -65, "past"),
        ("MAC15", "macos 10.15 Catalina", "2026-02-02", 18, "ending"),
        ("CS", None, None, None, "not mapped"),
    ]
    assert rep.rows[1].assigned_to == "a@x.example" and rep.rows[2].note == "edition not reported: pro dates used"
    assert "without a feature update or build" in rep.rows[4].note
    assert [(t.status, t.release, t.devices) for t in rep.totals] == [
        ("past", "macos 13 Ventura", 1), ("past", "windows 10 22H2", 1), ("past", "windows 11 23H2 (pro)", 1),
        ("ending", "macos 10.15 Catalina", 1), ("not mapped", "Windows Windows 11", 1)]
    assert any("1 in-use devices have an OS version that could not be matched" in n for n in rep.notes)
    assert any("1 in-use assets report no os_name" in n for n in rep.notes)
    assert rep.notes[0].startswith("OS data: https://github.com/endoflife-date/")
