"""Which source paths a compiled mapping reads, for data contracts and file-header checks.

A mapping field reads one or more source paths (`profile.manager`, `"Serial Number"`, the names inside a
JMESPath `join(...)`). They come in *groups*: a group is satisfied when at least one of its paths exists in a
record (`from: [serial_number, serial]` or `a || b` are alternatives, one group); separate groups must all be
satisfied (`join(' ', [first, last])` reads two groups). Everything here is decided when the mapping loads,
from the JMESPath syntax tree; at run time only `presence_check` closures run, and only until each path has
been seen once (see itam_sync/engine/contracts.py).

A path that walks into a list (`devices[0].serial`, `macs[].address`) is cut at the list: presence of
`devices` is what can be checked without evaluating the expression.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jmespath

from itam_sync.mapping.engine import StreamMapping

Path = tuple[str, ...]  # keys from the record's top level down
Group = tuple[Path, ...]  # alternatives: at least one must exist
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CHAINED = ("index_expression", "projection", "value_projection", "filter_projection", "flatten", "pipe")
_ALL_OF = ("multi_select_list", "multi_select_dict", "function_expression", "and_expression", "not_expression",
           "comparator", "key_val_pair")


def path_text(path: Path) -> str:
    """A path as it would be written in a mapping: dotted, with non-identifier keys quoted."""
    return ".".join(p if _IDENT.fullmatch(p) else '"' + p.replace('"', '\\"') + '"' for p in path)


def _groups(node: Any, prefix: Path) -> list[Group]:
    kind = node.get("type")
    children = node.get("children", [])
    if kind == "field":
        return [((*prefix, node["value"]),)]
    if kind == "subexpression":
        cur = prefix
        for child in children:
            if child.get("type") == "field":
                cur = (*cur, child["value"])
                continue
            # A list index, a projection or a multi-select below `cur`: what it reads is relative to `cur`;
            # anything after it walks into list elements, which a presence check cannot follow.
            inner = _groups(child, cur)
            return inner or ([(cur,)] if cur != prefix else [])
        return [(cur,)]
    if kind in _CHAINED:
        return _groups(children[0], prefix) if children else []
    if kind == "or_expression":
        alternatives = tuple(p for c in children for g in _groups(c, prefix) for p in g)
        return [alternatives] if alternatives else []
    if kind in _ALL_OF:
        return [g for c in children if c.get("type") != "expref" for g in _groups(c, prefix)]
    return []  # literal, current node, identity, expression references


def expression_groups(expr: str) -> list[Group]:
    """The path groups one source expression reads (a parse error raises `jmespath` 's ParseError)."""
    out: list[Group] = []
    for g in _groups(jmespath.compile(expr.strip()).parsed, ()):
        g = tuple(dict.fromkeys(g))  # keep order, drop repeats
        if g and g not in out:
            out.append(g)
    return out


def presence_check(path: Path) -> Callable[[Any], bool]:
    """A fast `record -> bool`: does `path` exist in the record (whatever its value, null included)?"""
    if len(path) == 1:
        (a,) = path
        return lambda r: a in r
    if len(path) == 2:
        a, b = path

        def two(r: Any) -> bool:
            v = r.get(a)
            return type(v) is dict and b in v

        return two

    def many(r: Any) -> bool:
        v = r
        for p in path:
            if type(v) is not dict or p not in v:
                return False
            v = v[p]
        return True

    return many


@dataclass(frozen=True)
class StreamPaths:
    """The source paths of one stream's mapping: its source key and each non-constant field."""

    stream: str
    key: tuple[Group, ...]
    fields: dict[str, tuple[Group, ...]]
    optional: frozenset[str] = frozenset()  # fields marked `optional: true`: a source may leave them out

    @classmethod
    def of(cls, smap: StreamMapping) -> StreamPaths:
        """Analyse a compiled stream mapping (cheap; done once per run)."""
        fields: dict[str, tuple[Group, ...]] = {}
        for rule in smap.rules:
            if rule.is_constant:
                continue
            per_expr = [expression_groups(e) for e in rule.expressions]
            if len(per_expr) == 1:
                fields[rule.name] = tuple(per_expr[0])
            else:  # `from: [a, b]`: each expression is an alternative, so together they are one group
                merged = tuple(dict.fromkeys(p for groups in per_expr for g in groups for p in g))
                fields[rule.name] = (merged,) if merged else ()
        return cls(smap.name, tuple(expression_groups(smap.key_expression)), fields,
                   frozenset(r.name for r in smap.rules if r.optional))

    def all_paths(self) -> list[Path]:
        """Every distinct path, key first, in mapping order."""
        seen: dict[Path, None] = {}
        for groups in (self.key, *self.fields.values()):
            for g in groups:
                seen.update(dict.fromkeys(g))
        return list(seen)

    def required(self, key_fields: Iterable[str]) -> list[tuple[str, Group]]:
        """(what, group) pairs a file must provide columns for: the source key and every mapped match-key
        field not marked optional (a file without them would stage records that cannot be told apart, or that
        join the wrong entity through a weaker key: an EDR export without its serial column, matched by MAC).
        The key needs each of its groups (`join('/', [po, serial])` joins nothing without either); a field
        needs any one of its paths (`[wifi_mac, ethernet_mac]` has a value from either)."""
        out: list[tuple[str, Group]] = [("the source key", g) for g in self.key]
        for name in key_fields:
            paths = tuple(dict.fromkeys(p for g in self.fields.get(name, ()) for p in g))
            if paths and name not in self.optional:
                out.append((name, paths))
        return out


__all__ = ["Group", "Path", "StreamPaths", "expression_groups", "path_text", "presence_check"]
