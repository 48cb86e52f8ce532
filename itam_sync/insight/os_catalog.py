"""Which operating-system release a device runs, and when that release's support ends.

`identify(os_name, os_version, kind)` turns the canonical os_name / os_version the connectors produce into a
family and release of the bundled data file os_eol.yaml (see its header for the source and snapshot date):

- Intune, Entra: Windows 10.0.19045.3803 -> windows 10 22H2 (by build); macOS 14.2.1 -> macos 14
- Jamf, Kandji: macOS 14.2.1 -> macos 14; iOS 17.5.1 -> ios 17; iPadOS 18.1 -> ipados 18
- CrowdStrike: "Ventura (13)" -> macos 13; "Windows Server 2022" -> windows-server 2022; "Amazon Linux 2023"
  -> amazon-linux 2023; "Windows 11" alone is not mapped (no feature update or build: the reason says so)
- SentinelOne (osRevision): Windows 22631 -> windows 11 23H2; "14.5 (23F79)" -> macos 14;
  "Red Hat Enterprise Linux 9.3" -> rhel 9
- Defender (version): 23H2 -> windows 11 23H2; 1809 -> windows 10 1809, or windows-server 2019 when the kind
  is server; 22H2 alone is ambiguous (Windows 10 and 11 both have it) unless os_version carries the platform
  ("Windows10 22H2")
- Google Workspace: ChromeOS 125.0.6422.154 -> chromeos 125 (the Chrome milestone); Android 12 -> android 12
- cloud images (when a mapping puts them in os_version): debian-12-bookworm -> debian 12,
  windows-server-2022-dc -> windows-server 2022, 22_04-lts-gen2 / ubuntu-server-jammy -> ubuntu 22.04

Windows builds 14393, 17763 and 26100 are both a client and a server release: the server line is used when the
text says "Server" or the asset's kind is server or cloud_instance. The edition decides a Windows client
release's end: it comes from the text (Enterprise, Education, LTSC, IoT, Pro, Home), else from
`lifecycle.os.windows_edition` (default pro, the earlier dates). What cannot be identified gets a reason and is
listed by the report, never dropped.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from itam_sync.settings import Settings

DATA_FILE = Path(__file__).with_name("os_eol.yaml")
SERVER_KINDS = frozenset({"server", "cloud_instance"})
AMBIGUOUS_BUILDS = frozenset({"14393", "17763", "26100"})  # a client and a server release share them


@dataclass(frozen=True)
class OsLine:
    """One release line of an OS family and the end of its support."""

    family: str
    release: str
    edition: str | None
    end: date | None  # None: supported, no end known
    extended_end: date | None
    build: str | None
    label: str | None
    origin: str  # "bundled" or "config"

    @property
    def title(self) -> str:
        """'windows 11 23H2 (enterprise)', 'macos 14 Sonoma'."""
        text = f"{self.family} {self.release}"
        if self.edition:
            text += f" ({self.edition})"
        if self.label and not self.label.startswith(("LTS", "end ")):
            text += f" {self.label}"
        return text


@dataclass(frozen=True)
class OsId:
    """What a device's os_name / os_version say: a family, and a release when it can be told (else a reason)."""

    family: str | None
    release: str | None
    edition: str | None = None
    reason: str = ""


@dataclass
class OsCatalog:
    """The release lines (bundled, then the operator's entries on top) and where they come from."""

    version: int
    snapshot: date
    source: str
    lines: dict[tuple[str, str, str | None], OsLine]
    _families: dict[str, list[OsLine]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for (fam, _r, _e), ln in self.lines.items():
            self._families.setdefault(fam, []).append(ln)

    def family_lines(self, family: str) -> list[OsLine]:
        return self._families.get(family, [])

    def by_build(self, family: str, build: str) -> str | None:
        """The release of a family with this build (server: the long-term release, not a semi-annual one)."""
        found = [ln for ln in self.family_lines(family) if ln.build == build]
        found.sort(key=lambda ln: ("SAC" in ln.release or " AC" in ln.release, ln.release))
        return found[0].release if found else None

    def releases_named(self, family: str, update: str) -> list[str]:
        """Releases of a family whose name ends in a feature-update label ("22H2" -> ["10 22H2", "11 22H2"])."""
        return sorted({ln.release for ln in self.family_lines(family) if ln.release.split()[-1] == update})

    def by_label(self, family: str, word: str) -> str | None:
        """The release whose label starts with a code name ("ventura", "jammy", "bookworm")."""
        for ln in self.family_lines(family):
            if ln.label and ln.label.split()[0].casefold() == word.casefold():
                return ln.release
        return None

    def line(self, ident: OsId, default_edition: str) -> tuple[OsLine | None, str]:
        """The line of an identified release, and a note on how it was chosen (or why there is none)."""
        if ident.family is None or ident.release is None:
            return None, ident.reason
        fam, rel = ident.family, ident.release
        any_edition = self.lines.get((fam, rel, None))
        if ident.edition and (fam, rel, ident.edition) in self.lines:
            return self.lines[(fam, rel, ident.edition)], ""
        if any_edition is not None:
            return any_edition, ""
        if (fam, rel, default_edition) in self.lines:
            return self.lines[(fam, rel, default_edition)], (
                "" if ident.edition else f"edition not reported: {default_edition} dates used")
        if self.family_lines(fam) and _newer_than_all(rel, self.family_lines(fam)):
            return None, (f"{fam} {rel} is newer than the bundled data (snapshot {self.snapshot}): add it under "
                          "lifecycle.os.entries")
        return None, f"no release {fam} {rel} in the data: add it under lifecycle.os.entries"


def _key(release: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", release)) or (0,)


def _newer_than_all(release: str, lines: list[OsLine]) -> bool:
    return all(_key(release) > _key(ln.release) for ln in lines)


def _date(v: Any) -> date | None:
    if v is None or isinstance(v, date):
        return v
    return date.fromisoformat(str(v))


@functools.lru_cache(maxsize=4)
def _bundled(path: Path) -> tuple[int, date, str, tuple[OsLine, ...]]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: this itam-sync was packaged without its OS data file "
                                "(package-data itam_sync.insight *.yaml); reinstall it") from None
    lines = []
    for family, spec in doc["families"].items():
        for ln in spec["lines"]:
            lines.append(OsLine(family, str(ln["release"]), ln.get("edition"), _date(ln.get("end")),
                                _date(ln.get("extended_end")), ln.get("build"), ln.get("label"), "bundled"))
    return int(doc["version"]), _date(doc["snapshot"]) or date.min, str(doc["source"]), tuple(lines)


def load_catalog(settings: Settings, path: Path = DATA_FILE) -> OsCatalog:
    """The bundled lines with the config's `lifecycle.os.entries` added or replacing (same family, release,
    edition)."""
    version, snapshot, source, bundled = _bundled(path)
    lines = {(ln.family, ln.release, ln.edition): ln for ln in bundled}
    for e in settings.lifecycle.os.entries:
        lines[(e.family, e.release, e.edition)] = OsLine(e.family, e.release, e.edition, e.end, e.extended_end,
                                                         e.build, e.label, "config")
    return OsCatalog(version, snapshot, source, lines)


# -- identification ----------------------------------------------------------------------------------------
_WIN_BUILD = re.compile(r"\b(?:10\.0|6\.[0-3])\.(\d{4,5})\b")
_BARE_BUILD = re.compile(r"(?<![\d.])(1\d{4}|2\d{4})(?![\d])")  # SentinelOne osRevision "22631"
_LTSC = re.compile(r"lts[cb]\s*(2015|2016|2019|2021|2024)", re.IGNORECASE)
_LTSC_BUILD = {"2015": "10240", "2016": "14393", "2019": "17763", "2021": "19044", "2024": "26100"}
_SERVER_YEAR = re.compile(r"server[\s_-]*(20\d\d)(?:[\s_-]*(r2))?", re.IGNORECASE)
_WIN_PRODUCT = re.compile(r"windows[\s_-]*(11|10|8\.1|7)\b", re.IGNORECASE)
_UPDATE = re.compile(r"\b(1[5-9](?:0[379]|11)|2004|2[0-9]h[12])\b", re.IGNORECASE)
_MOBILE = {"ios": "ios", "iphone": "ios", "ipados": "ipados", "ipad": "ipados", "android": "android"}
_LINUX = (  # (family, pattern whose groups make the release)
    ("ubuntu", re.compile(r"ubuntu[^0-9]*?(\d{2})[._]?(\d{2})")),
    ("centos-stream", re.compile(r"centos[\s_-]*stream[^0-9]*(\d+)")),
    ("centos", re.compile(r"centos[^0-9]*(\d+)")),
    ("rhel", re.compile(r"(?:red[\s_-]*hat[\s_-]*enterprise[\s_-]*linux|rhel)[^0-9]*(\d+)")),
    ("rocky-linux", re.compile(r"rocky[^0-9]*(\d+)")),
    ("almalinux", re.compile(r"alma[\s_-]*linux[^0-9]*(\d+)")),
    ("oracle-linux", re.compile(r"oracle[\s_-]*linux[^0-9]*(\d+)|\bol(\d)\b")),
    ("amazon-linux", re.compile(r"(?:amazon[\s_-]*linux[\s_-]*|amzn|al)(2023|2018\.03|2)\b")),
    ("sles", re.compile(r"(?:sles|suse[\s_-]*linux[\s_-]*enterprise(?:[\s_-]*server)?)[^0-9]*(\d+)"
                        r"(?:(?:[\s_.-]*sp|\.)(\d+))?")),
    ("fedora", re.compile(r"fedora[^0-9]*(\d+)")),
    ("debian", re.compile(r"debian[^0-9]*(\d+)")),
)
_CODENAMES = {"ubuntu": re.compile(r"\b(jammy|noble|focal|bionic|xenial|resolute|questing|plucky|oracular)\b"),
              "debian": re.compile(r"\b(trixie|bookworm|bullseye|buster|stretch)\b")}


def _edition(text: str) -> str | None:
    t = text.casefold()
    if "iot" in t:
        return "iot"
    if "ltsc" in t or "ltsb" in t:
        return "ltsc"
    if "enterprise" in t or "education" in t:
        return "enterprise"
    if re.search(r"\b(pro|home|professional)\b", t):
        return "pro"
    return None


def _windows(text: str, kind: str | None, catalog: OsCatalog) -> OsId:
    edition = _edition(text)
    server = "server" in text.casefold() or (kind or "") in SERVER_KINDS
    m = _SERVER_YEAR.search(text)
    if m:
        return OsId("windows-server", m.group(1) + (" R2" if m.group(2) else ""))
    m = _WIN_BUILD.search(text) or _BARE_BUILD.search(text)
    build = m.group(1) if m else None
    lts = _LTSC.search(text)
    if build is None and lts:
        build = _LTSC_BUILD[lts.group(1)]
    if build is not None:
        client = catalog.by_build("windows", build)
        server_rel = catalog.by_build("windows-server", build)
        if server_rel and (server or client is None):
            return OsId("windows-server", server_rel)
        if client:
            return OsId("windows", client, edition)
        return OsId("windows", None, edition, f"unknown Windows build {build}")
    product = _WIN_PRODUCT.search(text.replace("Windows10", "Windows 10").replace("Windows11", "Windows 11"))
    u = _UPDATE.search(text)
    update = u.group(1).upper() if u else None
    if update and product:
        return OsId("windows", f"{product.group(1)} {update}", edition)
    if update:
        names = catalog.releases_named("windows", update)
        if server and names:
            builds = {ln.build for ln in catalog.family_lines("windows") if ln.release in names and ln.build}
            rel = next((r for b in sorted(b for b in builds if b) if (r := catalog.by_build("windows-server", b))),
                       None)
            if rel:
                return OsId("windows-server", rel)
        if len(names) == 1:
            return OsId("windows", names[0], edition)
        if len(names) > 1:
            return OsId("windows", None, edition, f"{update} is a feature update of {' and '.join(names)}: map the "
                        "product (e.g. Defender osPlatform) or the build into os_version")
        return OsId("windows", None, edition, f"unknown Windows feature update {update}")
    if product:
        if product.group(1) in ("7", "8.1"):
            return OsId("windows", {"7": "7 SP1", "8.1": "8.1"}[product.group(1)], edition)
        return OsId("windows", None, edition, f"Windows {product.group(1)} without a feature update or build: map "
                    "the build (e.g. CrowdStrike os_build, 10.0.xxxxx) into os_version")
    return OsId("windows", None, edition, "no Windows build or version in the text")


def _apple(family: str, version: str, catalog: OsCatalog) -> OsId:
    m = re.search(r"(\d+)(?:\.(\d+))?", version)
    if m:
        major = int(m.group(1))
        return OsId(family, f"10.{m.group(2) or 0}" if family == "macos" and major == 10 else str(major))
    for word in re.findall(r"[A-Za-z]+", version):
        rel = catalog.by_label(family, word)
        if rel:
            return OsId(family, rel)
    return OsId(family, None, reason=f"no {family} version in {version!r}")


def _chromeos(version: str) -> OsId:
    m = re.search(r"(\d+)", version)
    if m and 60 <= int(m.group(1)) < 1000:
        return OsId("chromeos", m.group(1))
    return OsId("chromeos", None, reason=f"{version!r} is not a Chrome milestone (e.g. 125.0.6422.154)")


def _linux(text: str, catalog: OsCatalog) -> OsId:
    t = text.casefold()
    for family, pattern in _LINUX:
        m = pattern.search(t)
        if not m:
            continue
        groups = [g for g in m.groups() if g is not None]
        if family == "ubuntu":
            return OsId(family, f"{groups[0]}.{groups[1]}")
        if family == "sles":
            if len(groups) < 2:
                return OsId(family, None, reason=f"SLES {groups[0]} without a service pack")
            return OsId(family, f"{groups[0]}.{groups[1]}")
        return OsId(family, groups[0])
    for family, pattern in _CODENAMES.items():
        m = pattern.search(t)
        if m:
            return OsId(family, catalog.by_label(family, m.group(1)))
    m = re.search(r"\b(\d{2})_(\d{2})-lts", t)  # an Azure Ubuntu image SKU: 22_04-lts-gen2
    if m:
        return OsId("ubuntu", f"{m.group(1)}.{m.group(2)}")
    return OsId("linux", None, reason="no distribution and release in the version (e.g. 'Ubuntu 22.04')")


def identify(os_name: Any, os_version: Any, kind: str | None, catalog: OsCatalog) -> OsId:
    """The family and release of a device's OS (see the module docstring)."""
    name = str(os_name or "").strip()
    version = str(os_version or "").strip()
    text = f"{name} {version}".strip()
    low = text.casefold()
    if not version:
        return OsId(name.casefold() or None, None, reason="no os_version reported")
    if "windows" in low:
        return _windows(text, kind, catalog)
    if re.search(r"\b(mac ?os|os ?x|darwin|mac)\b", low):
        return _apple("macos", version, catalog)
    for word, family in _MOBILE.items():
        if re.search(rf"\b{word}\b", low):
            return _apple(family, version, catalog) if family != "android" else _android(version, catalog)
    if "chrome" in low:
        return _chromeos(version)
    return _linux(text, catalog)


def _android(version: str, catalog: OsCatalog) -> OsId:
    m = re.search(r"(\d+)(?:\.(\d+))?", version)
    if not m:
        return OsId("android", None, reason=f"no Android version in {version!r}")
    minor = f"{m.group(1)}.{m.group(2)}" if m.group(2) else None
    if minor and ("android", minor, None) in catalog.lines:
        return OsId("android", minor)
    return OsId("android", m.group(1))


@dataclass(frozen=True)
class OsSupport:
    """A device's OS support at a date."""

    ident: OsId
    line: OsLine | None
    end: date | None  # the end that counts (standard, or extended when configured)
    days_left: int | None  # negative: past its end
    note: str


class SupportCache:
    """os_support for many devices: devices share a few distinct OS strings, so each is worked out once."""

    def __init__(self, settings: Settings, catalog: OsCatalog, today: date) -> None:
        self.settings, self.catalog, self.today = settings, catalog, today
        self._memo: dict[tuple[str, str, bool], OsSupport] = {}

    def get(self, os_name: Any, os_version: Any, kind: str | None) -> OsSupport:
        key = (str(os_name or ""), str(os_version or ""), (kind or "") in SERVER_KINDS)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = os_support(self.settings, self.catalog, os_name, os_version, kind, self.today)
        return hit


def os_support(settings: Settings, catalog: OsCatalog, os_name: Any, os_version: Any, kind: str | None,
               today: date) -> OsSupport:
    """Identify a device's OS and say when its support ends, relative to `today`."""
    cfg = settings.lifecycle.os
    ident = identify(os_name, os_version, kind, catalog)
    line, note = catalog.line(ident, cfg.windows_edition)
    if line is None:
        return OsSupport(ident, None, None, None, note)
    end = line.extended_end if cfg.support == "extended" and line.extended_end else line.end
    return OsSupport(ident, line, end, (end - today).days if end else None, note)
