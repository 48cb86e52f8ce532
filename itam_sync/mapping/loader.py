"""Read and validate a mapping file (mappings/<connector>.yaml) into a compiled `Mapping`.

Format::

    streams:
      <stream name>:
        entity: asset | person | subscription
        key: <JMESPath>                        # required: the record's source key
        observed_at: <JMESPath> | [<JMESPath>, ...]   # optional: when the source saw the record
        fields:
          <canonical field>: <JMESPath>                       # short form
          <canonical field>: {from: <JMESPath> | [<JMESPath>, ...], transforms: [<transform>, ...]}
          <canonical field>: {from: ..., optional: true}      # the source may omit it from every record
          <canonical field>: {value: <constant>, transforms: [...]}

A transform is a name (`strip`) or a one-key dict with its parameter plus any options
(`{split: ","}`, `{map: {ACTIVE: active}, default: active}`); see `itam_sync.mapping.transforms`.

Every problem in the file is collected before failing, so one run of `validate` lists them all; each
message names the file, the line, the stream and the field, and says how to fix it. YAML is read with
YAML 1.2 booleans (only true/false), so `map` tables can use keys such as `ON`, `NO` or `Y` safely.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from jmespath.exceptions import IncompleteExpressionError, JMESPathError, LexerError, ParseError

from itam_sync.mapping.engine import (
    NO_CONSTANT,
    FieldRule,
    Mapping,
    MappingError,
    StreamMapping,
    TransformStep,
    check_jmespath_functions,
    compile_expression,
)
from itam_sync.mapping.transforms import NO_PARAM, TRANSFORMS, TransformConfigError, build_transform
from itam_sync.model.canonical import FIELDS, EntityType, FieldKind

log = logging.getLogger(__name__)

_TOP_KEYS = ("streams", "description")
_STREAM_KEYS = ("entity", "key", "observed_at", "fields", "description")
_FIELD_KEYS = ("from", "value", "transforms", "optional", "description")
_ENTITIES = tuple(e.value for e in EntityType)


class MappingLoadError(ValueError):
    """A mapping file that cannot be used; `problems` lists every problem found, one message each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        n = len(problems)
        head = f"{source}: {n} problem{'s' if n != 1 else ''} in mapping:"
        super().__init__(head + "".join("\n  " + p for p in problems))


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: yes/no/on/off/y/n stay strings (the "Norway problem")."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_Yaml12Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))


def _close(word: str, options: list[str] | tuple[str, ...]) -> str:
    """' Did you mean ...?' for near misses, else ''."""
    matches = difflib.get_close_matches(word, list(options), n=3, cutoff=0.6)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(repr(m) for m in matches) + "?"


def _jmespath_reason(e: JMESPathError) -> str:
    """A one-line reason for a JMESPath compile error (jmespath's own text spans several lines)."""
    if isinstance(e, IncompleteExpressionError):
        return "the expression ends too early (an unclosed bracket, brace or quote?)"
    if isinstance(e, LexerError):
        return f"{e.message} at character {e.lexer_position}"
    if isinstance(e, ParseError):
        what = f"unexpected {e.token_type.lower()} {e.token_value!r}" if e.token_value is not None else ""
        detail = "" if e.msg == ParseError._ERROR_MESSAGE else e.msg
        return ", ".join(x for x in (what, detail) if x) + f" at character {e.lex_position}"
    return str(e).splitlines()[0]


class _Checker:
    """Walks the YAML node tree, collecting problems with file:line context, and builds the mapping."""

    def __init__(self, source: str, loader: _Yaml12Loader) -> None:
        self.source = source
        self.loader = loader
        self.problems: list[str] = []

    # ---- helpers

    def problem(self, node: yaml.Node | None, context: str, message: str) -> None:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        prefix = f"{self.source}{line}: "
        self.problems.append(prefix + (f"{context}: " if context else "") + message)

    def pairs(self, node: yaml.MappingNode, context: str) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
        """(key, key node, value node) of a YAML mapping; reports non-text and duplicate keys.

        YAML merge keys (`<<: *common`) are resolved so shared field blocks can be reused; keys written
        out explicitly override merged ones, as in YAML, and only explicit repeats are reported.
        """
        seen: set[str] = set()
        for knode, _ in node.value:
            if isinstance(knode, yaml.ScalarNode) and knode.tag == "tag:yaml.org,2002:str":
                if knode.value in seen:
                    self.problem(knode, context,
                                 f"{knode.value!r} appears twice; YAML would silently keep only the last")
                seen.add(knode.value)
        self.loader.flatten_mapping(node)
        last: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode) or knode.tag != "tag:yaml.org,2002:str":
                self.problem(knode, context, "keys here must be plain names")
                continue
            last[str(knode.value)] = (knode, vnode)
        for key, (knode, vnode) in last.items():
            yield key, knode, vnode

    def value(self, node: yaml.Node) -> Any:
        """The Python value of a node (typed scalars, lists, dicts)."""
        return self.loader.construct_object(node, deep=True)

    def text(self, node: yaml.Node, context: str, what: str) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str" and node.value.strip():
            return str(node.value).strip()
        self.problem(node, context, f"{what} must be a non-empty text")
        return None

    def unknown_keys(self, key: str, knode: yaml.Node, context: str, allowed: tuple[str, ...]) -> None:
        self.problem(knode, context, f"unknown key {key!r}.{_close(key, allowed)} "
                                     f"Allowed here: {', '.join(allowed)}")

    def expression(self, node: yaml.Node, context: str, what: str) -> str | None:
        """A JMESPath expression text, checked: parses, calls only known functions with the right arity."""
        expr = self.text(node, context, what)
        if expr is None:
            return None
        try:
            compile_expression(expr)
            issues = check_jmespath_functions(expr)
        except JMESPathError as e:
            self.problem(node, context, f"bad JMESPath {what} {expr!r}: {_jmespath_reason(e)}. Quote names "
                                        "with dots or dashes as \"odata.type\"; literals go in backticks "
                                        "(`true`).")
            return None
        for issue in issues:
            self.problem(node, context, f"{what} {expr!r}: {issue}")
        return None if issues else expr

    def expressions(self, node: yaml.Node, context: str, what: str) -> tuple[str, ...] | None:
        """One expression or a list of them (first non-empty wins)."""
        if isinstance(node, yaml.SequenceNode):
            if not node.value:
                self.problem(node, context, f"{what} is an empty list; give at least one expression")
                return None
            out = [self.expression(n, context, what) for n in node.value]
            return tuple(e for e in out if e is not None) if all(out) else None
        e = self.expression(node, context, what)
        return None if e is None else (e,)

    # ---- the document

    def mapping(self, root: yaml.Node | None) -> Mapping | None:
        if root is None:
            self.problem(None, "", "the file is empty; expected a top-level `streams:` section")
            return None
        if not isinstance(root, yaml.MappingNode):
            self.problem(root, "", "the top level must be a YAML mapping with a `streams:` section")
            return None
        streams_node: yaml.Node | None = None
        for key, knode, vnode in self.pairs(root, "top level"):
            if key == "streams":
                streams_node = vnode
            elif key not in _TOP_KEYS:
                self.unknown_keys(key, knode, "top level", _TOP_KEYS)
        if streams_node is None:
            self.problem(root, "", "no `streams:` section; list each stream the connector produces under it")
            return None
        if not isinstance(streams_node, yaml.MappingNode) or not streams_node.value:
            self.problem(streams_node, "streams",
                         "must map stream names to their mappings, e.g. `users: {...}`")
            return None
        streams: dict[str, StreamMapping] = {}
        for name, knode, vnode in self.pairs(streams_node, "streams"):
            sm = self.stream(name, knode, vnode)
            if sm is not None:
                streams[name] = sm
        return Mapping(streams, self.source)

    def stream(self, name: str, knode: yaml.Node, node: yaml.Node) -> StreamMapping | None:
        ctx = f"stream {name!r}"
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, ctx, "must be a mapping with `entity`, `key` and `fields`")
            return None
        before = len(self.problems)
        entity: EntityType | None = None
        key: str | None = None
        observed: tuple[str, ...] | None = ()
        fields_node: yaml.Node | None = None
        entity_seen = key_seen = False
        for k, kn, vn in self.pairs(node, ctx):
            if k == "entity":
                entity_seen = True
                entity = self.entity(vn, ctx)
            elif k == "key":
                key_seen = True
                key = self.expression(vn, ctx, "key")
            elif k == "observed_at":
                observed = self.expressions(vn, ctx, "observed_at")
            elif k == "fields":
                fields_node = vn
            elif k != "description":
                self.unknown_keys(k, kn, ctx, _STREAM_KEYS)
        if not entity_seen:
            self.problem(knode, ctx, f"no `entity:`; say what the records describe: {', '.join(_ENTITIES)}")
        if not key_seen:
            self.problem(knode, ctx, "no `key:`; every stream needs the JMESPath of the record's source key, "
                                     "e.g. `key: id` (records without one are rejected)")
        rules: list[FieldRule] = []
        if fields_node is None:
            self.problem(knode, ctx, "no `fields:`; map at least one canonical field")
        elif not isinstance(fields_node, yaml.MappingNode):
            self.problem(fields_node, ctx, "`fields` must map canonical field names to source expressions")
        else:
            for fname, fkn, fvn in self.pairs(fields_node, ctx):
                rule = self.field(entity, fname, fkn, fvn, ctx)
                if rule is not None:
                    rules.append(rule)
        if len(self.problems) > before or entity is None or key is None or observed is None:
            return None
        try:
            return StreamMapping(name, entity, key, rules, observed, self.source)
        except MappingError as e:  # a constant that fails its field was already reported; belt and braces
            self.problem(knode, ctx, e.reason)
            return None

    def entity(self, node: yaml.Node, ctx: str) -> EntityType | None:
        text = self.text(node, ctx, "entity")
        if text is None:
            return None
        try:
            return EntityType(text)
        except ValueError:
            self.problem(node, ctx, f"unknown entity {text!r}.{_close(text, _ENTITIES)} "
                                    f"Use one of: {', '.join(_ENTITIES)}")
            return None

    def field(self, entity: EntityType | None, name: str, knode: yaml.Node, node: yaml.Node,
              sctx: str) -> FieldRule | None:
        ctx = f"{sctx}, field {name!r}"
        spec = None
        if entity is not None:
            known = FIELDS[entity]
            spec = known.get(name)
            if spec is None:
                self.problem(knode, ctx, f"unknown {entity.value} field {name!r}.{_close(name, tuple(known))}"
                                         " "
                                         f"Fields of {entity.value}: {', '.join(known)} "
                                         "(new fields are added in itam_sync/model/canonical.py)")
        exprs: tuple[str, ...] | None = ()
        constant: Any = NO_CONSTANT
        steps: list[TransformStep] | None = []
        optional = False
        if isinstance(node, yaml.ScalarNode):
            exprs = self.expressions(node, ctx, "source expression")
        elif isinstance(node, yaml.MappingNode):
            has_from = has_value = False
            for k, kn, vn in self.pairs(node, ctx):
                if k == "from":
                    has_from = True
                    exprs = self.expressions(vn, ctx, "`from` expression")
                elif k == "value":
                    has_value = True
                    constant = self.value(vn)
                elif k == "transforms":
                    steps = self.transforms(vn, ctx)
                elif k == "optional":
                    if not (isinstance(vn, yaml.ScalarNode) and vn.value in ("true", "false")):
                        self.problem(vn, ctx, "`optional` is true or false")
                    optional = vn.value == "true"
                elif k != "description":
                    self.unknown_keys(k, kn, ctx, _FIELD_KEYS)
            if has_from == has_value:
                self.problem(node, ctx, "give exactly one of `from:` (source expressions) or `value:` "
                                        "(a constant)")
                return None
        else:
            self.problem(node, ctx, "write a JMESPath (`email: profile.email`) or a mapping "
                                    "(`email: {from: profile.email, transforms: [email]}`); for several "
                                    "alternatives use `{from: [a, b]}`")
            return None
        if spec is None or exprs is None or steps is None:
            return None
        if steps and TRANSFORMS[steps[-1].name].yields_list and spec.kind is not FieldKind.LIST:
            self.problem(node, ctx, f"transform {steps[-1].name!r} yields a list but {name!r} is a "
                                    f"{spec.kind.value} field; add `first_non_empty` or `join` after it")
            return None
        rule = FieldRule(name, spec, exprs, tuple(steps), constant, optional)
        if rule.is_constant:
            try:
                rule.evaluate_constant()
            except MappingError as e:
                self.problem(node, ctx, e.reason)
                return None
        return rule

    def transforms(self, node: yaml.Node, ctx: str) -> list[TransformStep] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, ctx, "`transforms` must be a list, e.g. `transforms: [strip, lower]`")
            return None
        steps: list[TransformStep] = []
        ok = True
        for item in node.value:
            step = self.transform(item, ctx)
            if step is None:
                ok = False
            else:
                steps.append(step)
        return steps if ok else None

    def transform(self, node: yaml.Node, ctx: str) -> TransformStep | None:
        known = sorted(TRANSFORMS)
        param: Any = NO_PARAM
        options: dict[str, Any] = {}
        if isinstance(node, yaml.ScalarNode):
            name = str(node.value)
        elif isinstance(node, yaml.MappingNode):
            pairs = list(self.pairs(node, ctx))
            names = [(k, vn) for k, _, vn in pairs if k in TRANSFORMS]
            if len(names) != 1:
                keys = ", ".join(repr(k) for k, _, _ in pairs)
                hint = _close(pairs[0][0], known) if pairs and not names else ""
                self.problem(node, ctx, "a parameterised transform is a dict with exactly one transform "
                                        f"name as key (got {keys}).{hint} Known transforms: "
                                        f"{', '.join(known)}")
                return None
            name, pnode = names[0]
            param = self.value(pnode)
            options = {k: self.value(vn) for k, _, vn in pairs if k != name}
        else:
            self.problem(node, ctx, "a transform is a name (`strip`) or a one-key dict (`{split: \",\"}`)")
            return None
        if name not in TRANSFORMS:
            self.problem(node, ctx, f"unknown transform {name!r}.{_close(name, known)} "
                                    f"Known transforms: {', '.join(known)}")
            return None
        try:
            build_transform(name, param, options)
        except TransformConfigError as e:
            self.problem(node, ctx, str(e))
            return None
        return TransformStep(name, param, options)


def load_mapping_text(text: str, source_name: str = "<mapping>") -> Mapping:
    """Parse, validate and compile mapping YAML; raises `MappingLoadError` listing every problem."""
    loader = _Yaml12Loader(text)
    checker = _Checker(source_name, loader)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = f":{mark.line + 1}" if mark is not None else ""
            # Where an unclosed bracket or block began is often more useful than where the parser gave up.
            began = (f"; {e.context} that began on line {e.context_mark.line + 1}"
                     if e.problem and e.context and e.context_mark is not None else "")
            raise MappingLoadError(source_name, [
                f"{source_name}{line}: not valid YAML: {e.problem or e.context}{began} "
                "(check indentation and quote expressions containing ':', '{', '[' or '&')"]) from e
        except yaml.YAMLError as e:
            raise MappingLoadError(source_name, [f"{source_name}: not valid YAML: {e}"]) from e
        mapping = checker.mapping(root)
    finally:
        loader.dispose()
    if checker.problems or mapping is None:
        raise MappingLoadError(source_name, checker.problems or [f"{source_name}: unusable mapping"])
    log.debug("loaded mapping %s: streams %s", source_name, sorted(mapping.streams))
    return mapping


def load_mapping(path: str | Path) -> Mapping:
    """Load and compile one mapping file; raises `MappingLoadError` (file unreadable or invalid)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise MappingLoadError(str(p), [f"{p}: cannot read mapping file: {e.strerror or e}"]) from e
    return load_mapping_text(text, str(p))
