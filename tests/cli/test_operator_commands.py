"""Operator and auditor commands: link/unlink, override, merge --dry-run, log, explain, export, init, validate."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
import yaml
from click.testing import CliRunner
from tests_helpers import golden_by_key  # type: ignore[import-not-found]

from itam_sync import clock
from itam_sync.cli.main import main


def _asset(demo, key: str):  # type: ignore[no-untyped-def]
    store = demo.store()
    with store.begin() as repo:
        g = golden_by_key(repo, "asset", key)
    store.close()
    return g


def test_unlink_and_link_hold_across_later_runs(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    laptop = _asset(demo, "serial_number:5CG1234XYZ")
    result = demo.cli("unlink", "edr/hosts/cs-a2", "--reason", "EDR host is a re-imaged spare")
    assert result.exit_code == 0, result.output
    demo.cli("run", "--full", "-q")  # the serial still matches, but the operator's split holds
    store = demo.store()
    with store.begin() as repo:
        rec = repo.records.find_record("edr", "hosts", "cs-a2")[0]
        assert rec[4] != laptop["_id"]
        rows = repo.log.log_rows(action="unlink")
        assert rows[-1]["rule"] == "manual split: EDR host is a re-imaged spare" and rows[-1]["actor"]
    store.close()
    result = demo.cli("link", "edr/hosts/cs-a2", str(laptop["_id"]), "--reason", "confirmed same laptop")
    assert result.exit_code == 0, result.output
    demo.cli("run", "--full", "-q")
    store = demo.store()
    with store.begin() as repo:
        assert repo.records.find_record("edr", "hosts", "cs-a2")[0][4] == laptop["_id"]
    store.close()


def test_link_resolves_a_conflict(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    assert len(json.loads(demo.cli("conflicts", "--json").output)) == 1
    loaner = _asset(demo, "serial_number:PF3ZZZZZ")
    demo.cli("link", "edr/hosts/cs-a5", str(loaner["_id"]), "--reason", "dock MAC, loaner is its own laptop")
    assert json.loads(demo.cli("conflicts", "--json").output) == []


def test_override_wins_logs_actor_and_expires(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    result = demo.cli("override", "C02FK1ABQ6L4", "assigned_to", "ana.souza@example.com", "--reason",
                      "on loan back to Ana, INC-4411", "--expires", "2099-01-01")
    assert result.exit_code == 0, result.output
    laptop = _asset(demo, "serial_number:C02FK1ABQ6L4")
    assert laptop["assigned_to"][:2] == ["ana.souza@example.com", "manual"]
    demo.cli("run", "--full", "-q")  # a later sync does not undo it
    assert _asset(demo, "serial_number:C02FK1ABQ6L4")["assigned_to"][1] == "manual"
    log = json.loads(demo.cli("log", "--entity", "C02FK1ABQ6L4", "--source", "manual", "--json").output)
    assert [(r["action"], r["field"], r["old"], r["new"], r["rule"]) for r in log] == [
        ("override", "assigned_to", None, "ana.souza@example.com",
         "override: on loan back to Ana, INC-4411 (expires 2099-01-01T00:00:00Z)"),
        ("set", "assigned_to", "bob.li@example.com", "ana.souza@example.com", "manual")]
    assert log[0]["actor"] and log[0]["actor"] == log[1]["actor"]
    # An override that has expired stops applying at the next merge.
    assert demo.cli("override", "C02FK1ABQ6L4", "location", "Lisbon", "--reason", "temporary",
                    "--expires", "1h").exit_code == 0
    assert _asset(demo, "serial_number:C02FK1ABQ6L4")["location"][:2] == ["Lisbon", "manual"]
    later = clock.now() + timedelta(hours=2)
    with pytest.MonkeyPatch.context() as mp:  # (also run by the PostgreSQL suite, which passes the demo only)
        mp.setenv(clock.NOW_ENV, later.strftime("%Y-%m-%dT%H:%M:%SZ"))
        demo.cli("run", "--full", "-q")
    assert "location" not in _asset(demo, "serial_number:C02FK1ABQ6L4")


def test_override_errors_are_one_clear_line(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    result = demo.cli("override", "C02FK1ABQ6L4", "colour", "red", "--reason", "x")
    assert result.exit_code == 2
    assert "asset has no field 'colour'" in result.output
    result = demo.cli("override", "NO-SUCH-SERIAL", "model", "x", "--reason", "x")
    assert result.exit_code == 2 and "no entity matches 'NO-SUCH-SERIAL'" in result.output


def test_merge_dry_run_shows_a_rules_change_then_merge_applies_it(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    cfg = yaml.safe_load(demo.config.read_text())
    cfg["precedence"]["asset"]["fields"]["model"] = {"order": ["mdm", "procurement"]}
    demo.config.write_text(yaml.safe_dump(cfg))
    out = demo.cli("merge", "--dry-run").output
    assert "would change" in out and "model" in out
    assert "MacBook Pro 14 (2021)" in out  # an example: old -> new
    assert _asset(demo, "serial_number:C02FK1ABQ6L4")["model"][0] == "MacBook Pro 14 (2021)"  # nothing changed
    assert demo.cli("merge").exit_code == 0
    assert _asset(demo, "serial_number:C02FK1ABQ6L4")["model"][:2] == ["MacBookPro18,3", "mdm"]


def test_merge_applies_a_mapping_change_without_calling_sources(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    mapping = demo.config.parent / "mappings" / "hr.yaml"
    mapping.write_text(mapping.read_text().replace("department: {from: department", "location: {from: department"))
    (demo.data / "hr_people.csv").unlink()  # proof that no source is read
    out = demo.cli("merge", "--dry-run").output
    assert "re-mapped" in out and "location" in out
    demo.cli("merge")
    store = demo.store()
    with store.begin() as repo:
        ana = golden_by_key(repo, "person", "employee_id:E1001")
    store.close()
    assert ana["location"][:2] == ["Finance", "hr"]
    assert ana["department"][:2] == ["Finance & Accounting", "okta-users"]


def test_explain_shows_winner_age_and_losers(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    ex = json.loads(demo.cli("explain", "C02FK1ABQ6L4", "--json").output)
    fields = {f["field"]: f for f in ex["fields"]}
    assigned = fields["assigned_to"]
    assert (assigned["value"], assigned["source"], assigned["rule"]) == ("bob.li@example.com", "mdm", "freshness:90d")
    assert assigned["competitors"][0]["source"] == "procurement"
    assert assigned["competitors"][0]["value"] == "ana.souza@example.com"
    assert "older than 90d" in assigned["competitors"][0]["why_lost"]
    assert sorted(r["record"].split("/")[0] for r in ex["records"]) == ["edr", "mdm", "procurement"]
    text = demo.cli("explain", "C02FK1ABQ6L4").output
    assert "freshness:90d" in text and "procurement" in text


def test_log_filters(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    rows = json.loads(demo.cli("log", "--source", "procurement", "--limit", "1000", "--json").output)
    assert rows and all(r["source"] == "procurement" for r in rows)
    assert json.loads(demo.cli("log", "--since", "2100-01-01", "--json").output) == []


def test_export_json_and_csv_carry_fields_and_sources(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    assets = json.loads(demo.cli("export", "--entity", "assets").output)
    assert len(assets) == 10
    laptop = next(a for a in assets if a["fields"].get("serial_number") == "C02FK1ABQ6L4")
    assert laptop["fields"]["purchase_cost"] == 2499.0 and laptop["field_sources"]["purchase_cost"] == "procurement"
    assert any(s.startswith("mdm/devices/mdm-001") for s in laptop["sources"])
    rows = list(csv.DictReader(io.StringIO(demo.cli("export", "--entity", "people", "--format", "csv").output)))
    assert len(rows) == 6
    assert {r["email"] for r in rows} >= {"ana.souza@example.com", "frank.contractor@partner.example"}


def test_init_writes_a_block_for_every_registered_type(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "starter.yaml"
    result = CliRunner().invoke(main, ["init", "--output", str(out)])
    assert result.exit_code == 0
    cfg = yaml.safe_load(out.read_text())
    types = {c["type"] for c in cfg["connectors"]}
    assert {"csv", "jsonl"} <= types
    assert all(c["enabled"] is False for c in cfg["connectors"])
    assert CliRunner().invoke(main, ["init", "--output", str(out)]).exit_code == 2  # no silent overwrite


def test_validate_reports_every_problem_with_file_line_and_hint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "store:\n  url: sqlite:///x.db\n"
        "connectors:\n"
        "  - name: hr\n    type: workdayy\n    settings: {}\n"
        "  - name: inv\n    type: csv\n    enabld: true\n    settings: {path: x.csv}\n"
        "precedence:\n  asset:\n    fields:\n      serial: {order: [inv]}\n")
    result = CliRunner().invoke(main, ["validate", "--config", str(cfg)])
    assert result.exit_code == 2
    out = result.output
    assert f"{cfg}:9: connectors.1.enabld: unknown key 'enabld' (fix: did you mean 'enabled'?)" in out
    result2 = CliRunner().invoke(main, ["validate", "--config", str(cfg.with_name("ok.yaml"))])
    assert result2.exit_code == 2 and "cannot read config" in result2.output
    cfg.write_text(cfg.read_text().replace("    enabld: true\n", ""))
    out = CliRunner().invoke(main, ["validate", "--config", str(cfg)]).output
    assert f"{cfg}:13: precedence.asset.fields.serial: unknown asset field 'serial'" in out
    assert "did you mean serial_number" in out
    cfg.write_text(cfg.read_text().replace("      serial: {order: [inv]}\n", "      model: {order: [inv]}\n"))
    out = CliRunner().invoke(main, ["validate", "--config", str(cfg)]).output
    assert f"{cfg}:5: connectors.0.type: unknown connector type 'workdayy'; known types:" in out
    assert "csv" in out and "jsonl" in out


def test_validate_accepts_the_demo_config(demo) -> None:  # type: ignore[no-untyped-def]
    result = demo.cli("validate")
    assert result.exit_code == 0, result.output
    assert "ok" in result.output
