"""The same sync on a real PostgreSQL server gives the same golden records as on SQLite."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.postgres


def _golden(demo) -> dict[str, object]:  # type: ignore[no-untyped-def]
    assets = json.loads(demo.cli("export", "--entity", "assets").output)
    people = json.loads(demo.cli("export", "--entity", "people").output)
    return {"assets": sorted(json.dumps(a["fields"], sort_keys=True) for a in assets),
            "people": sorted(json.dumps(p["fields"], sort_keys=True) for p in people)}


def test_demo_on_postgres_matches_sqlite(demo, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    on_sqlite = _golden(demo)
    demo.config.write_text(demo.config.read_text().replace(f"sqlite:///{demo.db}", postgres_url))
    result = demo.cli("run", "--full", "-q")
    assert result.exit_code == 0, result.output
    assert _golden(demo) == on_sqlite
    conflicts = json.loads(demo.cli("conflicts", "--json").output)
    assert [c["key"] for c in conflicts] == ["mac:3c18a00b7c11"]
    # Operator actions and incremental runs work there too.
    assert demo.cli("override", "C02FK1ABQ6L4", "location", "Lisbon", "--reason", "office move").exit_code == 0
    assert demo.cli("unlink", "edr/hosts/cs-a2", "--reason", "spare").exit_code == 0
    assert demo.cli("run", "-q").exit_code == 0
    ex = json.loads(demo.cli("explain", "C02FK1ABQ6L4", "--json").output)
    assert {f["field"]: f["value"] for f in ex["fields"]}["location"] == "Lisbon"
    runs = json.loads(demo.cli("runs", "--json", "--limit", "100").output)
    assert {r["status"] for r in runs} == {"success"}
