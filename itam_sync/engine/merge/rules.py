"""Precedence rules compiled from config: per entity and field, source order, freshness and strategy.

A source is a connector instance name; a rule may also name a connector *type* (`okta`), which then covers
every instance of it. `manual` (operator overrides) always ranks above every source.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itam_sync.model.canonical import FIELDS, EntityType, FieldKind
from itam_sync.settings import PrecedenceConfig, parse_duration

MANUAL = "manual"
UNRANKED = 10_000
# Fields whose golden value is the most recent one seen by any source, not the highest-ranked one.
LATEST_BY_DEFAULT = frozenset({"last_seen"})


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one field merges."""

    strategy: str  # precedence | latest | union
    ranks: dict[str, int]  # source -> rank (lower wins); sources not listed rank UNRANKED
    origin: str  # "field" (the field's own order) or "default"
    freshness: str | None  # the window as written, e.g. "30d"
    stale_before: str | None  # ISO cutoff: values observed before it are stale

    @property
    def label(self) -> str:
        return f"precedence:{self.origin}"

    def rank(self, source: str) -> int:
        return self.ranks.get(source, UNRANKED)

    def describe_order(self) -> str:
        ordered = sorted(self.ranks, key=self.ranks.__getitem__)
        return " > ".join(ordered) if ordered else "(no order configured: freshest wins)"


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class RulesSpec:
    """What rebuilds a `Rules` in another process: small, picklable and hashable (a worker builds it once).

    It carries the instant the rules are evaluated at, so a worker decides freshness exactly as the writer
    would, whatever its own clock says."""

    precedence: str  # PrecedenceConfig as JSON
    connector_types: tuple[tuple[str, str], ...]  # (instance, type), in the config's order
    now: str  # ISO-8601, as datetime.isoformat() wrote it

    def build(self) -> Rules:
        return Rules(PrecedenceConfig.model_validate_json(self.precedence), dict(self.connector_types),
                     datetime.fromisoformat(self.now))


class Rules:
    """All field rules for one merge pass, evaluated at `now` (for freshness)."""

    def __init__(self, config: PrecedenceConfig, connector_types: dict[str, str], now: datetime) -> None:
        self.config = config
        self.now = now
        self._types = connector_types
        self._cache: dict[tuple[EntityType, str], FieldRule] = {}

    def spec(self) -> RulesSpec:
        """These rules as a spec for worker processes (`RulesSpec.build()` gives equal rules back)."""
        return RulesSpec(self.config.model_dump_json(), tuple(self._types.items()), self.now.isoformat())

    def _ranks(self, order: list[str]) -> dict[str, int]:
        ranks: dict[str, int] = {MANUAL: -1}
        for i, name in enumerate(order):
            if name in self._types:  # an instance name
                ranks.setdefault(name, i)
            else:  # a type name: every instance of that type
                for inst, typ in self._types.items():
                    if typ == name:
                        ranks.setdefault(inst, i)
                ranks.setdefault(name, i)
        return ranks

    def rule(self, entity: EntityType, field: str) -> FieldRule:
        key = (entity, field)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        prec = self.config.for_entity(entity)
        frule = prec.fields.get(field)
        if frule and frule.order:
            order, origin = frule.order, "field"
        else:
            order, origin = prec.default or self.config.default, "default"
        spec = FIELDS[entity].get(field)
        strategy = (frule.strategy if frule and frule.strategy else
                    "union" if spec is not None and spec.kind is FieldKind.LIST else
                    "latest" if field in LATEST_BY_DEFAULT else "precedence")
        freshness = (frule.freshness if frule and frule.freshness else prec.freshness)
        stale_before = iso(self.now - timedelta(seconds=parse_duration(freshness))) if freshness else None
        rule = FieldRule(strategy, self._ranks(order), origin, freshness, stale_before)
        self._cache[key] = rule
        return rule
