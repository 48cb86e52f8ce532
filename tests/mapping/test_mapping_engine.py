"""Golden tests of the mapping engine: every tests/mapping/golden/<name>/ holds mapping.yaml, in.json (raw
records) and out.json (per record, the expected {source_key, observed_at, fields} or {error: substring}).

To add a case, add a directory; nothing here changes. Each mapping.yaml has exactly one stream.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from itam_sync.mapping.engine import MappingError, UnmappedStreamError, compile_expression
from itam_sync.mapping.loader import load_mapping, load_mapping_text
from itam_sync.model.canonical import EntityType

GOLDEN = Path(__file__).parent / "golden"
FIXTURES = Path(__file__).parent / "fixtures"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "mapping.yaml").is_file())


def test_golden_cases_exist() -> None:
    assert {"okta_users", "okta_custom_attribute", "mdm_devices"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    d = GOLDEN / case
    mapping = load_mapping(d / "mapping.yaml")
    assert len(mapping.streams) == 1, "a golden case maps one stream"
    (stream_name, stream), = mapping.streams.items()
    records: list[Any] = json.loads((d / "in.json").read_text(encoding="utf-8"))
    expected: list[dict[str, Any]] = json.loads((d / "out.json").read_text(encoding="utf-8"))
    assert len(records) == len(expected), f"{case}: in.json and out.json must pair up"
    for i, (raw, want) in enumerate(zip(records, expected, strict=True)):
        where = f"{case} record #{i}"
        if "error" in want:
            with pytest.raises(MappingError) as info:
                stream.map(raw, stream_name)
            assert want["error"] in info.value.reason, f"{where}: {info.value.reason}"
            continue
        obs = stream.map(raw, stream_name)
        got = {"source_key": obs.source_key, "observed_at": obs.observed_at, "fields": obs.fields}
        assert got == want, where
        assert obs.stream == stream_name
        assert obs.entity is stream.entity
        # "Source says nothing" is never stored: no None, "" or [] values.
        assert all(v is not None and v != "" and v != [] for v in obs.fields.values()), where


def test_custom_attribute_is_pure_yaml() -> None:
    """Routing Okta's custom `costCenter` into `department` needs only a mapping edit."""
    base = load_mapping(FIXTURES / "okta.yaml").stream("users")
    custom = load_mapping(GOLDEN / "okta_custom_attribute" / "mapping.yaml").stream("users")
    raw = {"id": "00u1", "profile": {"login": "j@example.com", "email": "j@example.com",
                                     "costCenter": "CC-4100", "department": "Finance"}}
    assert base.map(raw).fields["department"] == "Finance"
    assert custom.map(raw).fields["department"] == "CC-4100"


def test_fixture_example_maps_both_streams() -> None:
    m = load_mapping(FIXTURES / "okta.yaml")
    user = m.map("users", {"id": "00u1", "status": "ACTIVE", "lastUpdated": "2024-06-01T12:00:00.000Z",
                           "profile": {"email": "Jane@Example.com", "firstName": "Jane", "lastName": "Doe"}})
    assert user.entity is EntityType.PERSON
    assert user.fields == {"email": "jane@example.com", "display_name": "Jane Doe", "status": "active"}
    dev = m.map("devices", {"id": 42, "profile": {"serialNumber": "c02 xl0"}, "wifiMac": "AA-BB-CC-DD-EE-FF"})
    assert (dev.source_key, dev.fields) == ("42", {"kind": "laptop", "serial_number": "C02XL0",
                                                   "mac_addresses": ["aabbccddeeff"]})
    with pytest.raises(UnmappedStreamError, match="add a 'groups' entry"):
        m.map("groups", {"id": 1})


def test_stream_argument_defaults_to_the_mapping_stream() -> None:
    s = load_mapping(FIXTURES / "okta.yaml").stream("users")
    assert s.map({"id": "x"}).stream == "users"
    assert s.map({"id": "x"}, "users_delta").stream == "users_delta"


@pytest.mark.parametrize(("expr", "record", "expected"), [
    ("a", {"a": 1}, 1),
    ("a.b", {"a": {"b": 2}}, 2),
    ("a.b", {"a": [1]}, None),
    ("a.b.c", {"a": {"b": {"c": 3}}}, 3),
    ("a.b.c", {"a": {"b": "flat"}}, None),
    ("a.b.c.d", {"a": {"b": {"c": {"d": 4}}}}, 4),
    ("a.b.c.d", {"a": {"b": None}}, None),
    ("[a, b.c]", {"a": 1, "b": {"c": 2}}, [1, 2]),
    ("[a, b, c]", {"a": 1}, [1, None, None]),
    ("a[0]", {"a": [5, 6]}, 5),
    ("join(' ', [a, b])", {"a": "x"}, None),  # a JMESPath type error means "nothing"
])
def test_fast_getters_agree_with_jmespath(expr: str, record: dict[str, Any], expected: Any) -> None:
    import jmespath

    assert compile_expression(expr)(record) == expected
    try:
        reference = jmespath.search(expr, record)
    except jmespath.exceptions.JMESPathTypeError:
        reference = None
    assert reference == expected


def test_list_fields_are_deduplicated_in_order() -> None:
    s = load_mapping_text("""
streams:
  d:
    entity: asset
    key: id
    fields:
      tags: labels
      mac_addresses: macs
""", "t.yaml").stream("d")
    obs = s.map({"id": 1, "labels": ["b", "a", "b", " ", None, 3], "macs": "x"})
    assert obs.fields == {"tags": ["b", "a", "3"], "mac_addresses": ["x"]}
    with pytest.raises(MappingError, match="list elements must be text"):
        s.map({"id": 1, "labels": [{"k": "v"}]})


def test_source_key_forms() -> None:
    text = "streams:\n  d:\n    entity: asset\n    key: id\n    fields: {model: m}\n"
    s = load_mapping_text(text, "t").stream("d")
    assert s.map({"id": 7}).source_key == "7"
    assert s.map({"id": 7.0}).source_key == "7"
    assert s.map({"id": "abc"}).source_key == "abc"
    for bad in (None, "", "  ", [1], {"a": 1}, True):
        with pytest.raises(MappingError, match="no source key"):
            s.map({"id": bad})
        with pytest.raises(MappingError, match="no source key"):
            s.source_key({"id": bad})
    assert s.source_key({"id": 7, "model": {"not": "text"}}) == "7"  # fields are not looked at
    with pytest.raises(MappingError, match="must be an object"):
        s.source_key(["id"])  # type: ignore[arg-type]
