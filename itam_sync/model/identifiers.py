"""Normalisers for identifying values (serials, MACs, UUIDs, host names, e-mails, IMEIs) and their junk lists.

These run on every source record (hundreds of thousands per run), so they are plain functions built on
`str` methods and set look-ups; regular expressions and `ipaddress` are only reached on the rare paths.

Every normaliser takes whatever a source sent (usually `str`, sometimes `int` or None) and returns the
canonical form or None. None means "this value says nothing": absent, malformed, or a junk placeholder
that many devices share (e.g. "To Be Filled By O.E.M."). Junk must never become a match key, or identity
resolution would join unrelated machines.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable

log = logging.getLogger(__name__)

_HEX = "0123456789abcdef"

# --------------------------------------------------------------------------------------------- serials

# Placeholders written by firmware, imaging tools and agents instead of a real serial. Stored upper-case
# with single spaces for readability; matching ignores case and all whitespace (see `_squash`).
JUNK_SERIALS: frozenset[str] = frozenset({
    "0", "00000000", "NONE", "N/A", "NA", "N.A.", "NULL", "NIL", "UNKNOWN", "UNDEFINED", "EMPTY", "-",
    "DEFAULT", "DEFAULT STRING", "TO BE FILLED BY O.E.M.", "O.E.M.", "OEM", "SYSTEM SERIAL NUMBER",
    "CHASSIS SERIAL NUMBER", "BASE BOARD SERIAL NUMBER", "BASEBOARD SERIAL NUMBER", "SERIAL NUMBER",
    "SERIALNUMBER", "SERIAL", "NOT SPECIFIED", "NOT APPLICABLE", "NOT AVAILABLE", "NOT PROVIDED",
    "NOT SET", "INVALID", "123456789", "0123456789", "1234567890", "12345678", "0123456789ABCDEF",
    "SYSTEM SERIAL#", "TO BE FILLED BY OEM", "NO SERIAL", "NONE PROVIDED",
})
# Deliberately NOT junk: "VMware-42 1a ..." and "Parallels-..." are real per-VM serials.


def _squash(s: str) -> str:
    """Upper-case `s` and remove all whitespace: the form junk is compared in."""
    return "".join(s.split()).upper()


_JUNK_SERIAL_KEYS: frozenset[str] = frozenset(_squash(s) for s in JUNK_SERIALS)
# Separators that do not make a serial "real": "0-0-0-0" and "..." are as empty as "0000".
_SERIAL_PUNCT = str.maketrans("", "", "-._/:#")


def normalize_serial(v: object) -> str | None:
    """Serial number: trimmed, surrounding quotes removed, whitespace removed, upper case; None for junk.

    Internal dashes are kept (they are part of some vendors' serials). Junk is the `JUNK_SERIALS` list
    (compared case- and whitespace-insensitively), anything that is only zeros/punctuation, and any
    string of three or more copies of one character ("XXXXXXX", "111").
    """
    if isinstance(v, str):
        s = v
    elif isinstance(v, int) and not isinstance(v, bool):
        s = str(v)
    else:
        return None
    s = s.strip().upper()
    if s.isalnum():  # the common case: nothing to remove, no punctuation to see through
        core = s
    else:
        s = "".join(s.strip("\"'").split())
        core = s.translate(_SERIAL_PUNCT)
    if not core.strip("0") or s in _JUNK_SERIAL_KEYS or (len(s) >= 3 and s.count(s[0]) == len(s)):
        return None
    return s


def is_junk_serial(v: object) -> bool:
    """True when `v` is not a usable serial (missing, blank or a junk placeholder in any spelling).

    Prefer this to testing membership in `JUNK_SERIALS`: that list is written readably ("DEFAULT
    STRING") while normalised serials have no spaces, and it does not cover the all-zero/repeat rules.
    """
    return normalize_serial(v) is None


# ------------------------------------------------------------------------------------------------ MACs

# OUIs (and a few whole addresses) whose MACs say nothing about which physical machine this is: the
# address belongs to a hypervisor's virtual NIC, a VPN adapter, or a USB/dock Ethernet adapter that
# moves between laptops. Identity resolution must never join two devices on one of these.
# This is the built-in default; deployments extend it through configuration (pass their own set to
# `mac_is_matchable`, built with `mac_prefixes`). Prefixes are 4-12 lower-case hex digits.
NON_MATCHING_MAC_PREFIXES: frozenset[str] = frozenset({
    # Hypervisor virtual NICs
    "005056", "000c29", "000569", "001c14",  # VMware
    "080027",  # VirtualBox
    "00155d",  # Microsoft Hyper-V
    "001c42",  # Parallels
    "00163e",  # Xen
    "525400",  # QEMU/KVM (also locally administered)
    "0242",    # Docker bridge (also locally administered)
    # VPN virtual adapters with one fixed address on every machine
    "00059a3c7a00",  # Cisco AnyConnect virtual miniport
    # USB / dock Ethernet adapters: follow the dongle, not the laptop
    "00e04c",  # Realtek (RTL8152/8153 USB NICs used in most docks and dongles)
    "000ec6",  # ASIX (AX88179 / AX88772 USB NICs)
    # Apple's USB-C/Thunderbolt adapters use Apple OUIs shared with built-in NICs, so no Apple OUI is
    # listed here: excluding one would also drop real Mac addresses. Add specific ones in config.
})

_PREFIX_LENGTHS_DEFAULT: tuple[int, ...] = tuple(sorted({len(p) for p in NON_MATCHING_MAC_PREFIXES}))


def _is_hex(s: str) -> bool:
    return bool(s) and not s.strip(_HEX)


def normalize_mac(v: object) -> str | None:
    """MAC address to 12 lower-case hex digits, or None when it is not a MAC.

    Accepts "AA:BB:CC:DD:EE:FF", "aa-bb-cc-dd-ee-ff", "aabbccddeeff", Cisco "aabb.ccdd.eeff",
    space-separated octets, and unpadded octets as printed by macOS `arp` ("0:1c:42:a:b:c").
    """
    if not isinstance(v, str):
        return None
    s = v.strip().lower()
    n = len(s)
    if n == 12:
        out = s
    elif n == 17:
        sep = s[2]
        if sep not in ":- " or s[5] != sep or s[8] != sep or s[11] != sep or s[14] != sep:
            return None
        out = s.replace(sep, "")
    elif n == 14 and s[4] == "." and s[9] == ".":
        out = s.replace(".", "")
    else:
        sep = ":" if ":" in s else "-"
        parts = s.split(sep)
        if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
            return None
        out = "".join(p.rjust(2, "0") for p in parts)
    if len(out) != 12 or not _is_hex(out):
        return None
    return out


def mac_prefixes(prefixes: Iterable[str]) -> frozenset[str]:
    """Normalise configured MAC prefixes ("00:50:56", "00-0C-29", "0242") for `mac_is_matchable`."""
    out = set()
    for p in prefixes:
        q = p.strip().lower().replace(":", "").replace("-", "").replace(".", "")
        if not _is_hex(q) or len(q) > 12:
            raise ValueError(f"not a MAC prefix: {p!r} (want 2-12 hex digits, e.g. '00:50:56')")
        out.add(q)
    return frozenset(out)


def mac_is_matchable(mac12: str, non_matching_prefixes: frozenset[str] | None = None) -> bool:
    """True when a normalised MAC may identify a physical machine (usable as an identity key).

    False for all-zero, broadcast and multicast addresses (bit 0 of the first octet), locally
    administered ones (bit 1: randomised Wi-Fi, VPN and container addresses) and any address starting
    with one of `non_matching_prefixes` (default `NON_MATCHING_MAC_PREFIXES`).
    """
    if len(mac12) != 12:
        return False
    try:
        first = int(mac12[:2], 16)
    except ValueError:
        return False
    if first & 0x03:  # multicast (incl. broadcast ff..ff) or locally administered
        return False
    if mac12 == "000000000000":
        return False
    if non_matching_prefixes is None:
        prefixes, lengths = NON_MATCHING_MAC_PREFIXES, _PREFIX_LENGTHS_DEFAULT
    else:
        prefixes, lengths = non_matching_prefixes, tuple({len(p) for p in non_matching_prefixes})
    return all(mac12[:n] not in prefixes for n in lengths)


_MAC_SPLIT_RE = re.compile(r"[,;\s]+")


def normalize_macs(v: object) -> list[str]:
    """Several MACs (a list, or a string separated by commas, semicolons or whitespace) to a
    de-duplicated list of normalised MACs in first-seen order; invalid entries are dropped."""
    if v is None:
        return []
    if isinstance(v, str):
        s = v.strip()
        # One MAC written with space-separated octets must not be split into six invalid pieces.
        single = normalize_mac(s)
        items: Iterable[object] = [single] if single else _MAC_SPLIT_RE.split(s)
    elif isinstance(v, list | tuple):
        items = v
    else:
        return []
    out: dict[str, None] = {}
    for item in items:
        m = normalize_mac(item)
        if m is not None:
            out[m] = None
    return list(out)


# ----------------------------------------------------------------------------------------------- UUIDs

# SMBIOS UUIDs that are placeholders, shared by many machines. Checked in both byte orders, so the
# byte-swapped spelling of each is junk too.
JUNK_UUIDS: frozenset[str] = frozenset({
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "03000200-0400-0500-0006-000700080009",  # common firmware placeholder (AMI/Gigabyte boards)
})


def uuid_swap_byte_order(u: str) -> str:
    """Swap the byte order of the first three groups of a canonical UUID.

    SMBIOS stores the first three fields little-endian; some tools (and guests vs their hypervisor)
    print them big-endian: 00112233-4455-6677-8899-aabbccddeeff <-> 33221100-5544-7766-8899-aabbccddeeff.
    """
    return (u[6:8] + u[4:6] + u[2:4] + u[0:2] + "-" + u[11:13] + u[9:11] + "-" + u[16:18] + u[14:16]
            + u[18:])


def uuid_match_key(u: str) -> str:
    """The byte-order-independent key of a canonical UUID: the smaller of it and its byte-swapped form."""
    swapped = uuid_swap_byte_order(u)
    return u if u <= swapped else swapped


# Both byte orders of every junk UUID, so the check is one set look-up.
_JUNK_UUID_FORMS: frozenset[str] = JUNK_UUIDS | frozenset(uuid_swap_byte_order(u) for u in JUNK_UUIDS)


def normalize_uuid(v: object) -> str | None:
    """UUID (32 hex digits, with or without dashes, braces or "urn:uuid:") to lower-case 8-4-4-4-12;
    None when malformed or junk (`JUNK_UUIDS`, either byte order, or all one digit)."""
    if not isinstance(v, str):
        return None
    s = v.strip().lower()
    if len(s) == 36 and s[8] == "-" and s[13] == "-" and s[18] == "-" and s[23] == "-":
        h = s.replace("-", "")  # already canonical layout: the common case
    else:
        if s.startswith("urn:uuid:"):
            s = s[9:]
        h = s.strip("{}").replace("-", "")
        s = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if len(h) != 32 or h.strip(_HEX) or h.count(h[0]) == 32 or s in _JUNK_UUID_FORMS:
        return None
    return s


# -------------------------------------------------------------------------------------- host names

JUNK_HOSTNAMES: frozenset[str] = frozenset({
    "localhost", "localhost.localdomain", "unknown", "(none)", "none", "null", "n/a", "-", "localdomain",
})
_DIGITS_DOTS = "0123456789."


def _host_base(v: object) -> str | None:
    """Shared cleaning for host names and FQDNs: trimmed, lower case, no trailing dot, not junk, not an
    IP address. A value containing ':' is an IPv6 address or "host:port" noise: None either way."""
    if not isinstance(v, str):
        return None
    s = v.strip().lower().rstrip(".")
    if not s or s in JUNK_HOSTNAMES or ":" in s:
        return None
    if "." in s and not s.strip(_DIGITS_DOTS):
        return None  # dotted digits: an IPv4 address (or a broken one), never a host name
    if s[0] == "[":  # bracketed IPv6 literal
        try:
            ipaddress.ip_address(s.strip("[]"))
            return None
        except ValueError:
            pass
    return s


def normalize_hostname(v: object) -> str | None:
    """Short host name: trimmed, lower case, first DNS label only; None for IP addresses and junk."""
    s = _host_base(v)
    if s is None:
        return None
    short = s.split(".", 1)[0]
    if not short or short in JUNK_HOSTNAMES:
        return None
    return short


def normalize_fqdn(v: object) -> str | None:
    """Fully qualified name as reported: trimmed, lower case, no trailing dot (a dot-less name is kept);
    None for IP addresses and junk."""
    return _host_base(v)


# --------------------------------------------------------------------------------------------- e-mail


def normalize_email(v: object) -> str | None:
    """E-mail address: trimmed, lower case, "mailto:" and angle brackets removed; None unless it has
    exactly one "@" with something on both sides and no whitespace."""
    if not isinstance(v, str):
        return None
    s = v.strip().lower()
    if s[:1] == "<" or s[-1:] == ">":
        s = s.strip("<>").strip()
    if s.startswith("mailto:"):
        s = s[7:].strip()
    at = s.find("@")
    # Exactly one "@", not first or last; no spaces or control characters (isprintable catches \t, \n).
    if at <= 0 or at == len(s) - 1 or s.find("@", at + 1) != -1 or " " in s or not s.isprintable():
        return None
    return s


# ----------------------------------------------------------------------------------------------- IMEI

_IMEI_SEPARATORS = str.maketrans("", "", " -./")


def normalize_imei(v: object) -> str | None:
    """IMEI / IMEISV: digits only (spaces, dashes, dots and slashes removed), 14 to 16 digits; else None."""
    if isinstance(v, int) and not isinstance(v, bool):
        s = str(v)
    elif isinstance(v, str):
        s = v.strip().translate(_IMEI_SEPARATORS)
    else:
        return None
    if not (14 <= len(s) <= 16) or not s.isascii() or not s.isdigit() or not s.strip("0"):
        return None
    return s
