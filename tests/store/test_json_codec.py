"""The store's JSON codec (orjson, with the stdlib as fallback): same text as before for ordinary values, exact
round trips for what orjson cannot encode or read exactly, and old stored text still readable."""

from __future__ import annotations

import collections
import dataclasses
import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from itam_sync.model import jsoncodec
from itam_sync.model.jsoncodec import dumps, dumps_bytes, encode_value, loads
from itam_sync.store.repos import base

OLD = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode  # what the store wrote before


@dataclasses.dataclass
class Point:
    x: int


class Ratio(float):
    """A float subclass, as numpy.float64 is."""


Pair = collections.namedtuple("Pair", "left right")


ORDINARY: list[Any] = [
    {"serialNumber": "C02FK1ABQ6L4", "osVersion": "14.6.1", "ram": 32, "price": 1299.5, "managed": True,
     "user": None, "macs": ["a4:83:e7:12:34:56", ""], "nested": {"a": [1, 2, {"b": -3}]}},
    "Zoë Łukasiewicz — 東京 ✓", "line\nbreak\ttab \"quoted\" back\\slash \x1f \x7f \u2028", 0, -1, 2**63 - 1, -2**63,
    2**64 - 1, 1.0, -0.0, 0.1, 1e16, 1e300, 3.14e-10, [], {}, "", True, False,
    datetime(2026, 11, 26, 8, 0, tzinfo=UTC), date(2026, 11, 26), uuid.UUID(int=7), Decimal("1.20"), Point(1),
    {"when": datetime(2026, 1, 2, 3, 4, 5)}, Ratio(0.25), {"r": [Ratio(2.0)]}, Pair(1, "b"), {"p": Pair([], None)},
    {1, 2}, b"raw",
]


@pytest.mark.parametrize("value", ORDINARY, ids=range(len(ORDINARY)))
def test_ordinary_values_encode_exactly_as_the_stdlib_encoder_did(value: Any) -> None:
    assert dumps(value) == OLD(value)
    assert dumps_bytes(value) == OLD(value).encode()
    assert encode_value(value) == OLD(value)
    assert loads(dumps(value)) == json.loads(OLD(value))


@pytest.mark.parametrize("value", [
    2**64, -2**63 - 1, 123456789012345678901234567890, [1, 2**70, {"n": -2**80}],  # beyond 64 bits
    {7: "a", 2.5: "b", False: "c", None: "d"},  # keys that are not strings
    "lone \ud800 surrogate",
])
def test_what_orjson_cannot_encode_falls_back_to_the_stdlib_and_reads_back_exactly(value: Any) -> None:
    text = dumps(value)
    assert text == OLD(value)
    assert loads(text) == json.loads(text)
    if not isinstance(value, str):
        assert dumps_bytes(value) == OLD(value).encode()


def test_huge_integers_are_read_as_integers_not_floats() -> None:
    # orjson alone reads 2**64 as 1.8446744073709552e19: the codec must not.
    for n in (2**64, 10**25, -2**63 - 1, -(10**30)):
        for text in (str(n), f'{{"n":{n}}}', f'[1,"x",{n}]'):
            value = loads(text)
            assert value == json.loads(text) and type(value) is type(json.loads(text))
    assert loads(b'{"n":18446744073709551616}') == {"n": 2**64}


def test_text_the_stdlib_wrote_that_is_not_strict_json_still_reads() -> None:
    assert loads('{"x":NaN,"y":Infinity,"z":-Infinity}')["y"] == float("inf")
    assert loads("NaN") != loads("NaN")  # NaN, as the stdlib reads it
    assert loads('"\\ud800"') == "\ud800"


def test_the_codec_differs_from_the_old_text_only_where_documented() -> None:
    # Small floats are written without an exponent (same value); NaN and Infinity, not JSON, become null.
    assert (dumps(1e-05), OLD(1e-05)) == ("0.00001", "1e-05")
    assert loads(dumps(1e-05)) == 1e-05
    assert dumps({"v": float("nan"), "w": float("inf")}) == '{"v":null,"w":null}'


def test_the_store_and_the_sdk_share_one_codec() -> None:
    assert (base.dumps, base.dumps_bytes, base.encode_value, base.loads) == (
        jsoncodec.dumps, jsoncodec.dumps_bytes, jsoncodec.encode_value, jsoncodec.loads)


def test_invalid_json_raises_the_stdlib_error_and_message() -> None:
    # Quarantine reasons quote json's messages ("not valid JSON (Expecting value)"): they must not change.
    for text in ('{"a": ', "nope", '{"a" 1}', ""):
        with pytest.raises(json.JSONDecodeError) as got:
            loads(text)
        with pytest.raises(json.JSONDecodeError) as want:
            json.loads(text)
        assert got.value.args == want.value.args
