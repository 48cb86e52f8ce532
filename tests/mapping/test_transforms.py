"""Tests of the named mapping transforms."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from itam_sync.mapping.transforms import (
    NO_PARAM,
    TRANSFORMS,
    TransformConfigError,
    TransformError,
    build_transform,
    describe_transforms,
)


def t(name: str, param: Any = NO_PARAM, **options: Any) -> Any:
    return build_transform(name, param, options)


def test_every_transform_is_documented_in_one_line() -> None:
    docs = dict(describe_transforms())
    assert set(docs) == set(TRANSFORMS)
    for name, doc in docs.items():
        assert doc and "\n" not in doc, name


@pytest.mark.parametrize("name", sorted(n for n, d in TRANSFORMS.items() if not d.param_required))
def test_none_passes_through_as_none(name: str) -> None:
    assert t(name)(None) is None


@pytest.mark.parametrize(("name", "raw", "expected"), [
    ("lower", "AbC", "abc"),
    ("lower", ["A", "B"], ["a", "b"]),
    ("lower", 5, 5),
    ("upper", "abc", "ABC"),
    ("strip", "  a b  ", "a b"),
    ("strip", "   ", None),
    ("strip", "", None),
    ("strip", [" a ", "  ", "b"], ["a", "b"]),
    ("strip", 3, 3),
    ("serial", " c02 xl0 ", "C02XL0"),
    ("serial", "To Be Filled By O.E.M.", None),
    ("serial", ["abc1", "0", "def2"], ["ABC1", "DEF2"]),
    ("hostname", "LT-1.corp.example.com.", "lt-1"),
    ("hostname", "10.1.2.3", None),
    ("fqdn", "LT-1.Corp.Example.com.", "lt-1.corp.example.com"),
    ("email", "mailto:Jane@Example.com", "jane@example.com"),
    ("email", "not an address", None),
    ("email", ["A@x.io", "bad", "b@x.io"], ["a@x.io", "b@x.io"]),
    ("uuid", "{4C4C4544-0042-3510-8052-B4C04F564433}", "4c4c4544-0042-3510-8052-b4c04f564433"),
    ("uuid", "00000000-0000-0000-0000-000000000000", None),
    ("imei", "35-693803-564380-9", "356938035643809"),
    ("mac", "AA:BB:CC:DD:EE:FF", ["aabbccddeeff"]),
    ("mac", ["AA:BB:CC:DD:EE:FF", None, "aabb.ccdd.eeff", "02:42:ac:11:00:02"],
     ["aabbccddeeff", "0242ac110002"]),
    ("mac", "aa:bb:cc:dd:ee:ff; 11:22:33:44:55:66", ["aabbccddeeff", "112233445566"]),
    ("mac", ["aa:bb:cc:dd:ee:ff,11:22:33:44:55:66"], ["aabbccddeeff", "112233445566"]),
    ("mac", "garbage", None),
    ("mac", [None, ""], None),
    ("first_non_empty", [None, "", [], "x", "y"], "x"),
    ("first_non_empty", [None, ""], None),
    ("first_non_empty", "x", "x"),
    ("first_non_empty", "", None),
    ("list", "x", ["x"]),
    ("list", ["a", None, "", "b"], ["a", "b"]),
    ("list", [None], None),
    ("list", "", None),
    ("pairs", {"env": "prod", "owner": "anna", "empty": "", "none": None},
     ["env=prod", "owner=anna", "empty=", "none="]),
    ("pairs", {}, None),
])
def test_simple_transforms(name: str, raw: Any, expected: Any) -> None:
    assert t(name)(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("2024-06-01", "2024-06-01"),
    ("2024-06-01T23:30:00Z", "2024-06-01"),
    ("2024-06-01T23:30:00-05:00", "2024-06-01"),  # the calendar date as written, not shifted to UTC
    ("2024-06-01 08:00:00", "2024-06-01"),
    ("20240601", "2024-06-01"),
    (1717200000, "2024-06-01"),  # epoch seconds
    (1717200000000, "2024-06-01"),  # epoch milliseconds
    ("1717200000", "2024-06-01"),
    ("1717200000000", "2024-06-01"),
    ("Sat, 01 Jun 2024 12:00:00 GMT", "2024-06-01"),  # RFC 2822
    (date(2024, 6, 1), "2024-06-01"),
    (datetime(2024, 6, 1, 12, 0), "2024-06-01"),
    ("0001-01-01T00:00:00Z", None),  # .NET "never"
    ("1970-01-01T00:00:00Z", None),
    (0, None),
    ("", None),
    ("N/A", None),
    ("null", None),
])
def test_date(raw: Any, expected: str | None) -> None:
    assert t("date")(raw) == expected


@pytest.mark.parametrize("raw", ["yesterday", "2024-13-45", "06/01/2024", True, {"a": 1}, ["2024-06-01"],
                                 float("nan")])
def test_date_rejects(raw: Any) -> None:
    with pytest.raises(TransformError):
        t("date")(raw)


def test_date_with_configured_format() -> None:
    us = t("date", "%m/%d/%Y")
    assert us("06/01/2024") == "2024-06-01"
    with pytest.raises(TransformError, match="configured format"):
        us("2024-06-01")


@pytest.mark.parametrize(("raw", "expected"), [
    ("2024-06-01T12:00:00Z", "2024-06-01T12:00:00Z"),
    ("2024-06-01T12:00:00.000Z", "2024-06-01T12:00:00Z"),
    ("2024-06-01T12:00:00.1234567Z", "2024-06-01T12:00:00Z"),  # Microsoft's 7-digit fractions
    ("2024-06-01T14:00:00+02:00", "2024-06-01T12:00:00Z"),
    ("2024-06-01T14:00:00+0200", "2024-06-01T12:00:00Z"),
    ("2024-06-01 12:00:00", "2024-06-01T12:00:00Z"),  # naive = UTC
    ("2024-06-01 12:00:00 UTC", "2024-06-01T12:00:00Z"),
    ("2024-06-01", "2024-06-01T00:00:00Z"),
    (1717243200, "2024-06-01T12:00:00Z"),
    (1717243200000, "2024-06-01T12:00:00Z"),
    (1717243200.5, "2024-06-01T12:00:00Z"),
    ("Sat, 01 Jun 2024 14:00:00 +0200", "2024-06-01T12:00:00Z"),
    (datetime(2024, 6, 1, 14, tzinfo=UTC), "2024-06-01T14:00:00Z"),
    ("0001-01-01T00:00:00Z", None),
    ("", None),
])
def test_datetime(raw: Any, expected: str | None) -> None:
    assert t("datetime")(raw) == expected


def test_datetime_rejects_garbage() -> None:
    with pytest.raises(TransformError, match="not a recognised date"):
        t("datetime")("last tuesday")


@pytest.mark.parametrize(("raw", "expected"), [
    (True, True), (False, False), ("true", True), ("FALSE", False), ("Yes", True), ("no", False),
    ("y", True), ("n", False), ("1", True), ("0", False), (1, True), (0, False), ("on", True),
    ("off", False), ("Enabled", True), ("disabled", False), ("", None), ("n/a", None),
])
def test_bool(raw: Any, expected: bool | None) -> None:
    assert t("bool")(raw) is expected


@pytest.mark.parametrize("raw", ["maybe", 2, [True]])
def test_bool_rejects(raw: Any) -> None:
    with pytest.raises(TransformError):
        t("bool")(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    (5, 5), ("5", 5), (" 1,200 ", 1200), ("12.0", 12), (12.0, 12), ("-3", -3), ("", None), ("N/A", None),
])
def test_int(raw: Any, expected: int | None) -> None:
    assert t("int")(raw) == expected


@pytest.mark.parametrize("raw", ["12.5", 12.5, "twelve", True, [1]])
def test_int_rejects(raw: Any) -> None:
    with pytest.raises(TransformError):
        t("int")(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ("$1,299.00", 1299.0),
    ("1299", 1299.0),
    (1299, 1299.0),
    (12.5, 12.5),
    ("USD 1,299.99", 1299.99),
    ("1 299.5 EUR".replace(" 299", "299"), 1299.5),
    ("€ 12", 12.0),
    ("12 €", 12.0),
    ("-$5.00", -5.0),
    ("$-5.00", -5.0),
    (".5", 0.5),
    ("1_000", 1000.0),
    ("", None),
    ("null", None),
])
def test_number(raw: Any, expected: float | None) -> None:
    assert t("number")(raw) == expected
    assert t("float")(raw) == expected


@pytest.mark.parametrize("raw", ["1.299,00", "1,2,3", "abc", "nan", "inf", float("inf"), True, ["1"], "$"])
def test_number_rejects(raw: Any) -> None:
    with pytest.raises(TransformError):
        t("number")(raw)


def test_map_is_case_insensitive_with_default() -> None:
    table = {"ACTIVE": "active", "SUSPENDED": "suspended", "DEPROVISIONED": "terminated"}
    m = t("map", table, default="active")
    assert m("ACTIVE") == "active"
    assert m("deprovisioned") == "terminated"
    assert m(" Suspended ") == "suspended"
    assert m("LOCKED_OUT") == "active"
    assert m(["ACTIVE", "DEPROVISIONED"]) == ["active", "terminated"]


def test_map_without_default_passes_unmapped_values_through() -> None:
    m = t("map", {"a": "x"})
    assert m("A") == "x"
    assert m("other") == "other"


def test_map_default_may_be_null_and_keys_may_be_booleans_or_numbers() -> None:
    m = t("map", {True: "yes-value", 2: "two", "UNKNOWN": None}, default=None)
    assert m(True) == "yes-value"
    assert m("true") == "yes-value"
    assert m(2) == "two"
    assert m("2") == "two"
    assert m("unknown") is None
    assert m("other") is None


def test_map_rejects_conflicting_keys_and_empty_tables() -> None:
    with pytest.raises(TransformConfigError, match="two entries"):
        t("map", {"A": "x", "a": "y"})
    with pytest.raises(TransformConfigError, match="non-empty table"):
        t("map", {})
    with pytest.raises(TransformConfigError, match="needs a parameter"):
        t("map")


def test_split_join_prefix_suffix() -> None:
    assert t("split", ",")("a, b,,c ") == ["a", "b", "c"]
    assert t("split")("a,b") == ["a", "b"]
    assert t("split", ";")(["a;b", "c"]) == ["a", "b", "c"]
    assert t("split", ",")(" , ") is None
    assert t("join", ", ")(["a", None, "", "b"]) == "a, b"
    assert t("join")(["Jane", "Doe"]) == "Jane Doe"
    assert t("join", "-")([]) is None
    assert t("prefix", "okta:")(["a", "b"]) == ["okta:a", "okta:b"]
    assert t("suffix", "@example.com")("jane") == "jane@example.com"


@pytest.mark.parametrize(("name", "param", "options", "message"), [
    ("nope", NO_PARAM, {}, "unknown transform"),
    ("lower", "x", {}, "takes no parameter"),
    ("prefix", NO_PARAM, {}, "needs a parameter"),
    ("prefix", 5, {}, "needs a text parameter"),
    ("split", 5, {}, "split takes"),
    ("map", {"a": "b"}, {"defualt": "x"}, "no option 'defualt'"),
    ("date", ["%Y"], {}, "strptime format"),
])
def test_build_transform_config_errors(name: str, param: Any, options: dict[str, Any], message: str) -> None:
    with pytest.raises(TransformConfigError, match=message):
        build_transform(name, param, options)


def test_pairs_rejects_a_non_object() -> None:
    with pytest.raises(TransformError):
        t("pairs")(["env=prod"])
