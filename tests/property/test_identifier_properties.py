"""Property tests of the identifier normalisers: idempotent, and every spelling of one identifier converges.

Sources write the same serial, MAC, UUID, e-mail or IMEI in many ways (case, separators, padding, braces,
byte order); identity resolution only works if all of them normalise to one value, and if normalising twice
changes nothing (values are normalised in mappings and again when match keys are built).
"""

from __future__ import annotations

import string

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from itam_sync.mapping.transforms import build_transform, to_date, to_datetime
from itam_sync.model.identifiers import (
    JUNK_HOSTNAMES,
    JUNK_SERIALS,
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

PROPERTY = settings(max_examples=150, deadline=None)

ALNUM = string.ascii_uppercase + string.digits
serials = st.text(ALNUM, min_size=5, max_size=14).filter(lambda s: normalize_serial(s) is not None)
hex12 = st.text("0123456789abcdef", min_size=12, max_size=12)
hex32 = st.text("0123456789abcdef", min_size=32, max_size=32).filter(lambda h: normalize_uuid(h) is not None)
words = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)


@PROPERTY
@given(st.text(max_size=40))
def test_serial_normalisation_is_idempotent(raw: str) -> None:
    once = normalize_serial(raw)
    assert once is None or normalize_serial(once) == once


@PROPERTY
@given(serials, st.sampled_from(["lower", "pad", "space", "quote", "tab"]), st.integers(1, 4))
def test_serial_spellings_converge(serial: str, style: str, cut: int) -> None:
    spelled = {"lower": serial.lower(), "pad": f"  {serial} ", "space": f"{serial[:cut]} {serial[cut:]}",
               "quote": f'"{serial}"', "tab": f"\t{serial.lower()}\n"}[style]
    assert normalize_serial(spelled) == normalize_serial(serial) == serial


@PROPERTY
@given(st.sampled_from(sorted(JUNK_SERIALS)), st.sampled_from([str.lower, str.upper, str.title]), st.booleans())
def test_junk_serials_never_survive_in_any_spelling(junk: str, case: object, pad: bool) -> None:
    spelled = case(junk)  # type: ignore[operator]
    assert normalize_serial(f"  {spelled} " if pad else spelled) is None


def _mac_spellings(h: str) -> list[str]:
    pairs = [h[i:i + 2] for i in range(0, 12, 2)]
    return [h, h.upper(), ":".join(pairs), ":".join(pairs).upper(), "-".join(pairs), "-".join(pairs).upper(),
            f"{h[:4]}.{h[4:8]}.{h[8:]}", " ".join(pairs), ":".join(p.lstrip("0") or "0" for p in pairs),
            f"  {':'.join(pairs)}  "]


@PROPERTY
@given(hex12)
def test_mac_spellings_converge_and_are_idempotent(h: str) -> None:
    for spelled in _mac_spellings(h):
        assert normalize_mac(spelled) == h, spelled
    assert normalize_mac(h) == h


@PROPERTY
@given(st.lists(hex12, min_size=1, max_size=4), st.sampled_from([",", ";", " ", ", "]), st.randoms())
def test_mac_lists_dedupe_across_spellings(macs: list[str], sep: str, rnd: object) -> None:
    spelled = [rnd.choice(_mac_spellings(m)) for m in macs]  # type: ignore[attr-defined]
    unique = list(dict.fromkeys(macs))
    assert normalize_macs(spelled) == unique
    assert build_transform("mac")(spelled) == unique
    # In one string, a MAC written as space-separated octets cannot be told from six items: those are left out.
    joined = [rnd.choice([x for x in _mac_spellings(m) if " " not in x.strip()]).strip()  # type: ignore[attr-defined]
              for m in macs]
    assert normalize_macs(sep.join(joined)) == unique


@PROPERTY
@given(hex32)
def test_uuid_spellings_converge_and_byte_order_does_not_matter(h: str) -> None:
    canonical = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    for spelled in (h, h.upper(), canonical.upper(), f"{{{canonical}}}", f"urn:uuid:{canonical}", f" {canonical} "):
        assert normalize_uuid(spelled) == canonical, spelled
    assert normalize_uuid(canonical) == canonical
    swapped = uuid_swap_byte_order(canonical)
    assert uuid_swap_byte_order(swapped) == canonical
    assert uuid_match_key(canonical) == uuid_match_key(swapped)


@PROPERTY
@given(words, words, st.sampled_from(["example.com", "corp.example.org", "x.io"]))
def test_email_spellings_converge_and_are_idempotent(local: str, extra: str, domain: str) -> None:
    email = f"{local}.{extra}@{domain}"
    for spelled in (email.upper(), f"  {email} ", f"<{email}>", f"mailto:{email}", email.title()):
        assert normalize_email(spelled) == email, spelled
    assert normalize_email(email) == email
    assert normalize_email(f"{local}@@{domain}") is None and normalize_email(f"{local} x@{domain}") is None


@PROPERTY
@given(st.text(string.digits, min_size=15, max_size=15).filter(lambda s: s.strip("0")))
def test_imei_separators_converge(imei: str) -> None:
    for spelled in (f"{imei[:2]} {imei[2:8]} {imei[8:14]} {imei[14:]}", f"{imei[:2]}-{imei[2:8]}-{imei[8:]}",
                    f" {imei} ", f"{imei[:8]}/{imei[8:]}"):
        assert normalize_imei(spelled) == imei
    assert normalize_imei(normalize_imei(imei)) == imei


@PROPERTY
@given(words, st.lists(words, min_size=1, max_size=3))
def test_host_names_short_and_fully_qualified_agree(host: str, domain: list[str]) -> None:
    fqdn = ".".join([host, *domain])
    assume(not host.isdigit())  # "123.45" reads as an IP address: never a host name
    assume(host not in JUNK_HOSTNAMES)
    assert normalize_hostname(fqdn.upper()) == normalize_hostname(host) == host
    assert normalize_hostname(f"{fqdn}.") == host
    assert normalize_fqdn(normalize_fqdn(fqdn.upper()) or "") == fqdn


@PROPERTY
@given(st.datetimes(timezones=st.none()).filter(lambda d: 1971 <= d.year <= 2200))
def test_date_and_datetime_transforms_are_idempotent(moment: object) -> None:
    text = moment.isoformat()  # type: ignore[attr-defined]
    once = to_datetime(text)
    assert once is not None and to_datetime(once) == once
    day = to_date(text)
    assert day is not None and to_date(day) == day
