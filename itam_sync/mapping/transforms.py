"""The closed set of named transforms a mapping may apply to a source value.

Longer than 500 lines because it is the one closed table of transforms, each a few lines; splitting
it would scatter the vocabulary a mapping author reads in one place.

A mapping lists transforms by name (`transforms: [strip, email]`) or, for the ones that take a
parameter, as a one-key dict (`{split: ","}`, `{map: {A: active}, default: active}`, `{date: "%m/%d/%Y"}`).
Each transform is a plain function value -> value, built once when the mapping loads:

- None passes through as None everywhere ("the source says nothing").
- Scalar transforms (lower, upper, strip, serial, hostname, fqdn, email, uuid, imei, map, prefix, suffix)
  apply to each element of a list and drop the elements that become None.
- Parsing transforms (date, datetime, bool, int, number/float) take one value, treat the usual null
  spellings ("", "null", "none", "n/a", "-") as None, and raise `TransformError` for anything else they
  cannot read; the engine turns that into a per-record `MappingError` naming the field.
- List transforms (mac, split, join, first_non_empty, list, pairs) work on the value as a whole.

The set is closed on purpose: a mapping is data a platform team edits, so anything it can do is listed,
documented (`describe_transforms()`, from each function's first docstring line) and tested here.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

from itam_sync.model.canonical import FieldKind
from itam_sync.model.identifiers import (
    normalize_email,
    normalize_fqdn,
    normalize_hostname,
    normalize_imei,
    normalize_mac,
    normalize_macs,
    normalize_serial,
    normalize_uuid,
)

log = logging.getLogger(__name__)

Transform = Callable[[Any], Any]


class TransformError(ValueError):
    """A transform could not convert a value (e.g. a non-date in a date field)."""

    def __init__(self, message: str, value: Any) -> None:
        super().__init__(message)
        self.message = message
        self.value = value


class TransformConfigError(ValueError):
    """A transform was configured wrongly in a mapping (bad or missing parameter)."""


class _NoParam:
    """Marker for "the mapping gave no parameter" (None is a legitimate parameter value)."""

    def __repr__(self) -> str:
        return "NO_PARAM"


NO_PARAM: Final = _NoParam()

# Spellings of "no value" that parsing transforms read as None instead of failing the record.
NULL_TOKENS: frozenset[str] = frozenset({"", "null", "none", "nil", "n/a", "na", "-", "--"})


def _is_empty(v: Any) -> bool:
    return v is None or v == "" or v == [] or v == {}


def _null_token(s: str) -> bool:
    return s.strip().lower() in NULL_TOKENS


def _each(fn: Transform) -> Transform:
    """Lift a scalar transform so it also applies to each element of a list (dropping None results)."""

    def apply(v: Any) -> Any:
        if v is None:
            return None
        if type(v) is list:
            out = [r for x in v if (r := fn(x)) is not None]
            return out or None
        return fn(v)

    apply.__doc__ = fn.__doc__
    return apply


# ------------------------------------------------------------------------------------------- text


def t_lower(v: Any) -> Any:
    """Lower-case a string (other values pass through)."""
    return v.lower() if isinstance(v, str) else v


def t_upper(v: Any) -> Any:
    """Upper-case a string (other values pass through)."""
    return v.upper() if isinstance(v, str) else v


def t_strip(v: Any) -> Any:
    """Trim surrounding whitespace; an empty or blank string becomes None."""
    if isinstance(v, str):
        s = v.strip()
        return s or None
    return v


# ------------------------------------------------------------------------------------ identifiers


def t_mac(v: Any) -> list[str] | None:
    """MAC address(es), one or a list or a separated string, to a de-duplicated list of 12-hex-digit MACs.

    Every well-formed MAC is kept, virtual and randomised ones included: whether a MAC may be used to
    join records is identity resolution's decision, not the mapping's.
    """
    if isinstance(v, list):
        out: list[str] = []
        for item in v:
            m = normalize_mac(item)
            # An element that is not one MAC may be several in one string ("aa:..;bb:..").
            for mac in (m,) if m is not None else normalize_macs(item) if isinstance(item, str) else ():
                if mac not in out:  # lists are short: a scan beats building a set
                    out.append(mac)
        return out or None
    return normalize_macs(v) or None


# ---------------------------------------------------------------------------------- date and time

_DATE_FAST_LEN = 10  # "YYYY-MM-DD"
_DATETIME_FAST_LEN = 20  # "YYYY-MM-DDTHH:MM:SSZ"
# Dates before this are placeholders (.NET's 0001-01-01, "never synced"), not real events.
_MIN_YEAR = 1900
_EPOCH_ZERO = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ZERO_TEXT = "1970-01-01T00:00:00Z"


def _from_epoch(x: float, original: Any) -> datetime:
    """Epoch seconds, milliseconds or microseconds (told apart by size) to an aware UTC datetime."""
    if not math.isfinite(x):
        raise TransformError("not a finite epoch timestamp", original)
    ax = abs(x)
    if ax >= 1e14:
        x /= 1e6
    elif ax >= 1e11:  # 1e11 seconds is the year 5138, so this is milliseconds
        x /= 1e3
    try:
        return datetime.fromtimestamp(x, tz=UTC)
    except (OverflowError, OSError, ValueError) as e:
        raise TransformError("epoch timestamp out of range", original) from e


def _parse_moment(v: Any, fmt: str | None) -> date | None:
    """Read a date or date-time from the forms sources use: ISO-8601, epoch s/ms/us (number or digit
    string), RFC 2822 ("Sat, 01 Jun 2024 12:00:00 GMT"), or `fmt` (a strptime format) when configured.
    Returns a `date`, a naive or aware `datetime`, or None for null spellings and placeholder dates."""
    if v is None:
        return None
    if isinstance(v, datetime | date):
        d: date = v
    elif isinstance(v, bool):
        raise TransformError("expected a date or time, got a boolean", v)
    elif isinstance(v, int | float):
        d = _from_epoch(float(v), v)
    elif isinstance(v, str):
        s = v.strip()
        if s.lower() in NULL_TOKENS:
            return None
        d = _parse_moment_text(s, fmt, v)
    else:
        raise TransformError(f"expected a date or time, got {type(v).__name__}", v)
    if d.year < _MIN_YEAR or d == _EPOCH_ZERO:
        return None
    return d


def _parse_moment_text(s: str, fmt: str | None, original: Any) -> date:
    if fmt is not None:
        try:
            return datetime.strptime(s, fmt)
        except ValueError as e:
            raise TransformError(f"does not match the configured format {fmt!r}", original) from e
    # Digit strings other than ISO basic "YYYYMMDD" are epoch timestamps.
    if len(s) != 8 and s.replace(".", "", 1).isdigit():
        return _from_epoch(float(s), original)
    try:
        return datetime.fromisoformat(s)
    except ValueError:
        pass
    if s[-4:] in (" UTC", " GMT"):
        try:
            return datetime.fromisoformat(s[:-4]).replace(tzinfo=UTC)
        except ValueError:
            pass
    try:
        return parsedate_to_datetime(s)
    except (TypeError, ValueError, IndexError):
        pass
    raise TransformError("not a recognised date/time (ISO-8601, epoch or RFC 2822)", original)


def _date_text(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def _datetime_text(d: date) -> str:
    if isinstance(d, datetime):
        if d.tzinfo is not None:
            d = d.astimezone(UTC)
        return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}Z"
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T00:00:00Z"


def to_date(v: Any, fmt: str | None = None) -> str | None:
    """Date to "YYYY-MM-DD" from ISO-8601, epoch s/ms, RFC 2822 or a configured strptime format.

    A date-time keeps the calendar date written in its own offset (no shift to UTC); epochs are UTC.
    """
    if type(v) is str and len(v) == _DATE_FAST_LEN and fmt is None and v[4] == "-" and v[7] == "-":
        # Already canonical (the common case, and the engine's re-check): validate, return as is.
        try:
            d = date.fromisoformat(v)
        except ValueError:
            pass
        else:
            return v if d.year >= _MIN_YEAR else None
    m = _parse_moment(v, fmt)
    return None if m is None else _date_text(m)


def to_datetime(v: Any, fmt: str | None = None) -> str | None:
    """Date-time to UTC "YYYY-MM-DDTHH:MM:SSZ"; naive values are taken as UTC, dates as midnight UTC."""
    if type(v) is str and len(v) == _DATETIME_FAST_LEN and fmt is None and v[10] == "T" and v[19] == "Z":
        try:
            d = datetime.fromisoformat(v)
        except ValueError:
            pass
        else:
            return v if d.year >= _MIN_YEAR and v != _EPOCH_ZERO_TEXT else None
    m = _parse_moment(v, fmt)
    return None if m is None else _datetime_text(m)


def _date_factory(param: Any, options: Mapping[str, Any]) -> Transform:
    """Date to "YYYY-MM-DD" (ISO-8601, epoch s/ms, RFC 2822; `{date: "%m/%d/%Y"}` for another format)."""
    fmt = _optional_str(param, "date", "a strptime format such as '%m/%d/%Y'")
    if fmt is None:
        return to_date
    return lambda v: to_date(v, fmt)


def _datetime_factory(param: Any, options: Mapping[str, Any]) -> Transform:
    """Date-time to UTC "YYYY-MM-DDTHH:MM:SSZ" (ISO-8601, epoch s/ms, RFC 2822, or a strptime format)."""
    fmt = _optional_str(param, "datetime", "a strptime format such as '%d.%m.%Y %H:%M'")
    if fmt is None:
        return to_datetime
    return lambda v: to_datetime(v, fmt)


# ------------------------------------------------------------------------------- bool and numbers

_TRUE: frozenset[str] = frozenset({"true", "t", "yes", "y", "1", "on", "enabled", "enable"})
_FALSE: frozenset[str] = frozenset({"false", "f", "no", "n", "0", "off", "disabled", "disable"})


def to_bool(v: Any) -> bool | None:
    """Boolean from true/false, yes/no, y/n, 1/0, on/off, enabled/disabled (any case)."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        if v == 1:
            return True
        if v == 0:
            return False
        raise TransformError("not a boolean (numbers must be 0 or 1)", v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        if s in NULL_TOKENS:
            return None
        raise TransformError("not a boolean (true/false, yes/no, 1/0, on/off, enabled/disabled)", v)
    raise TransformError(f"not a boolean: got {type(v).__name__}", v)


_SYM = "$€£¥₹₩₽¢"
# Optional sign, optional currency (symbol or ISO code) on either side, then 1234 / 1,234,567 / .5 with
# optional decimals. "," is only ever a thousands separator: "1.299,00" fails rather than being misread.
_MONEY_RE = re.compile(
    rf"(?P<s1>[-+])?\s*(?:(?:[A-Za-z]{{3}}|[{_SYM}])\s*)?(?P<s2>[-+])?\s*"
    rf"(?P<num>(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d*)?|\.\d+)\s*(?:[A-Za-z]{{3}}|[{_SYM}])?"
)


def to_number(v: Any) -> float | None:
    """Number as float; strips currency symbols/codes and "," thousands separators ("$1,299.00" -> 1299.0)."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise TransformError("expected a number, got a boolean", v)
    if isinstance(v, int | float):
        f = float(v)
    elif isinstance(v, str):
        s = v.strip()
        try:
            f = float(s)
        except ValueError:
            if s.lower() in NULL_TOKENS:
                return None
            m = _MONEY_RE.fullmatch(s)
            if m is None:
                raise TransformError("not a number", v) from None
            f = float(m["num"].replace(",", ""))
            if "-" in (m["s1"], m["s2"]):
                f = -f
    else:
        raise TransformError(f"expected a number, got {type(v).__name__}", v)
    if not math.isfinite(f):
        raise TransformError("not a finite number", v)
    return f


def to_int(v: Any) -> int | None:
    """Whole number; accepts "1,200", "12.0" and floats without a fraction, rejects 12.5."""
    if v is None:
        return None
    if type(v) is int:
        return v
    if isinstance(v, str):
        s = v.strip()
        if s.isascii() and s.isdigit():
            return int(s)
    f = to_number(v)
    if f is None:
        return None
    if not f.is_integer():
        raise TransformError("not a whole number", v)
    return int(f)


# --------------------------------------------------------------------------------- lists and maps


def t_first_non_empty(v: Any) -> Any:
    """From a list, the first element that is not null, "" or an empty list."""
    if isinstance(v, list):
        for x in v:
            if not _is_empty(x):
                return x
        return None
    return None if _is_empty(v) else v


def t_list(v: Any) -> list[Any] | None:
    """Wrap a single value into a list; from a list, drop null and empty elements."""
    if isinstance(v, list):
        out = [x for x in v if not _is_empty(x)]
        return out or None
    return None if _is_empty(v) else [v]


def t_pairs(v: Any) -> list[str] | None:
    """Key/value object (cloud tags, labels) to a list of "key=value" strings, in the object's order."""
    if v is None:
        return None
    if not isinstance(v, Mapping):
        raise TransformError(f"expected an object of key/values, got {type(v).__name__}", v)
    out = [f"{k}={'' if val is None else val}" for k, val in v.items() if str(k).strip()]
    return out or None


def _split_factory(param: Any, options: Mapping[str, Any]) -> Transform:
    """Split a string on a separator (default ",") into a list of trimmed, non-empty parts."""
    sep = _optional_str(param, "split", "the separator, e.g. ','") or ","

    def split(v: Any) -> list[str] | None:
        if v is None:
            return None
        items = v if isinstance(v, list) else [v]
        out = [p for x in items if x is not None for part in str(x).split(sep) if (p := part.strip())]
        return out or None

    return split


def _join_factory(param: Any, options: Mapping[str, Any]) -> Transform:
    """Join a list's non-empty elements into one string with a separator (default " ")."""
    sep = _optional_str(param, "join", "the separator, e.g. ', '")
    if sep is None:
        sep = " "

    def join(v: Any) -> str | None:
        if v is None:
            return None
        items = v if isinstance(v, list) else [v]
        s = sep.join(str(x) for x in items if not _is_empty(x))
        return s or None

    return join


def _map_key(v: Any) -> str:
    """How `map` compares keys: case-insensitive, trimmed text; JSON/YAML booleans as "true"/"false"."""
    if type(v) is str:
        return v.strip().lower()
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v).strip().lower()


def _map_factory(param: Any, options: Mapping[str, Any]) -> Transform:
    """Replace values by a table (keys match case-insensitively); unmapped values become `default` when
    one is given, otherwise they pass through unchanged (an enum field then rejects them loudly)."""
    if not isinstance(param, Mapping) or not param:
        raise TransformConfigError("map needs a non-empty table, e.g. "
                                   "{map: {ACTIVE: active}, default: active}")
    table: dict[str, Any] = {}
    for k, val in param.items():
        key = _map_key(k)
        if key in table and table[key] != val:
            raise TransformConfigError(f"map has two entries for {key!r} (keys are case-insensitive)")
        table[key] = val
    has_default = "default" in options
    default = options.get("default")

    def mapped(v: Any) -> Any:
        r = table.get(_map_key(v), NO_PARAM)
        if r is NO_PARAM:
            return default if has_default else v
        return r

    return _each(mapped)


def _prefix_factory(param: Any, options: Mapping[str, Any]) -> Transform:
    """Put a fixed text in front of a value (e.g. {prefix: "okta:"} for tags)."""
    text = _required_str(param, "prefix")
    return _each(lambda v: text + str(v))


def _suffix_factory(param: Any, options: Mapping[str, Any]) -> Transform:
    """Append a fixed text to a value."""
    text = _required_str(param, "suffix")
    return _each(lambda v: str(v) + text)


def _optional_str(param: Any, name: str, what: str) -> str | None:
    if param is NO_PARAM or param is None:
        return None
    if not isinstance(param, str) or not param:
        raise TransformConfigError(f"{name} takes {what}; got {param!r}")
    return param


def _required_str(param: Any, name: str) -> str:
    if not isinstance(param, str) or not param:
        raise TransformConfigError(f"{name} needs a text parameter, e.g. {{{name}: 'text'}}; got "
                                   f"{'nothing' if param is NO_PARAM else repr(param)}")
    return param


# ------------------------------------------------------------------------------------ the registry


@dataclass(frozen=True, slots=True)
class TransformDef:
    """One named transform: how to build it from its YAML parameter, and what it is known to yield.

    `canonical_for` is the field kind whose canonical form the output already is, so the engine can skip
    re-checking it; `yields_list` lets the loader reject a list-producing chain feeding a scalar field.
    """

    name: str
    doc: str
    build: Callable[[Any, Mapping[str, Any]], Transform]
    takes_param: bool = False
    param_required: bool = False
    options: frozenset[str] = frozenset()
    canonical_for: FieldKind | None = None
    yields_list: bool = False


def _fixed(fn: Transform) -> Callable[[Any, Mapping[str, Any]], Transform]:
    return lambda param, options: fn


def _doc(fn: Callable[..., Any]) -> str:
    """The first paragraph of `fn`'s docstring as one line: the transform's entry in the docs."""
    first = (fn.__doc__ or "").strip().split("\n\n", 1)[0]
    return " ".join(first.split())


def _simple(name: str, fn: Transform, *, elementwise: bool = False, canonical_for: FieldKind | None = None,
            yields_list: bool = False, doc: str | None = None) -> TransformDef:
    built = _each(fn) if elementwise else fn
    return TransformDef(name, doc or _doc(fn), _fixed(built), canonical_for=canonical_for,
                        yields_list=yields_list)


def _with_param(name: str, factory: Callable[[Any, Mapping[str, Any]], Transform], *, required: bool = False,
                options: frozenset[str] = frozenset(), canonical_for: FieldKind | None = None,
                yields_list: bool = False) -> TransformDef:
    return TransformDef(name, _doc(factory), factory, takes_param=True, param_required=required,
                        options=options, canonical_for=canonical_for, yields_list=yields_list)


TRANSFORMS: dict[str, TransformDef] = {d.name: d for d in (
    _simple("lower", t_lower, elementwise=True),
    _simple("upper", t_upper, elementwise=True),
    _simple("strip", t_strip, elementwise=True),
    # The identifier normalisers are registered directly (no wrapper call per value on the hot path).
    _simple("serial", normalize_serial, elementwise=True,
            doc="Serial number: upper case, no whitespace or quotes; junk placeholders become None."),
    _simple("hostname", normalize_hostname, elementwise=True,
            doc="Short host name, lower case; IP addresses and junk become None."),
    _simple("fqdn", normalize_fqdn, elementwise=True,
            doc="Fully qualified host name, lower case, no trailing dot; IP addresses and junk become None."),
    _simple("email", normalize_email, elementwise=True,
            doc='E-mail address, lower case, without "mailto:"; anything else becomes None.'),
    _simple("uuid", normalize_uuid, elementwise=True,
            doc="Hardware UUID to lower-case 8-4-4-4-12; malformed and junk UUIDs become None."),
    _simple("imei", normalize_imei, elementwise=True,
            doc="IMEI: 14-16 digits, separators removed; anything else becomes None."),
    _simple("mac", t_mac, canonical_for=FieldKind.LIST, yields_list=True),
    _with_param("date", _date_factory, canonical_for=FieldKind.DATE),
    _with_param("datetime", _datetime_factory, canonical_for=FieldKind.DATETIME),
    _simple("bool", to_bool, canonical_for=FieldKind.BOOL),
    _simple("int", to_int, canonical_for=FieldKind.INTEGER),
    _simple("number", to_number, canonical_for=FieldKind.NUMBER),
    _simple("float", to_number, canonical_for=FieldKind.NUMBER),
    _with_param("map", _map_factory, required=True, options=frozenset({"default"})),
    _simple("first_non_empty", t_first_non_empty),
    _with_param("split", _split_factory, yields_list=True),
    _with_param("join", _join_factory),
    _simple("list", t_list, yields_list=True),
    _simple("pairs", t_pairs, yields_list=True),
    _with_param("prefix", _prefix_factory, required=True),
    _with_param("suffix", _suffix_factory, required=True),
)}


def build_transform(name: str, param: Any = NO_PARAM, options: Mapping[str, Any] | None = None) -> Transform:
    """Build the named transform with its parameter and options; raises `TransformConfigError` (unknown
    name, missing or unexpected parameter, unknown option) with a message that says how to fix it."""
    d = TRANSFORMS.get(name)
    if d is None:
        raise TransformConfigError(f"unknown transform {name!r}; known: {', '.join(sorted(TRANSFORMS))}")
    opts = dict(options or {})
    if param is NO_PARAM and d.param_required:
        raise TransformConfigError(f"transform {name!r} needs a parameter: write it as {{{name}: ...}}")
    if param is not NO_PARAM and not d.takes_param:
        raise TransformConfigError(f"transform {name!r} takes no parameter: write it as a plain name")
    unknown = sorted(set(opts) - d.options)
    if unknown:
        allowed = ", ".join(sorted(d.options)) or "none"
        raise TransformConfigError(f"transform {name!r} has no option {', '.join(map(repr, unknown))} "
                                   f"(options: {allowed})")
    return d.build(param, opts)


def describe_transforms() -> list[tuple[str, str]]:
    """(name, one-line description) of every transform, sorted by name: the reference for mapping authors."""
    return [(name, TRANSFORMS[name].doc) for name in sorted(TRANSFORMS)]
