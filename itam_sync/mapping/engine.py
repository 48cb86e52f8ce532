"""Compiled mappings: one raw source record in, one `Observation` out, fast.

Longer than 500 lines because the compiler and the per-record hot loop share private closures that are
kept together for speed (see bench/bench_merge.py).

Everything that can be decided once is decided when the mapping loads: expressions are compiled (plain
dotted paths become dict look-ups, only real JMESPath goes through `jmespath`), transforms are built,
constants are evaluated, and each field becomes one closure. `StreamMapping.map` is then a tight loop
over those closures; the target is ~1M records per run at well under 10us per record.

Behaviour, in one place:
- A field's value comes from its expression, run through its transforms in order, then through the
  canonical field kind's check (text, enum choice, date, number, ...; skipped when the last transform
  already yields that kind's canonical form). A transform yielding None stops the chain.
- With several expressions (`from: [a, b]`), each is tried in that order through the whole chain and
  the first non-empty result wins, so a junk value ("To Be Filled By O.E.M.") gives way to the next
  source field just as a missing one does. "", [], None and blank strings are empty. A JMESPath
  function given the wrong type (e.g. `join` over a missing name) counts as empty.
- Values that cannot be read (a non-date in a date field, "abc" as a cost, an enum value outside its
  choices) fail the record with a `MappingError` naming the field, the expression, the failing step
  and the value; the run decides whether to skip or stop.
- Empty results are omitted from `Observation.fields`: the source says nothing about that field.
- `source_key` is required (a record without one fails); `observed_at` is optional ISO UTC.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathTypeError
from jmespath.functions import Functions

from itam_sync.mapping.transforms import (
    NO_PARAM,
    TRANSFORMS,
    Transform,
    TransformError,
    build_transform,
    to_bool,
    to_date,
    to_datetime,
    to_int,
    to_number,
)
from itam_sync.model.canonical import EntityType, FieldKind, FieldSpec
from itam_sync.model.observation import Observation

log = logging.getLogger(__name__)

Getter = Callable[[Any], Any]
Record = dict[str, Any]

# A JMESPath made only of identifiers and dots means exactly "nested dict look-up" (JMESPath has no
# reserved words among unquoted identifiers), so it can skip the JMESPath interpreter.
_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_SIMPLE_PATH_RE = re.compile(_PATH)
# `[a, b.c]` (a multi-select list of plain paths, e.g. several MAC columns) is common enough to get its
# own fast getter: same result as JMESPath on an object, a list with None for missing members.
_PATH_LIST_RE = re.compile(rf"\[\s*{_PATH}(?:\s*,\s*{_PATH})*\s*\]")
_JMESPATH_FUNCTIONS: dict[str, Any] = Functions().FUNCTION_TABLE


class MappingError(Exception):
    """A record that cannot be mapped: no source key, or a field value that cannot be converted."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnmappedStreamError(LookupError):
    """A connector produced a stream the mapping has no entry for (a configuration error, not a record's)."""


# ------------------------------------------------------------------------------------- expressions


def _path_getter(parts: tuple[str, ...]) -> Getter:
    """A getter for a dotted path made of plain dict look-ups (non-dict in the middle -> None)."""
    if len(parts) == 1:
        (a,) = parts

        def get1(r: Any) -> Any:
            return r.get(a)

        return get1
    if len(parts) == 2:
        a, b = parts

        def get2(r: Any) -> Any:
            v = r.get(a)
            return v.get(b) if isinstance(v, dict) else None

        return get2
    if len(parts) == 3:
        a, b, c = parts

        def get3(r: Any) -> Any:
            v = r.get(a)
            if not isinstance(v, dict):
                return None
            v = v.get(b)
            return v.get(c) if isinstance(v, dict) else None

        return get3

    def getn(r: Any) -> Any:
        v = r
        for p in parts:
            if not isinstance(v, dict):
                return None
            v = v.get(p)
        return v

    return getn


def check_jmespath_functions(expr: str) -> list[str]:
    """Problems with the functions an expression calls (unknown name, wrong number of arguments).

    JMESPath only reports these when the call is evaluated, which could be mid-run on some record;
    checking the parsed tree here moves the failure to load time.
    """
    problems: list[str] = []

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        if node.get("type") == "function_expression":
            name = node.get("value")
            nargs = len(node.get("children", []))
            entry = _JMESPATH_FUNCTIONS.get(name) if isinstance(name, str) else None
            if entry is None:
                problems.append(f"unknown JMESPath function {name}(); known: "
                                f"{', '.join(sorted(_JMESPATH_FUNCTIONS))}")
            else:
                sig = entry["signature"]
                variadic = bool(sig) and bool(sig[-1].get("variadic"))
                if (nargs < len(sig)) if variadic else (nargs != len(sig)):
                    want = f"at least {len(sig)}" if variadic else str(len(sig))
                    problems.append(f"JMESPath function {name}() takes {want} argument(s), got {nargs}")
        for child in node.get("children", ()):
            walk(child)

    walk(jmespath.compile(expr).parsed)
    return problems


def compile_expression(expr: str) -> Getter:
    """Compile a source expression once: a dotted path becomes dict look-ups, anything else JMESPath.

    Raises `jmespath.exceptions.JMESPathError` (a `ValueError`) for an expression that does not parse.
    A JMESPath type error at search time (a function given null) yields None: "the source says nothing".
    """
    expr = expr.strip()
    if _SIMPLE_PATH_RE.fullmatch(expr):
        return _path_getter(tuple(expr.split(".")))
    if _PATH_LIST_RE.fullmatch(expr):
        gs = tuple(_path_getter(tuple(p.strip().split("."))) for p in expr[1:-1].split(","))
        if len(gs) == 2:
            g1, g2 = gs
            return lambda r: [g1(r), g2(r)]
        return lambda r: [g(r) for g in gs]
    search = jmespath.compile(expr).search

    def get(r: Any) -> Any:
        try:
            return search(r)
        except JMESPathTypeError:
            return None

    return get


# ---------------------------------------------------------------------------------- kind checks


def _kind_text(v: Any) -> str | None:
    """Text fields take strings; numbers become their text (12345.0 -> "12345"); blank is empty."""
    if type(v) is str:
        return None if v.isspace() else v
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TransformError(f"expected text, got {_kind_name(v)}", v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise TransformError("expected text, got a non-finite number", v)
        if v.is_integer():
            return str(int(v))
    return str(v)


def _kind_enum(choices: tuple[str, ...]) -> Transform:
    allowed = frozenset(choices)

    def check(v: Any) -> str | None:
        if type(v) is str:
            if v in allowed:
                return v
            s = v.strip().lower()
            if s in allowed:
                return s
            if not s:
                return None
            raise TransformError(f"not one of {', '.join(choices)} (add a `map` transform to translate it)",
                                 v)
        raise TransformError(f"expected one of {', '.join(choices)}, got {_kind_name(v)}", v)

    return check


def _kind_list(v: Any) -> list[str] | None:
    """List fields are de-duplicated lists of non-empty strings, in first-seen order."""
    items = v if isinstance(v, list) else [v]
    out: dict[str, None] = {}
    for x in items:
        if x is None:
            continue
        if type(x) is str:
            s = x.strip()
        elif isinstance(x, int | float) and not isinstance(x, bool):
            s = str(x)
        else:
            raise TransformError(f"list elements must be text, got {_kind_name(x)}", v)
        if s:
            out[s] = None
    return list(out) or None


def _kind_name(v: Any) -> str:
    if isinstance(v, list):
        return "a list (use first_non_empty or join)"
    if isinstance(v, dict):
        return "an object (point the expression at one of its members)"
    if isinstance(v, bool):
        return "a boolean"
    return type(v).__name__


def kind_check(spec: FieldSpec) -> Transform:
    """The function that puts a value into `spec`'s canonical form or raises `TransformError`."""
    k = spec.kind
    if k is FieldKind.TEXT:
        return _kind_text
    if k is FieldKind.ENUM:
        return _kind_enum(spec.choices)
    if k is FieldKind.LIST:
        return _kind_list
    # The parsers reject lists and objects themselves, naming the type they got.
    parsers: dict[FieldKind, Transform] = {
        FieldKind.DATE: to_date,
        FieldKind.DATETIME: to_datetime,
        FieldKind.NUMBER: to_number,
        FieldKind.INTEGER: to_int,
        FieldKind.BOOL: to_bool,
    }
    return parsers[k]


# ------------------------------------------------------------------------------------- field rules


class _NoConstant:
    def __repr__(self) -> str:
        return "NO_CONSTANT"


NO_CONSTANT: Any = _NoConstant()


@dataclass(frozen=True, slots=True)
class TransformStep:
    """One configured transform: its name, its parameter (NO_PARAM when none) and its options."""

    name: str
    param: Any = NO_PARAM
    options: MappingABC[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        """How the step is named in error messages."""
        return self.name if self.param is NO_PARAM else f"{self.name}({self.param!r})"


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one canonical field is filled: source expressions (first non-empty wins) or a constant, then
    transforms. `compile()` turns it into the per-record closure. `optional`: the source may leave its paths
    out of every record (the run's data contract does not flag that; itam_sync/engine/contracts.py)."""

    name: str
    spec: FieldSpec
    expressions: tuple[str, ...] = ()
    steps: tuple[TransformStep, ...] = ()
    constant: Any = NO_CONSTANT
    optional: bool = False

    @property
    def is_constant(self) -> bool:
        """True when the field is a fixed `value:` rather than read from the record."""
        return self.constant is not NO_CONSTANT

    def source_text(self) -> str:
        """The rule's source as written, for error messages."""
        if self.is_constant:
            return f"value {self.constant!r}"
        if len(self.expressions) == 1:
            return repr(self.expressions[0])
        return "first non-empty of [" + ", ".join(map(repr, self.expressions)) + "]"

    def _transforms(self) -> list[Transform]:
        return [build_transform(s.name, s.param, s.options) for s in self.steps]

    def _final_check(self) -> Transform | None:
        """The kind check, unless the last transform already yields this kind's canonical form."""
        if self.steps and TRANSFORMS[self.steps[-1].name].canonical_for is self.spec.kind:
            return None
        return kind_check(self.spec)

    def evaluate_constant(self) -> Any:
        """The constant after transforms and the kind check (None = empty); raises `MappingError`."""
        v = self.constant
        try:
            for t in self._transforms():
                if v is None:
                    break
                v = t(v)
            if _empty(v):
                return None
            check = self._final_check()
            return v if check is None else check(v)
        except TransformError as e:
            raise MappingError(f"constant {self.constant!r} does not fit {self.spec.kind.value} field "
                               f"{self.name!r}: {e.message}: {e.value!r}") from e

    def compile(self) -> Callable[[Any], Any]:
        """The per-record closure: raw record -> canonical value or None. Raises `TransformError`."""
        getters = tuple(compile_expression(e) for e in self.expressions)
        transforms = tuple(self._transforms())
        check = self._final_check()
        # A few shapes cover nearly every field; specialising them keeps the per-field cost to a couple
        # of calls instead of generic loops.
        if len(getters) == 1 and not transforms:
            g = getters[0]
            assert check is not None  # without transforms the kind check always runs
            kcheck = check
            if kcheck is _kind_text:  # the most common field of all: a text column copied as is

                def plain_text(r: Any) -> Any:
                    v = g(r)
                    if type(v) is str:
                        return None if not v or v.isspace() else v
                    if v is None or v == []:
                        return None
                    return _kind_text(v)

                return plain_text

            def plain(r: Any) -> Any:
                v = g(r)
                if v is None or v == "" or v == []:
                    return None
                return kcheck(v)

            return plain
        if len(getters) == 1 and len(transforms) == 1:
            g, t = getters[0], transforms[0]
            if check is _kind_text:  # e.g. serial/hostname/email/strip into a text field

                def one_text(r: Any) -> Any:
                    v = g(r)
                    if v is None or v == "" or v == []:
                        return None
                    v = t(v)
                    if type(v) is str:
                        return None if not v or v.isspace() else v
                    if v is None or v == []:
                        return None
                    return _kind_text(v)

                return one_text

            def one(r: Any) -> Any:
                v = g(r)
                if v is None or v == "" or v == []:
                    return None
                v = t(v)
                if v is None or v == "" or v == []:
                    return None
                return v if check is None else check(v)

            return one

        def general(r: Any) -> Any:
            # Each alternative runs through the whole chain: one whose value normalises to nothing
            # (a junk serial, a placeholder date) gives way to the next, like a missing one.
            for g in getters:
                v = g(r)
                if v is None or v == "" or v == [] or (type(v) is str and v.isspace()):
                    continue
                for t in transforms:
                    v = t(v)
                    if v is None:
                        break
                if v is None or v == "" or v == []:
                    continue
                if check is not None:
                    v = check(v)
                    if v is None:
                        continue
                return v
            return None

        return general

    def diagnose(self, raw: Any, error: TransformError) -> str:
        """Explain a failure on `raw` (slow path, only after an error): which expression and step saw
        which value. Replays the evaluation order of `compile()`; the first step that raises is the one."""
        step_label, value, source = "the field kind check", error.value, self.source_text()
        try:
            transforms = self._transforms()
            check = self._final_check()
            for expr in self.expressions:
                v = compile_expression(expr)(raw)
                if _empty(v) or (isinstance(v, str) and v.isspace()):
                    continue
                failed = False
                for step, t in zip(self.steps, transforms, strict=True):
                    try:
                        v = t(v)
                    except TransformError as te:
                        step_label, value, failed = f"transform {step.label()}", te.value, True
                        break
                    if v is None:
                        break
                if not failed and not _empty(v) and check is not None:
                    try:
                        v = check(v)
                    except TransformError as te:
                        value, failed = te.value, True
                if failed:
                    source = repr(expr)
                    break
                if v is not None and not _empty(v):
                    break  # this alternative succeeded: the failure was not in this field's evaluation
        except Exception:  # noqa: BLE001 - diagnosis must never hide the original error
            log.debug("could not diagnose mapping failure of %s", self.name, exc_info=True)
        return (f"field {self.name!r} ({self.spec.kind.value}) from {source}: {step_label} "
                f"failed: {error.message}: {value!r}")


def _empty(v: Any) -> bool:
    return v is None or v == "" or v == []


def _as_source_key(v: Any) -> str | None:
    """A record's key as text; None when missing, blank or not a scalar. Text keys are stripped: an export's
    trailing space (`cs-a2 `) must not make a key an operator cannot type."""
    t = type(v)
    if t is str:
        return None if not v or v.isspace() else v.strip()
    if t is int:
        return str(v)
    if t is float and math.isfinite(v):
        return str(int(v)) if v.is_integer() else str(v)
    return None


# --------------------------------------------------------------------------------------- streams


class StreamMapping:
    """The compiled mapping of one stream: raw record -> `Observation` for one entity type."""

    __slots__ = ("name", "entity", "key_expression", "observed_at_expressions", "rules", "source_name",
                 "_key", "_observed_at", "_constants", "_dynamic", "_rules_by_name")

    def __init__(self, name: str, entity: EntityType, key_expression: str, rules: Iterable[FieldRule],
                 observed_at_expressions: Iterable[str] = (), source_name: str = "<mapping>") -> None:
        """Compile the stream. Raises `MappingError` for a constant that does not fit its field and
        `jmespath.exceptions.JMESPathError` for an expression that does not parse."""
        self.name = name
        self.entity = entity
        self.key_expression = key_expression
        self.observed_at_expressions = tuple(observed_at_expressions)
        self.rules = tuple(rules)
        self.source_name = source_name
        self._key = compile_expression(key_expression)
        self._observed_at = tuple(compile_expression(e) for e in self.observed_at_expressions)
        constants: dict[str, Any] = {}
        dynamic: list[tuple[str, Callable[[Any], Any]]] = []
        for rule in self.rules:
            if rule.is_constant:
                value = rule.evaluate_constant()
                if value is not None:
                    constants[rule.name] = value
            else:
                dynamic.append((rule.name, rule.compile()))
        self._constants = constants
        self._dynamic = tuple(dynamic)
        self._rules_by_name = {r.name: r for r in self.rules}

    def __repr__(self) -> str:
        return f"StreamMapping({self.name!r}, entity={self.entity.value}, fields={len(self.rules)})"

    def map(self, raw: Record, stream: str | None = None) -> Observation:
        """Map one raw record. `stream` (default: this mapping's stream name) is stored on the result.

        Raises `MappingError` when the record has no usable key or a field value cannot be converted.
        """
        key = self.source_key(raw)
        fields = self._constants.copy()
        name = ""
        try:
            for name, fn in self._dynamic:
                v = fn(raw)
                if v is not None:
                    fields[name] = v
        except TransformError as e:
            raise MappingError(f"stream {self.name!r}, record {key!r}: "
                               f"{self._rules_by_name[name].diagnose(raw, e)}") from e
        observed_at = self._observed(raw, key) if self._observed_at else None
        return Observation(self.entity, stream or self.name, key, fields, observed_at)

    def source_key(self, raw: Record) -> str:
        """The record's source key as text, without mapping its fields (lets a run skip unchanged
        records cheaply). Raises `MappingError` when the record is not an object or has no usable key."""
        if not isinstance(raw, dict):
            raise MappingError(f"stream {self.name!r}: a record must be an object, got {type(raw).__name__}")
        value = self._key(raw)
        key = _as_source_key(value)
        if key is None:
            raise MappingError(f"stream {self.name!r}: no source key: {self.key_expression!r} gave {value!r}")
        return key

    def _observed(self, raw: Record, key: str) -> str | None:
        # Alternatives in order; a placeholder time (year 1, epoch 0) gives way to the next one.
        for expr, g in zip(self.observed_at_expressions, self._observed_at, strict=True):
            v = g(raw)
            if v is None or v == "" or v == [] or (type(v) is str and v.isspace()):
                continue
            try:
                out = to_datetime(v)
            except TransformError as e:
                raise MappingError(f"stream {self.name!r}, record {key!r}: observed_at from {expr!r}: "
                                   f"{e.message}: {e.value!r}") from e
            if out is not None:
                return out
        return None


class Mapping:
    """A connector's compiled mapping file: stream name -> `StreamMapping`."""

    __slots__ = ("streams", "source_name")

    def __init__(self, streams: MappingABC[str, StreamMapping], source_name: str = "<mapping>") -> None:
        self.streams: dict[str, StreamMapping] = dict(streams)
        self.source_name = source_name

    def __repr__(self) -> str:
        return f"Mapping({self.source_name!r}, streams={sorted(self.streams)})"

    def stream(self, name: str) -> StreamMapping:
        """The mapping of stream `name`; raises `UnmappedStreamError` when the file does not cover it."""
        try:
            return self.streams[name]
        except KeyError:
            covered = ", ".join(sorted(self.streams)) or "none"
            raise UnmappedStreamError(
                f"{self.source_name}: the connector produced stream {name!r}, which the mapping does not "
                f"cover (it maps: {covered}); add a {name!r} entry under `streams:`") from None

    def map(self, stream: str, raw: Record) -> Observation:
        """Map one raw record of `stream` (shorthand for `self.stream(stream).map(raw, stream)`)."""
        return self.stream(stream).map(raw, stream)


__all__ = [
    "FieldRule",
    "Getter",
    "Mapping",
    "MappingError",
    "NO_CONSTANT",
    "StreamMapping",
    "TransformStep",
    "UnmappedStreamError",
    "check_jmespath_functions",
    "compile_expression",
    "kind_check",
]
