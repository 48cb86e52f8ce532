"""Issue 15, items 5-8: overrides an auditor can follow. Values are checked against the canonical field, a past
expiry is refused, `itam-sync overrides` lists them and `override --remove` ends one (logged), and the reason is
in the hash-chained merge log, explain, the web page, the API and `log --json`."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from typing import Any

import pytest
from click.testing import CliRunner
from tests_helpers import golden_by_key  # type: ignore[import-not-found]

from itam_sync.cli.main import main

LAPTOP = "C02FK1ABQ6L4"


def _asset(demo: Any) -> dict[str, Any]:
    store = demo.store()
    with store.begin() as repo:
        g = golden_by_key(repo, "asset", f"serial_number:{LAPTOP}")
    store.close()
    return g


def _verify(demo: Any) -> Any:
    return CliRunner().invoke(main, ["audit", "verify", "--config", str(demo.config)])


def _counts(demo: Any) -> tuple[int, int]:
    with sqlite3.connect(demo.db) as db:
        return (db.execute("SELECT count(*) FROM overrides").fetchone()[0],
                db.execute("SELECT count(*) FROM merge_log").fetchone()[0])


def test_values_are_checked_against_the_fields_type_and_vocabulary(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    before = _counts(demo)
    result = demo.cli("override", LAPTOP, "purchase_cost", "abc", "--reason", "x")
    assert result.exit_code == 2
    assert result.output.strip() == "error: purchase_cost takes a number, e.g. 1299.00; 'abc' is not (not a number)"
    result = demo.cli("override", LAPTOP, "lifecycle_state", "broken", "--reason", "x")
    assert result.exit_code == 2
    assert result.output.strip() == ("error: lifecycle_state must be one of planned, ordered, in_stock, deployed, "
                                     "in_repair, retired, disposed; 'broken' is not")
    result = demo.cli("override", LAPTOP, "lifecycle_state", "retird", "--reason", "x")
    assert result.exit_code == 2 and "(fix: did you mean 'retired'?)" in result.output
    result = demo.cli("override", LAPTOP, "warranty_end", "31/12/2027", "--reason", "x")
    assert result.exit_code == 2 and "warranty_end takes a date, YYYY-MM-DD; '31/12/2027' is not" in result.output
    result = demo.cli("override", LAPTOP, "mdm_managed", "perhaps", "--reason", "x")
    assert result.exit_code == 2 and "mdm_managed takes true or false" in result.output
    assert _counts(demo) == before  # nothing was written
    # Accepted values are stored in the field's canonical form, as a source's mapping would produce them.
    assert demo.cli("override", LAPTOP, "purchase_cost", "$1,299.00", "--reason", "invoice INV-77").exit_code == 0
    assert demo.cli("override", LAPTOP, "lifecycle_state", "In_Repair", "--reason", "at the vendor").exit_code == 0
    assert demo.cli("override", LAPTOP, "tags", "loaner, vip", "--reason", "desk").exit_code == 0
    laptop = _asset(demo)
    assert laptop["purchase_cost"][:2] == [1299.0, "manual"]
    assert laptop["lifecycle_state"][:2] == ["in_repair", "manual"]
    assert laptop["tags"][:2] == [["loaner", "vip"], "manual"]


def test_a_past_expiry_is_refused_and_the_earlier_override_stays(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    assert demo.cli("override", LAPTOP, "location", "Lisbon", "--reason", "office move").exit_code == 0
    before = _counts(demo)
    for past in ("2020-01-01", "2d ago", "yesterday"):
        result = demo.cli("override", LAPTOP, "location", "Porto", "--reason", "typo", "--expires", past)
        assert result.exit_code == 2, past
        assert "is in the past (now " in result.output and "--remove" in result.output, past
    result = demo.cli("override", LAPTOP, "location", "Porto", "--reason", "x", "--expires", "someday")
    assert result.exit_code == 2 and "--expires 'someday' is not a date or time" in result.output
    assert _counts(demo) == before
    assert _asset(demo)["location"][:2] == ["Lisbon", "manual"]  # the earlier override was not wiped


def test_overrides_lists_them_and_remove_ends_one_in_the_log(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    source_location = _asset(demo).get("location")
    assert demo.cli("override", LAPTOP, "location", "Lisbon", "--reason", "office move INC-1",
                    "--expires", "30d").exit_code == 0
    assert demo.cli("override", "bob.li@example.com", "title", "Staff Engineer", "--reason", "HR lag").exit_code == 0
    rows = json.loads(demo.cli("overrides", "--json").output)
    assert [(r["entity_type"], r["entity_label"], r["field"], r["value"], r["reason"], r["state"]) for r in rows] == [
        ("asset", LAPTOP, "location", "Lisbon", "office move INC-1", "active"),
        ("person", "bob.li@example.com", "title", "Staff Engineer", "HR lag", "active")]
    assert rows[0]["actor"] and rows[0]["expires_at"] > rows[0]["created_at"] and rows[1]["expires_at"] is None
    table = demo.cli("overrides").output
    assert "office move INC-1" in table and "HR lag" in table and "never" in table
    csv_rows = list(csv.DictReader(io.StringIO(demo.cli("overrides", "--format", "csv").output)))
    assert [r["field"] for r in csv_rows] == ["location", "title"]
    assert [r["field"] for r in json.loads(demo.cli("overrides", "--entity", LAPTOP, "--json").output)] == [
        "location"]

    result = demo.cli("override", LAPTOP, "location", "--remove", "--reason", "back in Porto")
    assert result.exit_code == 0, result.output
    assert "override of location removed (was \"Lisbon\"" in result.output
    assert _asset(demo).get("location") == source_location  # the sources decide it again
    log = json.loads(demo.cli("log", "--entity", LAPTOP, "--source", "manual", "--json").output)
    ends = [r for r in log if r["action"] == "unoverride"]
    assert [(r["field"], r["old"], r["new"], r["rule"]) for r in ends] == [
        ("location", "Lisbon", None, "override removed: back in Porto")]
    assert ends[0]["actor"]
    assert [r["field"] for r in json.loads(demo.cli("overrides", "--json").output)] == ["title"]
    ended = [r for r in json.loads(demo.cli("overrides", "--all", "--json").output) if r["field"] == "location"]
    assert [r["state"] for r in ended] == ["ended"]
    result = demo.cli("override", LAPTOP, "location", "--remove", "--reason", "again")
    assert result.exit_code == 2 and "has no override of 'location' in force" in result.output
    result = demo.cli("override", LAPTOP, "location", "X", "--remove", "--reason", "both")
    assert result.exit_code == 2 and "--remove takes ENTITY and FIELD only" in result.output


def test_the_reason_is_in_the_chain_explain_web_api_and_log(demo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    reason = "on loan to Ana while hers is repaired, INC-4411"
    assert demo.cli("override", LAPTOP, "assigned_to", "ana.souza@example.com", "--reason", reason,
                    "--expires", "2099-01-01").exit_code == 0
    # log --json: the override row, with the reason and expiry, then the golden field's change.
    log = json.loads(demo.cli("log", "--entity", LAPTOP, "--source", "manual", "--json").output)
    assert [(r["action"], r["field"], r["new"], r["rule"]) for r in log] == [
        ("override", "assigned_to", "ana.souza@example.com", f"override: {reason} (expires 2099-01-01T00:00:00Z)"),
        ("set", "assigned_to", "ana.souza@example.com", "manual")]
    # It is hash-chained like every row: verify passes, and editing the reason breaks the chain.
    with sqlite3.connect(demo.db) as db:
        row_id, row_hash = db.execute("SELECT id, row_hash FROM merge_log WHERE action='override'").fetchone()
    assert row_hash and _verify(demo).exit_code == 0
    with sqlite3.connect(demo.db) as db:
        db.execute("UPDATE merge_log SET rule='override: nobody asked' WHERE id=?", (row_id,))
    result = _verify(demo)
    assert result.exit_code == 1 and f"chain broken at row {row_id} (altered)" in result.output
    with sqlite3.connect(demo.db) as db:
        db.execute("UPDATE merge_log SET rule=? WHERE id=?", (f"override: {reason} (expires 2099-01-01T00:00:00Z)",
                                                              row_id))
    # explain: the reason, who and until when, next to the value.
    ex = json.loads(demo.cli("explain", LAPTOP, "--json").output)
    field = next(f for f in ex["fields"] if f["field"] == "assigned_to")
    assert field["source"] == "manual" and field["override"]["reason"] == reason
    assert field["override"]["expires_at"] == "2099-01-01T00:00:00Z" and field["override"]["actor"]
    assert reason in field["rule_detail"] and "until 2099-01-01T00:00:00Z" in field["rule_detail"]
    text = demo.cli("explain", LAPTOP).output
    assert f": {reason} (until 2099-01-01T00:00:00Z)" in text
    assert "override of assigned_to: (none) -> ana.souza@example.com [" in text  # the history line
    # The web API and the asset page (the `web` extra).
    TestClient = pytest.importorskip("fastapi.testclient").TestClient
    create_app = pytest.importorskip("itam_sync.web").create_app
    monkeypatch.delenv("ITAM_SYNC_WEB_TOKENS", raising=False)
    store = demo.store()
    with TestClient(create_app(demo.settings(), tokens=[], store=store), base_url="http://127.0.0.1") as client:
        detail = client.get(f"/api/v1/assets/{LAPTOP}").json()
        api_field = next(f for f in detail["fields"] if f["field"] == "assigned_to")
        assert api_field["override"]["reason"] == reason and reason in api_field["rule_detail"]
        assert any(h["action"] == "override" and reason in h["rule"] for h in detail["history"]["items"])
        page = client.get(f"/assets/{LAPTOP}").text
        assert reason in page
    store.close()
