"""JSON text of plain data, fast: orjson, with the stdlib json module wherever orjson would differ or fail.

Used on the record path (raw records parsed by the SDK and hashed by the engine, mapped fields, golden records,
merge-log values), where JSON encoding and decoding was a fifth of a first load's time.

Encoding matches what the stdlib encoder with separators=(",", ":"), ensure_ascii=False, default=str wrote
(what the store always wrote), except exponent floats (1e-05 -> 0.00001, the same value) and NaN/Infinity
(null, as they are not JSON). What orjson cannot encode (integers beyond 64 bits, dict keys that are not
strings, lone surrogates) goes to the stdlib encoder. Decoding gives what json.loads gives: text orjson
rejects (NaN, Infinity, lone surrogate escapes) or would read inexactly (integers beyond 64 bits, which it
reads as floats) goes to json.loads, which also raises the stdlib's errors and messages for invalid JSON.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# One stdlib encoder for the process: json.dumps() with options builds a new encoder per call, which is slow.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)
_stdlib_dumps = _ENCODER.encode
_encode_str = json.encoder.encode_basestring
_stdlib_loads = json.loads
_orjson_dumps = orjson.dumps
_orjson_loads = orjson.loads
# Datetimes and dataclasses go through _default, as with the stdlib encoder (orjson would write ISO form / dicts).
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _default(value: Any) -> Any:
    """What orjson leaves to `default`, as the stdlib encoder (default=str) writes it."""
    if isinstance(value, float):  # a float subclass (numpy.float64): the stdlib writes the number
        return float(value)
    if isinstance(value, tuple):  # a namedtuple: the stdlib writes an array
        return list(value)
    return str(value)
_DIGITS = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_NUMBER = b"0" * 19  # 19 digits in a row: maybe an integer beyond 64 bits, read by the stdlib


def dumps_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON of `value` (the staging content hash is taken over these bytes)."""
    try:
        return _orjson_dumps(value, default=_default, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: too large an int, a non-str key, a lone surrogate
        return _stdlib_dumps(value).encode()


def dumps(value: Any) -> str:
    """Compact JSON text of `value` (non-ASCII kept, unknown types as str())."""
    try:
        return _orjson_dumps(value, default=_default, option=_OPTIONS).decode()
    except TypeError:
        return _stdlib_dumps(value)


def loads(text: str | bytes) -> Any:
    """Parse JSON as json.loads does (NaN, Infinity and huge integers exactly; its errors for invalid text)."""
    try:
        raw = text.encode() if type(text) is str else text
    except UnicodeEncodeError:  # a lone surrogate (the stdlib encoder's output may hold one)
        return _stdlib_loads(text)
    if _LONG_NUMBER in raw.translate(_DIGITS):
        return _stdlib_loads(text)
    try:
        return _orjson_loads(raw)
    except ValueError:  # orjson.JSONDecodeError: not strict JSON, or not JSON at all (then this raises)
        return _stdlib_loads(text)


def encode_value(value: Any) -> str:
    """JSON text of one field value; strings (the common case) skip the general encoder."""
    if type(value) is str:
        return _encode_str(value)
    return dumps(value)


__all__ = ["dumps", "dumps_bytes", "encode_value", "loads"]
