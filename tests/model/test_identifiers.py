"""Table-driven tests of the identifier normalisers and junk lists."""

from __future__ import annotations

from typing import Any

import pytest

from itam_sync.model.identifiers import (
    JUNK_SERIALS,
    NON_MATCHING_MAC_PREFIXES,
    is_junk_serial,
    mac_is_matchable,
    mac_prefixes,
    normalize_email,
    normalize_fqdn,
    normalize_hostname,
    normalize_imei,
    normalize_mac,
    normalize_macs,
    normalize_serial,
    normalize_uuid,
    uuid_match_key,
    uuid_swap_byte_order,
)


@pytest.mark.parametrize(("raw", "expected"), [
    ("C02XL0GYJGH5", "C02XL0GYJGH5"),
    ("  c02xl0gyjgh5\t", "C02XL0GYJGH5"),
    ("PF-2ABC12", "PF-2ABC12"),  # internal dashes are part of the serial
    ("5CG 123 4XYZ", "5CG1234XYZ"),  # whitespace is not
    ('"5CG1234XYZ"', "5CG1234XYZ"),  # surrounding quotes from CSV exports
    ("'ABC123'", "ABC123"),
    ("VMware-42 1a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f8", "VMWARE-421A2B3C4D5E6F70-8192A3B4C5D6E7F8"),
    ("Parallels-12 34 56 78", "PARALLELS-12345678"),
    (123456, "123456"),
    ("", None),
    ("   ", None),
    ("0", None),
    ("00000000", None),
    ("000000", None),
    ("0-0-0-0", None),
    ("XXXXXXX", None),
    ("xxx", None),
    ("111", None),
    ("None", None),
    ("N/A", None),
    ("na", None),
    ("NULL", None),
    ("Unknown", None),
    ("Default string", None),
    ("Default  String", None),  # compared after collapsing spaces
    ("To Be Filled By O.E.M.", None),
    ("To be filled by O.E.M.", None),
    ("TO BE FILLED BY OEM", None),
    ("System Serial Number", None),
    ("Chassis Serial Number", None),
    ("Base Board Serial Number", None),
    ("Not Specified", None),
    ("Not Applicable", None),
    ("INVALID", None),
    ("SerialNumber", None),
    ("123456789", None),
    ("0123456789", None),
    ("1234567890", None),
    (None, None),
    (True, None),
    (1.5, None),
    (["ABC"], None),
])
def test_normalize_serial(raw: Any, expected: str | None) -> None:
    assert normalize_serial(raw) == expected


def test_every_listed_junk_serial_is_rejected_in_any_case() -> None:
    for junk in JUNK_SERIALS:
        assert normalize_serial(junk) is None, junk
        assert normalize_serial(junk.lower()) is None, junk
        assert is_junk_serial(junk.replace(" ", "")), junk  # the normalised (space-less) spelling too
    assert not is_junk_serial("C02XL0GYJGH5")


@pytest.mark.parametrize(("raw", "expected"), [
    ("AA:BB:CC:DD:EE:FF", "aabbccddeeff"),
    ("aa-bb-cc-dd-ee-ff", "aabbccddeeff"),
    ("AABBCCDDEEFF", "aabbccddeeff"),
    ("aabb.ccdd.eeff", "aabbccddeeff"),
    ("  Aa:bB:cc:DD:ee:FF  ", "aabbccddeeff"),
    ("AA BB CC DD EE FF", "aabbccddeeff"),
    ("0:1c:42:a:b:c", "001c420a0b0c"),  # macOS arp prints octets unpadded
    ("aa:bb-cc:dd:ee:ff", None),  # mixed separators
    ("aa:bb:cc:dd:ee", None),
    ("aa:bb:cc:dd:ee:ff:00", None),
    ("gg:bb:cc:dd:ee:ff", None),
    ("aabbccddeef", None),
    ("aab.bccd.deef", None),
    ("0x:bb:cc:dd:ee:ff", None),
    ("", None),
    (None, None),
    (0xAABBCCDDEEFF, None),
])
def test_normalize_mac(raw: Any, expected: str | None) -> None:
    assert normalize_mac(raw) == expected


@pytest.mark.parametrize(("mac", "matchable"), [
    ("3c22fb123456", True),  # an ordinary burned-in address
    ("f01898abcdef", True),
    ("000000000000", False),
    ("ffffffffffff", False),  # broadcast
    ("01005e000001", False),  # multicast
    ("333300000001", False),  # IPv6 multicast
    ("da1234567890", False),  # locally administered: randomised Wi-Fi
    ("0242ac110002", False),  # Docker
    ("005056a1b2c3", False),  # VMware
    ("000c29a1b2c3", False),
    ("000569a1b2c3", False),
    ("080027a1b2c3", False),  # VirtualBox
    ("00155da1b2c3", False),  # Hyper-V
    ("001c42a1b2c3", False),  # Parallels
    ("00e04c680001", False),  # Realtek USB / dock adapter
    ("000ec6a1b2c3", False),  # ASIX USB adapter
    ("00059a3c7a00", False),  # Cisco AnyConnect virtual adapter
    ("00059a3c7a01", True),  # ... but only that exact address in Cisco's block
    ("abc", False),
    ("zz1234567890", False),
])
def test_mac_is_matchable(mac: str, matchable: bool) -> None:
    assert mac_is_matchable(mac) is matchable


def test_mac_prefixes_are_configurable() -> None:
    custom = NON_MATCHING_MAC_PREFIXES | mac_prefixes(["3C:22:FB", "f0-18-98"])
    assert not mac_is_matchable("3c22fb123456", custom)
    assert not mac_is_matchable("f01898abcdef", custom)
    assert not mac_is_matchable("005056a1b2c3", custom)
    assert mac_is_matchable("3c22fb123456")
    assert mac_is_matchable("005056a1b2c3", frozenset())
    with pytest.raises(ValueError, match="not a MAC prefix"):
        mac_prefixes(["zz:zz"])


@pytest.mark.parametrize(("raw", "expected"), [
    ("aa:bb:cc:dd:ee:ff, 11-22-33-44-55-66", ["aabbccddeeff", "112233445566"]),
    ("aa:bb:cc:dd:ee:ff;AABBCCDDEEFF; 112233445566", ["aabbccddeeff", "112233445566"]),
    ("aa:bb:cc:dd:ee:ff 11:22:33:44:55:66", ["aabbccddeeff", "112233445566"]),
    ("AA BB CC DD EE FF", ["aabbccddeeff"]),
    (["AA:BB:CC:DD:EE:FF", None, "junk", "aabb.ccdd.eeff", "112233445566"], ["aabbccddeeff", "112233445566"]),
    ("", []),
    (None, []),
    (42, []),
])
def test_normalize_macs(raw: Any, expected: list[str]) -> None:
    assert normalize_macs(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("4C4C4544-0042-3510-8052-B4C04F564433", "4c4c4544-0042-3510-8052-b4c04f564433"),
    ("4c4c454400423510 8052b4c04f564433".replace(" ", ""), "4c4c4544-0042-3510-8052-b4c04f564433"),
    ("{4C4C4544-0042-3510-8052-B4C04F564433}", "4c4c4544-0042-3510-8052-b4c04f564433"),
    ("urn:uuid:4c4c4544-0042-3510-8052-b4c04f564433", "4c4c4544-0042-3510-8052-b4c04f564433"),
    ("  4c4c4544-0042-3510-8052-b4c04f564433 ", "4c4c4544-0042-3510-8052-b4c04f564433"),
    ("00000000-0000-0000-0000-000000000000", None),
    ("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", None),
    ("03000200-0400-0500-0006-000700080009", None),
    ("00020003-0004-0005-0006-000700080009", None),  # the same junk UUID, byte-swapped
    ("11111111-1111-1111-1111-111111111111", None),
    ("4c4c4544-0042-3510-8052-b4c04f56443", None),  # 31 digits
    ("4c4c4544-0042-3510-8052-b4c04f56443g", None),
    ("not a uuid", None),
    ("", None),
    (None, None),
])
def test_normalize_uuid(raw: Any, expected: str | None) -> None:
    assert normalize_uuid(raw) == expected


def test_uuid_byte_order_swap_and_match_key() -> None:
    u = "00112233-4455-6677-8899-aabbccddeeff"
    swapped = "33221100-5544-7766-8899-aabbccddeeff"
    assert uuid_swap_byte_order(u) == swapped
    assert uuid_swap_byte_order(swapped) == u
    assert uuid_match_key(u) == uuid_match_key(swapped) == u
    # A VM: the hypervisor reports one byte order, the guest's SMBIOS the other.
    vm_host = "564d1234-abcd-ef01-2345-6789abcdef01"
    vm_guest = uuid_swap_byte_order(vm_host)
    assert uuid_match_key(vm_host) == uuid_match_key(vm_guest)


@pytest.mark.parametrize(("raw", "expected"), [
    ("LT-12345.corp.example.com", "lt-12345"),
    ("LT-12345.corp.example.com.", "lt-12345"),
    ("  WKS001  ", "wks001"),
    ("web01", "web01"),
    ("10.0.0.1", None),
    ("10.0.0.256", None),  # dotted digits are never a host name
    ("fe80::1", None),
    ("[2001:db8::1]", None),
    ("localhost", None),
    ("localhost.localdomain", None),
    ("Unknown", None),
    ("(none)", None),
    ("", None),
    (".", None),
    (None, None),
    (12, None),
])
def test_normalize_hostname(raw: Any, expected: str | None) -> None:
    assert normalize_hostname(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("LT-12345.Corp.Example.com.", "lt-12345.corp.example.com"),
    ("web01", "web01"),
    ("192.168.1.10", None),
    ("::1", None),
    ("localhost", None),
    ("", None),
])
def test_normalize_fqdn(raw: Any, expected: str | None) -> None:
    assert normalize_fqdn(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("Jane.Doe@Example.COM", "jane.doe@example.com"),
    ("  jane@example.com ", "jane@example.com"),
    ("mailto:Jane@Example.com", "jane@example.com"),
    ("MAILTO:jane@example.com", "jane@example.com"),
    ("<jane@example.com>", "jane@example.com"),
    ("jane", None),
    ("@example.com", None),
    ("jane@", None),
    ("a@b@c", None),
    ("jane doe@example.com", None),
    ("jane\t@example.com", None),
    ("", None),
    (None, None),
])
def test_normalize_email(raw: Any, expected: str | None) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("356938035643809", "356938035643809"),
    ("35-693803-564380-9", "356938035643809"),
    ("35 693803 564380 9", "356938035643809"),
    ("35693803564380", "35693803564380"),  # 14 digits (no check digit)
    ("3569380356438012", "3569380356438012"),  # 16 digits (IMEISV)
    (356938035643809, "356938035643809"),
    ("3569380356", None),
    ("35693803564380912", None),
    ("35693803564380A", None),
    ("000000000000000", None),
    ("", None),
    (None, None),
])
def test_normalize_imei(raw: Any, expected: str | None) -> None:
    assert normalize_imei(raw) == expected
