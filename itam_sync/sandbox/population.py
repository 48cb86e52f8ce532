"""The sandbox's seeded, messy population of people and devices, consistent across vendors.

One `Population` is the truth every fake vendor API reads from, so the same laptop shows up in Jamf,
CrowdStrike and Okta with the same serial (in different spellings), the same MACs (in different formats)
and the same user (by e-mail in different cases). The mess is deliberate and seeded: junk serials that only
join by MAC, a USB-C dock MAC shared by several laptops, devices reassigned in the MDM but not in the IdP,
reinstalled EDR agents, terminated employees still active in Okta, records no mapping can key.

`identity_mess=True` adds the cases identity resolution finds hardest (bench/bench_identity.py uses it; the
default population is unchanged): more placeholder serials (some reported by the MDM too), laptops behind
shared USB-C docks whose Ethernet MAC no built-in list knows, duplicate MDM enrolments, re-imaged laptops (a
new Entra device id beside the stale enrolment, a second Defender machine and EDR agent, an old Entra device),
a shared default host name, e-mail aliases, renamed people, and a few contractors whose IdP address is a
variant of their name ("aberg7@" for "anna.berg7@") and nothing else joins them. `extra_records()` says which
device each of the extra records describes.

The population moves through numbered versions. `advance()` changes ~2% of devices and people (new OS
version, new owner, new title), and, unless `content_only`, adds a few devices and people and removes a few
devices. Every version is a pure function of (seed, version number, the kinds of the advances so far), so
`set_version()` can go back and forth and two sandboxes with the same seed serve the same records.

Timestamps: a record unchanged since version 0 carries a time in the 30 days before `T0`; a record changed
at version v carries `T0 + v hours` (plus a per-record offset of under an hour), so incremental filters
("modified since the saved cursor") see exactly the records changed since.
"""

from __future__ import annotations

import functools
import hashlib
import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from itam_sync import clock

# The population's epoch: 34 days before today (itam_sync.clock), at midnight UTC, so ages, stale devices and
# terminations tell the same story on any date. Fixed for the process (a sandbox serves one consistent world).
T0 = int(datetime.combine(clock.today() - timedelta(days=34), time(), UTC).timestamp())
EXTRA = 1 << 24  # item k = variant * EXTRA + device index: the extra records of the messy population
STALE, DUPLICATE = 1, 2  # variants: a re-imaged device's stale registration; a duplicate MDM enrolment
DOCK_MAC = "00e04c680a11"  # a Realtek USB-C dock NIC: reported by every laptop that plugs into it
JUNK_SERIALS = ("To Be Filled By O.E.M.", "System Serial Number", "Default string", "0")

FIRST = ("Anna", "Bob", "Carla", "David", "Eva", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kim", "Lars",
         "Maja", "Nils", "Olga", "Per", "Quinn", "Rosa", "Sven", "Tove", "Ulf", "Vera", "Wei", "Xenia",
         "Yusuf", "Zoe")
LAST = ("Berg", "Li", "Ek", "Svensson", "Novak", "Haddad", "Lund", "Moreau", "Garcia", "Kowalski", "Okafor",
        "Tanaka", "Nilsson", "Rossi", "Dubois", "Schmidt", "Olsen", "Virtanen", "Costa", "Murphy")
DEPARTMENTS = ("Finance", "Engineering", "Sales", "Marketing", "IT", "People", "Legal", "Support", "Operations")
TITLES = ("Analyst", "Engineer", "Senior Engineer", "Manager", "Director", "Specialist", "Coordinator", "Lead")
LOCATIONS = ("Stockholm HQ", "Lisbon", "Berlin", "New York", "Remote")
# (Okta app name, label, share of people assigned)
APPS = (("slack", "Slack", 0.9), ("zoomus", "Zoom", 0.6), ("github", "GitHub", 0.25),
        ("atlassian", "Atlassian", 0.4), ("salesforce", "Salesforce", 0.15), ("figma", "Figma", 0.08),
        ("notion", "Notion", 0.3), ("miro", "Miro", 0.1), ("1password", "1Password", 0.95), ("box", "Box", 0.05),
        ("docusign", "DocuSign", 0.04), ("workday_app", "Workday", 0.02))
# (Microsoft SKU part number, SKU id, share of people licensed)
SKUS = (("SPE_E3", "05e9a617-0261-4cee-bb44-138d3ef5d965", 0.8),
        ("SPE_E5", "06ebc4ee-1bb5-47dd-8120-11324bc54e06", 0.1),
        ("POWER_BI_PRO", "f8a1db68-be16-40ed-86d5-cb42ce701560", 0.2),
        ("VISIOCLIENT", "c5928f49-12ba-48f7-ada3-0d743a3601d5", 0.03),
        ("PROJECTPREMIUM", "09015f9f-377f-4538-bbb5-f75ceb09358a", 0.02),
        ("FLOW_FREE", "f30db892-07e9-47e9-837c-80727f46fd3d", 0.3))

# (kind, platform, manufacturer, model, weight)
MODELS = (
    ("laptop", "mac", "Apple", "MacBook Pro (14-inch, 2023)", 22),
    ("laptop", "mac", "Apple", "MacBook Air (M2, 2022)", 10),
    ("desktop", "mac", "Apple", "Mac mini (M2, 2023)", 3), ("desktop", "mac", "Apple", "iMac (24-inch, 2023)", 2),
    ("laptop", "windows", "Dell", "Latitude 7440", 12), ("laptop", "windows", "Lenovo", "ThinkPad T14 Gen 4", 10),
    ("laptop", "windows", "HP", "EliteBook 840 G8", 6), ("desktop", "windows", "Dell", "OptiPlex 7010", 6),
    ("desktop", "windows", "Generic", "Whitebox Z790", 2),
    ("mobile", "ios", "Apple", "iPhone 14", 9), ("tablet", "ipados", "Apple", "iPad (10th generation)", 4),
    ("mobile", "android", "Samsung", "Galaxy S23", 3),
    ("server", "windows", "Dell", "PowerEdge R650", 3),
    ("vm", "windows", "VMware, Inc.", "VMware Virtual Platform", 3),
    ("vm", "linux", "VMware, Inc.", "VMware Virtual Platform", 2), ("cloud", "linux", "Amazon EC2", "t3.medium", 3),
)
OUI = {"Apple": 0xA483E7, "Dell": 0x3C18A0, "Lenovo": 0x8C1645, "HP": 0xA4B1C2, "Generic": 0x18C04D,
       "Samsung": 0x5C0A5B, "VMware, Inc.": 0x005056, "Amazon EC2": 0x0A1B2C}
OS_VERSIONS = {"mac": ("14.5", "14.6.1", "15.0", "15.1"), "windows": ("10.0.22631.3737", "10.0.22631.4037",
               "10.0.26100.2033"), "ios": ("17.5.1", "17.6", "18.1"), "ipados": ("17.5.1", "18.1"),
               "android": ("13", "14"), "linux": ("Amazon Linux 2023", "Ubuntu 22.04")}

# Which vendors see which platform, with what probability (one company's messy, overlapping tooling).
COVERAGE = {
    "mac": {"jamf": 0.97, "kandji": 0.35, "crowdstrike": 0.9, "sentinelone": 0.25, "okta": 0.6},
    "windows": {"intune": 0.95, "defender": 0.9, "entra": 0.95, "crowdstrike": 0.9, "sentinelone": 0.3,
                "okta": 0.5},
    "ios": {"jamf": 0.75, "intune": 0.4, "kandji": 0.15, "entra": 0.5, "okta": 0.7},
    "ipados": {"jamf": 0.9, "kandji": 0.2, "entra": 0.3, "okta": 0.4},
    "android": {"intune": 0.95, "entra": 0.8, "okta": 0.6},
    "linux": {"crowdstrike": 1.0, "sentinelone": 0.4, "defender": 0.5},
}
VENDORS = ("okta", "entra", "bamboohr", "intune", "defender", "jamf", "kandji", "crowdstrike", "sentinelone")


@functools.lru_cache(maxsize=1 << 17)
def iso(ts: float) -> str:
    """Epoch seconds -> ISO-8601 UTC with a Z (cached: record timestamps repeat across pages and vendors)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=1 << 18)
def _hex(seed: int, *parts: object, n: int = 32) -> str:
    """A stable pseudo-random hex string for (seed, parts): vendor ids, UUIDs (cached: pages are re-served)."""
    return hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=max(8, (n + 1) // 2)).hexdigest()[:n]


def extra_id(seed: int, ident: str, variant: int, i: int) -> str:
    """The vendor id of an extra record (a stale or duplicate registration): its own, never a real one's."""
    if ident == "falcon":
        return _hex(seed, "falcon-extra", variant, i, n=24) + f"{i | 0x80000000:08x}"
    if ident == "defender":
        return _hex(seed, "defender-extra", variant, i, n=40)
    return _uuid(_hex(seed, f"{ident}-extra", variant, i))


def _uuid(h: str) -> str:
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _b36(n: int, width: int) -> str:
    digits = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    out = ""
    while n:
        n, r = divmod(n, len(digits))
        out = digits[r] + out
    return out.rjust(width, "0")


@dataclass(slots=True)
class Person:
    """One person, as every HR/IdP source should agree on them (each vendor spells it its own way)."""

    idx: int
    first: str
    last: str
    employee_id: str
    email: str  # canonical: lower case
    department: str
    title: str
    location: str
    manager: int  # person idx, -1 for none
    hire_date: str
    contractor: bool  # in Okta and Entra, not in the HR system
    in_entra: bool
    email_style: int  # which spelling each vendor uses
    status0: str  # active | suspended | terminated when created
    okta_lags: bool  # terminated in HR but still ACTIVE in Okta
    apps: int  # bit mask of APPS assigned
    skus: int  # bit mask of SKUS assigned
    old_email: str = ""  # renamed: the address the IdP still has (messy population)
    alias: str = ""  # another address of theirs (IdP login, Entra otherMails)
    variant_email: str = ""  # the IdP knows them only by a variant of their name ("aberg7@")

    @property
    def okta_id(self) -> str:
        return f"00u{self.idx:010d}sbx"

    @property
    def bamboo_id(self) -> str:
        return str(1000 + self.idx)


@dataclass(slots=True)
class Device:
    """One physical or virtual machine, with every identifier some vendor reports for it."""

    idx: int
    kind: str
    platform: str
    manufacturer: str
    model: str
    serial: str
    mac: str  # 12 hex digits: the primary NIC
    mac2: str  # second NIC (Wi-Fi on a laptop), may be ""
    hostname: str
    owner: int  # person idx, -1 for none (servers)
    prev_owner: int  # owner the IdP still shows (reassigned device), else == owner
    entra_device_id: str  # "" when not registered in Entra
    udid: str
    imei: str
    instance_id: str
    vendors: frozenset[str]
    junk_serial: str  # the placeholder some agents report instead of the serial, or ""
    dock: bool  # reports the shared dock MAC
    s1_reinstalled: bool  # SentinelOne lists an old decommissioned agent too
    bad: bool  # some vendors send a record for it that cannot be keyed
    enrolled: int  # epoch seconds
    dock_mac: str = ""  # the shared dock it reports as its connection MAC (messy population)
    reimaged: bool = False  # a stale registration beside the current one
    old_entra: str = ""  # the Entra device id of that stale registration
    duplicate: bool = False  # the MDM lists it twice
    mdm_junk: bool = False  # the MDM reports its placeholder serial too


@dataclass
class Population:
    """People and devices at a version; thread-safe reads while one writer advances it (under `lock`)."""

    seed: int = 1
    n_devices: int = 1000
    n_people: int = 0  # default: two thirds of the devices
    identity_mess: bool = False  # the extra identity cases (see the module docstring)
    people: list[Person] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    version: int = 0
    kinds: list[bool] = field(default_factory=list)  # content_only flag of advance 1, 2, ...
    epoch: int = 0  # bumped on every change: caches of derived listings key on it (versions can repeat)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        if self.n_people <= 0:
            self.n_people = max(10, self.n_devices * 2 // 3)
        self._set(0)

    # -- versions -----------------------------------------------------------------------------------
    def advance(self, content_only: bool = False) -> int:
        """Move to the next version (see the module docstring); returns it."""
        with self.lock:
            del self.kinds[self.version:]
            self.kinds.append(content_only)
            self._apply(self.version + 1)
            return self.version

    def set_version(self, version: int, forget_history: bool = False) -> None:
        """Rebuild the population as it is at `version` (advances past the known ones are full advances).

        The kinds of past advances (content-only or not) are kept, so going back and forth replays the same
        history; `forget_history` drops them (every advance from here on is a full one unless said otherwise).
        """
        with self.lock:
            if forget_history:
                self.kinds.clear()
            while len(self.kinds) < version:
                self.kinds.append(False)
            self._set(version)

    def _set(self, version: int) -> None:
        # Generated records are a pure function of (seed, index): keep them, drop only later additions.
        if not self.devices:
            self.devices = [self._device(i) for i in range(self.n_devices)]
            self.people = [self._person(i) for i in range(self.n_people)]
        del self.devices[self.n_devices:], self.people[self.n_people:]
        nd, np_ = self.n_devices, self.n_people
        self.dev_rev, self.dev_mod, self.dev_removed = [0] * nd, [0] * nd, [0] * nd
        self.person_rev, self.person_mod, self.person_term = [0] * np_, [0] * np_, [0] * np_
        self.dev_created, self.person_created = [0] * nd, [0] * np_
        self.version = 0
        self.epoch += 1
        for v in range(1, version + 1):
            self._apply(v)

    def _apply(self, v: int) -> None:
        rng = random.Random(f"{self.seed}:advance:{v}")
        content_only = self.kinds[v - 1] if v - 1 < len(self.kinds) else False
        live = [d.idx for d in self.devices if not self.dev_removed[d.idx]]
        for i in rng.sample(live, max(1, len(live) // 50)):
            self.dev_rev[i] += 1
            self.dev_mod[i] = v
        people = range(len(self.people))
        for i in rng.sample(people, max(1, len(self.people) // 50)):
            self.person_rev[i] += 1
            self.person_mod[i] = v
        if not content_only:
            # New starters and their laptops; a few leavers; a few devices retired. Only version-0 devices
            # are retired, so a device that appears later never disappears again (histories converge).
            for _ in range(max(1, len(self.people) // 300)):
                i = len(self.people)
                self.people.append(self._person(i))
                for arr, value in ((self.person_rev, 0), (self.person_mod, v), (self.person_term, 0),
                                   (self.person_created, v)):
                    arr.append(value)
            for i in rng.sample(range(self.n_people), max(1, self.n_people // 300)):
                if not self.person_term[i] and self.people[i].status0 == "active":
                    self.person_term[i] = v
                    self.person_mod[i] = v
            for _ in range(max(1, len(self.devices) // 200)):
                i = len(self.devices)
                self.devices.append(self._device(i))
                for arr, value in ((self.dev_rev, 0), (self.dev_mod, v), (self.dev_removed, 0),
                                   (self.dev_created, v)):
                    arr.append(value)
            old = [i for i in range(self.n_devices) if not self.dev_removed[i]]
            for i in rng.sample(old, max(1, self.n_devices // 500)):
                self.dev_removed[i] = v
        self.version = v
        self.epoch += 1

    # -- per-record state ---------------------------------------------------------------------------
    def device_live(self, i: int) -> bool:
        return not self.dev_removed[i]

    def device_ts(self, i: int) -> int:
        """When the device last changed (its vendors' "modified" / "last seen" time)."""
        v = self.dev_mod[i]
        return T0 - 60 - (i * 7919) % (30 * 86400) if v == 0 else T0 + v * 3600 + (i * 13) % 3000

    def device_owner(self, i: int) -> int:
        """The current owner (what the MDM says): changes hands on every third revision."""
        d = self.devices[i]
        rev = self.dev_rev[i]
        if d.owner < 0 or rev < 2:
            return d.owner
        return (d.owner + (rev + 1) // 3 * 7919) % len(self.people)

    def device_os(self, i: int) -> str:
        versions = OS_VERSIONS[self.devices[i].platform]
        return versions[(i + self.dev_rev[i]) % len(versions)]

    def person_ts(self, i: int) -> int:
        v = self.person_mod[i]
        return T0 - 60 - (i * 104729) % (60 * 86400) if v == 0 else T0 + v * 3600 + (i * 17) % 3000

    def person_status(self, i: int) -> str:
        return "terminated" if self.person_term[i] else self.people[i].status0

    def person_title(self, i: int) -> str:
        p = self.people[i]
        rev = self.person_rev[i]
        return p.title if rev == 0 else TITLES[(TITLES.index(p.title) + rev) % len(TITLES)]

    def person_department(self, i: int) -> str:
        p = self.people[i]
        rev = self.person_rev[i]
        return p.department if rev < 2 else DEPARTMENTS[(DEPARTMENTS.index(p.department) + rev // 2) % len(DEPARTMENTS)]

    def term_date(self, i: int) -> str:
        v = self.person_term[i]
        if v:
            return iso(T0 + v * 3600)[:10]
        return iso(T0 - 124 * 86400)[:10] if self.people[i].status0 == "terminated" else ""  # ~5 months ago

    # -- generation ---------------------------------------------------------------------------------
    def _person(self, i: int) -> Person:
        rng = random.Random(f"{self.seed}:person:{i}")
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first}.{last}{i}@example.com".lower()
        status = "terminated" if rng.random() < 0.03 else "suspended" if rng.random() < 0.01 else "active"
        apps = sum(1 << j for j, (_, _, share) in enumerate(APPS) if rng.random() < share)
        skus = sum(1 << j for j, (_, _, share) in enumerate(SKUS) if rng.random() < share)
        person = Person(
            idx=i, first=first, last=last, employee_id=f"E{100000 + i}", email=email,
            department=rng.choice(DEPARTMENTS), title=rng.choice(TITLES), location=rng.choice(LOCATIONS),
            manager=-1 if i < 8 else rng.randrange(0, max(1, i // 8)),
            hire_date=f"20{rng.randint(15, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            contractor=rng.random() < 0.05, in_entra=rng.random() < 0.93, email_style=rng.randrange(10),
            status0=status, okta_lags=status == "terminated" and rng.random() < 0.3, apps=apps, skus=skus)
        if self.identity_mess:
            self._mess_person(person)
        return person

    def _mess_person(self, p: Person) -> None:
        """Renamed people, e-mail aliases and a few contractors known to the IdP by a name variant only (their
        own random stream: the default population's draws are unchanged)."""
        rng = random.Random(f"{self.seed}:mess-person:{p.idx}")
        roll = rng.random()
        if roll < 0.012:  # renamed (married): HR and Entra have the new name, the IdP the old address
            new_last = rng.choice([n for n in LAST if n != p.last])
            p.old_email, p.last = p.email, new_last
            p.email = f"{p.first}.{new_last}{p.idx}@example.com".lower()
        elif roll < 0.06:
            p.alias = f"{p.first[0]}{p.last}{p.idx}@corp.example.com".lower()
        elif p.contractor and p.in_entra and roll > 0.9:
            p.variant_email = f"{p.first[0]}{p.last}{p.idx}@example.com".lower()

    def _device(self, i: int) -> Device:
        rng = random.Random(f"{self.seed}:device:{i}")
        kind, platform, manufacturer, model, _ = rng.choices(MODELS, weights=[m[4] for m in MODELS])[0]
        h = _hex(self.seed, "dev", i)
        oui = OUI[manufacturer]
        # Multiplying by an odd constant permutes 24-bit numbers: every device gets its own NIC suffix.
        mac = f"{oui:06x}{(i * 0x9E3779 + 1) & 0xFFFFFF:06x}"
        mac2 = f"{(oui + 1) & 0xFFFFFF:06x}{(i * 0x7F4A7D + 3) & 0xFFFFFF:06x}" if kind == "laptop" else ""
        if manufacturer == "Apple":
            serial = f"C02{_b36(i, 5)}{h[:4].upper()}"
        elif manufacturer in ("Dell", "Generic"):
            serial = f"{_b36(i, 4)}{h[:3].upper()}"
        elif manufacturer == "Lenovo":
            serial = f"PF{_b36(i, 5)}{h[4:5].upper()}"
        elif manufacturer == "VMware, Inc.":
            b = h[:32]
            serial = "VMware-" + " ".join(b[j:j + 2] for j in range(0, 16, 2)) + "-" + " ".join(
                b[j:j + 2] for j in range(16, 32, 2))
        elif manufacturer == "Amazon EC2":
            serial = f"ec2{h[3:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        else:
            serial = f"R5C{_b36(i, 5)}{h[:3].upper()}"
        cover = COVERAGE["linux" if kind in ("vm", "cloud") and platform == "linux" else platform]
        if kind in ("server", "vm") and platform == "windows":
            cover = {"crowdstrike": 0.95, "defender": 0.8, "sentinelone": 0.3}
        vendors = frozenset(v for v, p in cover.items() if rng.random() < p) or frozenset({"crowdstrike"})
        people = max(1, self.n_people)
        owner = -1 if kind in ("server", "vm", "cloud") else i % people
        reassigned = owner >= 0 and rng.random() < 0.03
        prev_owner = (owner + 17) % people if reassigned else owner
        prefix = {"Apple": "LT-MAC", "Samsung": "AND"}.get(manufacturer, "LT" if kind == "laptop" else "WS")
        if kind in ("server", "vm"):
            prefix = "SRV"
        hostname = f"ip-10-0-{i // 250 % 250}-{i % 250}" if kind == "cloud" else f"{prefix}-{i:06d}"
        junk = rng.choice(JUNK_SERIALS) if model == "Whitebox Z790" or rng.random() < 0.01 else ""
        device = Device(
            idx=i, kind=kind, platform=platform, manufacturer=manufacturer, model=model, serial=serial, mac=mac,
            mac2=mac2, hostname=hostname, owner=owner, prev_owner=prev_owner,
            entra_device_id=_uuid(_hex(self.seed, "entra", i)) if platform in ("windows", "ios", "ipados", "android")
            and kind not in ("server", "vm") else "",
            udid=(f"00008110-{h[:16].upper()}" if platform in ("ios", "ipados") else _uuid(h).upper())
            if manufacturer == "Apple" else "",
            imei=f"35{i:012d}{rng.randint(0, 9)}" if kind == "mobile" else "",
            instance_id=f"i-0{h[:16]}" if kind == "cloud" else "",
            vendors=vendors, junk_serial=junk, dock=kind == "laptop" and rng.random() < 0.01,
            s1_reinstalled=rng.random() < 0.05, bad=i % 997 == 5,
            enrolled=T0 - 86400 * (30 + (i * 31) % 700))
        if self.identity_mess:
            self._mess_device(device)
        return device

    def dock_macs(self) -> list[str]:
        """The shared USB-C docks of the messy population: an OUI no built-in non-matching list knows."""
        return [f"3c7c3f{(k * 0x2F1D + 0x101) & 0xFFFFFF:06x}" for k in range(max(2, self.n_devices // 80))]

    def _mess_device(self, d: Device) -> None:
        """Placeholder serials, shared docks, re-imaged and duplicate enrolments (own random stream)."""
        rng = random.Random(f"{self.seed}:mess-device:{d.idx}")
        pc = d.kind in ("laptop", "desktop")
        if pc and not d.junk_serial and d.manufacturer != "Apple" and rng.random() < 0.08:
            d.junk_serial = rng.choice(JUNK_SERIALS)
        d.mdm_junk = bool(d.junk_serial) and d.platform == "windows" and rng.random() < 0.5
        if d.mdm_junk:
            # Custom builds whose firmware has no serial run no Okta Verify: an Okta device of one would carry
            # nothing but the placeholder, a record nothing could ever join.
            d.vendors = d.vendors - {"okta"}
        if d.kind == "laptop" and rng.random() < 0.07:
            docks = self.dock_macs()
            d.dock_mac = docks[rng.randrange(len(docks))]
        if pc and d.platform == "windows" and d.entra_device_id and not d.mdm_junk and rng.random() < 0.03:
            d.reimaged = True
            d.old_entra = _uuid(_hex(self.seed, "entra-old", d.idx))
        if d.platform == "windows" and "intune" in d.vendors and rng.random() < 0.01:
            d.duplicate = True
        if pc and rng.random() < 0.02:  # never renamed after imaging
            d.hostname = "DESKTOP-SETUP" if d.platform == "windows" else "MacBook-Pro"
        if d.platform in ("ios", "ipados", "android") and "intune" not in d.vendors:
            # A phone or tablet is registered in Entra through the MDM's company portal: without Intune there is
            # no Entra device (one would carry an id nothing else knows).
            d.vendors = d.vendors - {"entra"}

    def extras(self, vendor: str) -> list[int]:
        """The extra records a vendor lists for the messy population, as items (variant * EXTRA + index)."""
        if not self.identity_mess:
            return []
        with self.lock:
            out = []
            for d in self.devices:
                if self.dev_removed[d.idx] or vendor not in d.vendors:
                    continue
                if d.reimaged and vendor in ("intune", "defender", "crowdstrike", "entra"):
                    out.append(STALE * EXTRA + d.idx)
                if d.duplicate and vendor == "intune":
                    out.append(DUPLICATE * EXTRA + d.idx)
            return out

    def extra_records(self) -> dict[tuple[str, str, str], int]:
        """(connector, stream, source key) -> device index of every extra record (the benchmark's truth)."""
        out: dict[tuple[str, str, str], int] = {}
        for vendor, stream, ident in (("intune", "managed_devices", "intune"), ("defender", "machines", "defender"),
                                      ("entra", "devices", "entra-object"), ("crowdstrike", "hosts", "falcon")):
            for k in self.extras(vendor):
                variant, i = divmod(k, EXTRA)
                out[(vendor, stream, extra_id(self.seed, ident, variant, i))] = i
        return out

    # -- views --------------------------------------------------------------------------------------
    def devices_of(self, vendor: str, platforms: tuple[str, ...] | None = None) -> list[int]:
        """Indexes of the live devices `vendor` reports (optionally only some platforms), in index order."""
        with self.lock:
            return [d.idx for d in self.devices if vendor in d.vendors and not self.dev_removed[d.idx]
                    and (platforms is None or d.platform in platforms)]

    def people_of(self, vendor: str) -> list[int]:
        """Indexes of the people `vendor` lists (HR: employees only; Entra: most; Okta: everyone)."""
        with self.lock:
            if vendor == "bamboohr":
                return [p.idx for p in self.people if not p.contractor]
            if vendor == "entra":
                return [p.idx for p in self.people if p.in_entra]
            return [p.idx for p in self.people]

    def email_as(self, i: int, vendor: str) -> str:
        """The person's e-mail as `vendor` spells it: case and stray spaces differ between systems."""
        p = self.people[i]
        style = (p.email_style + VENDORS.index(vendor)) % 10
        if style < 2:
            return f"{p.first}.{p.last}{i}@Example.com" + (" " if style == 1 else "")
        if style == 2:
            return p.email.upper()
        return p.email
