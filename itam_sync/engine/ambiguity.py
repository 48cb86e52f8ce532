"""Ambiguous identifiers: values the engine never matches on, because records that cannot be one thing hold them.

A value ("mac:3c18a00b7c11", "hardware_uuid:...", "email:it@...") is ambiguous when

1. *conflict*: two records holding it hold different values of a single-valued kind (hardware, instance,
   identity scope): a dock MAC reported by two laptops with different serials, an SMBIOS UUID on two VMs with
   different instance ids, a mailbox on two people with different employee ids;
2. *one source*: one connector stream reports it on two of its own records that are otherwise different: for
   a hardware, instance or registration value, the two records both report MACs and share none (cloned VMs);
   for a MAC, mailbox or name, the records share no single-valued value and each reports a MAC or mailbox (for
   a host name: or a registration) the other lacks (a placeholder-serial laptop and another laptop behind one
   dock; two Entra devices named DESKTOP-SETUP);
3. *config*: it matches `identity.ambiguous_values` ("mac:3c18a0*" is a prefix; a bare OUI "3c:18:a0" or MAC
   is read as a MAC prefix or value);
4. *operator*: `itam-sync identifiers block VALUE --reason`.

`itam-sync identifiers allow VALUE --reason` overrides 1 to 3. Rules 1 and 2 are judged over every stored
record holding the value, live or missing (a retired laptop does not make its dock's MAC usable again), so the
verdict depends on which records exist, never on the order they arrived in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from itam_sync.engine.identity import Signatures
from itam_sync.model.canonical import EntityType
from itam_sync.model.keys import (
    DISTINGUISHING,
    SINGLE_VALUED,
    WEAK_PREFIX,
    KeyKinds,
    KeyScope,
    PatternError,
    parse_identifier,
)

ORIGINS = ("conflict", "source", "config", "operator")


@dataclass(frozen=True, slots=True)
class Holder:
    """A stored record holding a value: its reference, source (connector/stream) and match keys (the engine
    passes its `Member`s, which have the same attributes)."""

    ref: str
    source: str
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a value is ambiguous: origin (conflict | source | config | operator) and a sentence."""

    origin: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """An operator's block or allow of one value, held across runs."""

    action: str  # block | allow
    reason: str
    actor: str | None
    at: str


class AmbiguityRules:
    """Judges values: configured patterns, operator decisions and the evidence of the records holding them."""

    def __init__(self, kinds: KeyKinds, patterns: Iterable[str] = (),
                 decisions: dict[tuple[str, str], Decision] | None = None) -> None:
        self.kinds = kinds
        self.exact: dict[str, str] = {}
        self.prefixes: list[tuple[str, str]] = []
        for p in patterns:
            try:
                key, is_prefix = parse_identifier(p, kinds)
            except PatternError as exc:
                raise PatternError(f"identity.ambiguous_values: {exc}") from None
            if is_prefix:
                self.prefixes.append((key, p))
            else:
                self.exact[key] = p
        self.decisions = decisions or {}

    def configured(self, entity: EntityType, key: str) -> Verdict | None:
        """An operator block or a configured value/prefix, unless an operator allowed the value."""
        d = self.decisions.get((entity.value, key))
        if d is not None:
            return Verdict("operator", f"blocked by {d.actor or 'an operator'}: {d.reason}") \
                if d.action == "block" else None
        pattern = self.exact.get(key)
        if pattern is None:
            pattern = next((p for pre, p in self.prefixes if key.startswith(pre)), None)
        return Verdict("config", f"identity.ambiguous_values: {pattern}") if pattern is not None else None

    def allowed(self, entity: EntityType, key: str) -> bool:
        d = self.decisions.get((entity.value, key))
        return d is not None and d.action == "allow"

    def judge(self, entity: EntityType, key: str, holders: Sequence[Any], sigs: Signatures | None = None
              ) -> Verdict | None:
        """The verdict on `key` given every stored record holding it (objects with `ref`, `source` and `keys`,
        in any order), or None when it is usable."""
        if self.decisions or self.exact or self.prefixes:
            if self.allowed(entity, key):
                return None
            v = self.configured(entity, key)
            if v is not None:
                return v
        if len(holders) < 2:
            return None
        sigs = sigs or Signatures(self.kinds, entity)
        mine = key[:key.find(":")]
        # 1. Two holders with different values of a single-valued kind (other than the value's own kind).
        single = sigs.single
        sv0 = getattr(holders[0], "sv", None)
        if sv0 is None or not all(h.sv == sv0 for h in holders):
            per_kind: dict[str, set[frozenset[str]]] = {}
            for h in holders:
                for kind, vals in single(h).items():
                    if kind != mine:
                        per_kind.setdefault(kind, set()).add(self._usable_values(entity, vals))
            for kind in sorted(per_kind):
                sets = sorted((v for v in per_kind[kind] if v), key=sorted)
                for i, a in enumerate(sets):
                    for b in sets[i + 1:]:
                        if not a & b:
                            return Verdict("conflict", "held by records that cannot be one thing: different "
                                                       f"{kind} ({_vals(a)} vs {_vals(b)})")
        # 2. One source reports it on two of its own records that are otherwise different.
        sources = [h.source for h in holders]
        if len(set(sources)) == len(sources):
            return None
        by_source: dict[str, list[Any]] = {}
        for h in holders:
            by_source.setdefault(h.source, []).append(h)
        own = sigs.kind(key)
        hard = own is not None and (own.scope in SINGLE_VALUED or own.scope is KeyScope.REGISTRATION)
        for source in sorted(by_source):
            hs = sorted(by_source[source], key=lambda h: h.ref)
            for i, a in enumerate(hs):
                for b in hs[i + 1:]:
                    if _different(a, b, key, hard, sigs):
                        return Verdict("source", f"{source} reports it on two different records "
                                                 f"({a.ref.split('/', 2)[-1]}, {b.ref.split('/', 2)[-1]})")
        return None

    def _usable_values(self, entity: EntityType, vals: frozenset[str]) -> frozenset[str]:
        """Values configured or blocked as ambiguous say nothing about which thing a record is."""
        if not (self.decisions or self.exact or self.prefixes):
            return vals
        return frozenset(v for v in vals if self.configured(entity, v) is None)


def _vals(keys: frozenset[str]) -> str:
    return ",".join(sorted(k.split(":", 1)[1] for k in keys))


def _different(a: Any, b: Any, key: str, hard: bool, sigs: Signatures) -> bool:
    """Two records of one source holding `key` describe two things (see the module docstring, rule 2)."""
    if hard:
        na, nb = sigs.network(a), sigs.network(b)
        return bool(na) and bool(nb) and not na & nb
    sa, sb = set(a.keys), set(b.keys)
    for k in sa & sb:
        if k != key and (kind := sigs.kind(k)) is not None and kind.scope in SINGLE_VALUED:
            return False
    # A host name is cheap to give up: two registrations (two Entra devices of one name) already tell them apart.
    telling = DISTINGUISHING | {KeyScope.REGISTRATION} if key[:1] == WEAK_PREFIX else DISTINGUISHING
    only_a = {kind.scope for k in sa - sb if (kind := sigs.kind(k)) is not None} & telling
    only_b = {kind.scope for k in sb - sa if (kind := sigs.kind(k)) is not None} & telling
    return bool(only_a & only_b)
