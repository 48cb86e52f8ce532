"""Precedence merge: field order, default order, freshness windows, empty values, overrides, union, latest."""

from __future__ import annotations

from datetime import UTC, datetime

from itam_sync.engine.merge.merger import Override, SourceValues, decide, merge_entity
from itam_sync.engine.merge.rules import Rules
from itam_sync.model.canonical import EntityType
from itam_sync.settings import EntityPrecedence, FieldRuleConfig, PrecedenceConfig

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TYPES = {"jamf": "jamf", "intune": "intune", "okta-a": "okta", "okta-b": "okta", "procurement": "csv"}


def rules(**fields: FieldRuleConfig) -> Rules:
    cfg = PrecedenceConfig(default=["jamf", "intune", "okta", "procurement"],
                           asset=EntityPrecedence(fields=fields))
    return Rules(cfg, TYPES, NOW)


def test_default_order_wins_and_names_its_rule() -> None:
    r = rules()
    d = decide(r.rule(EntityType.ASSET, "model"), [("intune", "XPS 13", "2026-11-25T00:00:00Z"),
                                                   ("jamf", "MacBookPro18,3", "2026-11-01T00:00:00Z")])
    assert d is not None and (d.value, d.source, d.rule) == ("MacBookPro18,3", "jamf", "precedence:default")


def test_field_order_overrides_default_order() -> None:
    r = rules(model=FieldRuleConfig(order=["procurement", "jamf"]))
    d = decide(r.rule(EntityType.ASSET, "model"), [("jamf", "MacBookPro18,3", "2026-11-25T00:00:00Z"),
                                                   ("procurement", "MacBook Pro 14", "2023-01-01T00:00:00Z")])
    assert d is not None and (d.value, d.source, d.rule) == ("MacBook Pro 14", "procurement", "precedence:field")


def test_type_name_in_order_covers_every_instance() -> None:
    r = rules()
    d = decide(r.rule(EntityType.ASSET, "model"), [("procurement", "A", "2026-11-25T00:00:00Z"),
                                                   ("okta-b", "B", "2026-11-20T00:00:00Z")])
    assert d is not None and d.source == "okta-b"


def test_stale_top_source_loses_to_freshest_lower_source() -> None:
    r = rules(assigned_to=FieldRuleConfig(order=["procurement", "jamf", "intune"], freshness="30d"))
    cands = [("procurement", "ana@x.com", "2026-01-01T00:00:00Z"), ("jamf", "bob@x.com", "2026-11-01T00:00:00Z"),
             ("intune", "eve@x.com", "2026-11-20T00:00:00Z")]
    d = decide(r.rule(EntityType.ASSET, "assigned_to"), cands)
    assert d is not None and (d.value, d.source, d.rule) == ("eve@x.com", "intune", "freshness:30d")
    # Within the window the order decides.
    cands[0] = ("procurement", "ana@x.com", "2026-11-10T00:00:00Z")
    d = decide(r.rule(EntityType.ASSET, "assigned_to"), cands)
    assert d is not None and (d.value, d.rule) == ("ana@x.com", "precedence:field")


def test_detail_and_fast_paths_agree() -> None:
    r = rules(assigned_to=FieldRuleConfig(order=["procurement", "jamf"], freshness="30d"))
    cands = [("procurement", "ana@x.com", "2026-01-01T00:00:00Z"), ("jamf", "", "2026-11-01T00:00:00Z"),
             ("intune", "eve@x.com", "2026-11-20T00:00:00Z"), ("okta-a", None, "2026-11-21T00:00:00Z")]
    fast = decide(r.rule(EntityType.ASSET, "assigned_to"), cands)
    slow = decide(r.rule(EntityType.ASSET, "assigned_to"), cands, detail=True)
    assert fast is not None and slow is not None
    assert (fast.value, fast.source, fast.rule) == (slow.value, slow.source, slow.rule) == (
        "eve@x.com", "intune", "freshness:30d")
    assert [loser[0] for loser in slow.losers] == ["procurement"]


def test_empty_never_beats_a_value() -> None:
    r = rules()
    d = decide(r.rule(EntityType.ASSET, "model"), [("jamf", "", "2026-11-25T00:00:00Z"),
                                                   ("intune", None, "2026-11-25T00:00:00Z"),
                                                   ("procurement", "Latitude", "2020-01-01T00:00:00Z")])
    assert d is not None and (d.value, d.source) == ("Latitude", "procurement")
    assert decide(r.rule(EntityType.ASSET, "model"), [("jamf", "", None), ("intune", [], None)]) is None


def test_manual_override_beats_every_source_even_when_older() -> None:
    r = rules(assigned_to=FieldRuleConfig(order=["jamf"], freshness="1d"))
    out = merge_entity(EntityType.ASSET, [SourceValues("jamf", {"assigned_to": "bob@x.com"}, "2026-11-26T00:00:00Z")],
                       [Override("assigned_to", "ana@x.com", "ticket 42", "eve", "2025-01-01T00:00:00Z")], r)
    d = out["assigned_to"]
    assert (d.value, d.source, d.rule) == ("ana@x.com", "manual", "manual")


def test_union_for_list_fields_and_latest_for_last_seen() -> None:
    r = rules()
    out = merge_entity(EntityType.ASSET, [
        SourceValues("intune", {"mac_addresses": ["a4b1c2d3e4f5"], "last_seen": "2026-11-20T00:00:00Z"},
                     "2026-11-20T00:00:00Z"),
        SourceValues("jamf", {"mac_addresses": ["a4b1c2d3e4f5", "8cec4b897e73"], "last_seen": "2026-11-25T00:00:00Z"},
                     "2026-11-25T00:00:00Z")], [], r)
    assert out["mac_addresses"].value == ["a4b1c2d3e4f5", "8cec4b897e73"]
    assert out["mac_addresses"].rule == "union"
    assert (out["last_seen"].value, out["last_seen"].source, out["last_seen"].rule) == (
        "2026-11-25T00:00:00Z", "jamf", "latest")


def test_unranked_sources_fall_back_to_freshest() -> None:
    r = Rules(PrecedenceConfig(), {"a": "csv", "b": "csv"}, NOW)
    d = decide(r.rule(EntityType.ASSET, "model"), [("a", "old", "2026-01-01T00:00:00Z"),
                                                   ("b", "new", "2026-11-01T00:00:00Z")])
    assert d is not None and (d.value, d.rule) == ("new", "freshest-unranked")
