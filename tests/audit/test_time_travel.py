"""`explain --as-of` and `export --as-of`: golden records as they stood at a past time, from the merge log."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time

import pytest
from tests_helpers import golden_by_key  # type: ignore[import-not-found]


def _max_at(demo) -> str:  # type: ignore[no-untyped-def]
    with sqlite3.connect(demo.db) as db:
        return str(db.execute("SELECT max(at) FROM merge_log").fetchone()[0])


def _next_second() -> None:
    """The log's times have second precision: make sure the next run logs at a later second."""
    time.sleep(1.05)


def _edit_mdm(demo) -> None:  # type: ignore[no-untyped-def]
    """Ana's old MacBook gets a new OS version; a new MDM record carries the ordered ThinkPad's serial and the
    desktop's MAC, so the desktop (junk serial, known by MAC only) is merged into the ThinkPad's entity."""
    path = demo.data / "mdm_devices.jsonl"
    text = path.read_text().replace('"osVersion":"14.6.1"', '"osVersion":"15.1"')
    text += json.dumps({"id": "mdm-007", "deviceName": "LT-NEW-X1", "serialNumber": "PF9NEW001",
                        "wiFiMacAddress": "", "ethernetMacAddress": "001B638445E6", "manufacturer": "Lenovo",
                        "model": "ThinkPad X1 Carbon Gen 12", "operatingSystem": "Windows", "osVersion": "11",
                        "userPrincipalName": "eve.martin@example.com", "complianceState": "compliant",
                        "lastSyncDateTime": "2026-11-26T08:00:00Z"}) + "\n"
    path.write_text(text)


def _ids(demo) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    store = demo.store()
    with store.begin() as repo:
        laptop = golden_by_key(repo, "asset", "serial_number:C02FK1ABQ6L4")["_id"]
        thinkpad = golden_by_key(repo, "asset", "serial_number:PF9NEW001")["_id"]
        desktop = repo.entities.entity_by_key("asset", "mac:001b638445e6")
    store.close()
    assert desktop is not None
    return laptop, thinkpad, desktop


def test_explain_and_export_as_of_show_the_state_between_two_syncs(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    laptop, thinkpad, desktop = _ids(demo)
    assert desktop != thinkpad
    before_json = json.loads(demo.cli("export", "--entity", "assets").output)
    before_csv = demo.cli("export", "--entity", "assets", "--format", "csv").output
    before_people = json.loads(demo.cli("export", "--entity", "people").output)
    t1 = _max_at(demo)
    _next_second()
    _edit_mdm(demo)
    assert demo.cli("run", "-q").exit_code == 0
    assert _ids(demo)[2] == thinkpad  # the desktop's MAC now belongs to the ThinkPad's entity
    now = json.loads(demo.cli("explain", "C02FK1ABQ6L4", "--json").output)
    assert {f["field"]: f["value"] for f in now["fields"]}["os_version"] == "15.1"

    # explain --as-of: the old value, with its source and rule as logged, and the note about competitors.
    result = demo.cli("explain", "C02FK1ABQ6L4", "--as-of", t1)
    assert result.exit_code == 0, result.output
    assert "os_version = 14.6.1" in result.output
    assert "set by: mdm; precedence:default" in result.output
    assert "competing values and their ages are not kept in the log" in result.output
    assert "fed by mdm/devices/mdm-001" in result.output
    ex = json.loads(demo.cli("explain", "C02FK1ABQ6L4", "--as-of", t1, "--json").output)
    fields = {f["field"]: f for f in ex["fields"]}
    assert ex["entity_id"] == laptop and ex["status"] == "active" and ex["as_of"] == t1
    assert (fields["os_version"]["value"], fields["os_version"]["source"]) == ("14.6.1", "mdm")
    assert (fields["assigned_to"]["value"], fields["assigned_to"]["rule"]) == ("bob.li@example.com", "freshness:90d")
    assert all(h["at"] <= t1 for h in ex["history"])

    # The desktop before and after it was merged away.
    old = json.loads(demo.cli("explain", str(desktop), "--as-of", t1, "--json").output)
    assert old["status"] == "active" and old["merged_into"] is None
    assert {f["field"]: f["value"] for f in old["fields"]}["hostname"] == "dt-eve-01"
    assert old["records"] == ["edr/hosts/cs-a3", "mdm/devices/mdm-003"]
    gone = json.loads(demo.cli("explain", str(desktop), "--as-of", _max_at(demo), "--json").output)
    assert gone["status"] == "merged" and gone["merged_into"]["entity"] == thinkpad
    tp_then = json.loads(demo.cli("explain", str(thinkpad), "--as-of", t1, "--json").output)
    assert tp_then["records"] == ["procurement/orders/PO-2026-0400/PF9NEW001"]
    assert tp_then["merged_later"] == [{"entity": desktop, "at": gone["merged_into"]["at"]}]
    tp_now = json.loads(demo.cli("explain", str(thinkpad), "--as-of", _max_at(demo), "--json").output)
    assert tp_now["merged_from"] == [{"entity": desktop, "at": gone["merged_into"]["at"]}]
    assert tp_now["records"] == ["edr/hosts/cs-a3", "mdm/devices/mdm-003", "mdm/devices/mdm-007",
                                 "procurement/orders/PO-2026-0400/PF9NEW001"]

    # export --as-of between the syncs matches the export taken then, in JSON and CSV, assets and people.
    assert json.loads(demo.cli("export", "--entity", "assets", "--as-of", t1).output) == before_json
    assert demo.cli("export", "--entity", "assets", "--format", "csv", "--as-of", t1).output == before_csv
    assert json.loads(demo.cli("export", "--entity", "people", "--as-of", t1).output) == before_people
    # ... and as of now it has the current values and sources (the winning source is logged when the value
    # changes; the export's per-field sources can differ where only the source changed).
    current = {a["id"]: a for a in json.loads(demo.cli("export", "--entity", "assets").output)}
    rebuilt = {a["id"]: a for a in json.loads(demo.cli("export", "--entity", "assets", "--as-of",
                                                       _max_at(demo)).output)}
    assert rebuilt.keys() == current.keys() and desktop not in rebuilt
    assert {i: a["fields"] for i, a in rebuilt.items()} == {i: a["fields"] for i, a in current.items()}
    assert {i: a["sources"] for i, a in rebuilt.items()} == {i: a["sources"] for i, a in current.items()}
    rows = list(csv.DictReader(io.StringIO(demo.cli("export", "--entity", "assets", "--format", "csv", "--as-of",
                                                    t1).output)))
    assert {r["id"] for r in rows} == {str(a["id"]) for a in before_json}


def test_as_of_before_anything_and_bad_times_are_clear_errors(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    result = demo.cli("explain", "C02FK1ABQ6L4", "--as-of", "2020-01-01")
    assert result.exit_code == 2 and "did not exist yet" in result.output
    result = demo.cli("explain", "C02FK1ABQ6L4", "--as-of", "June")
    assert result.exit_code == 2 and "not a date or time" in result.output
    assert json.loads(demo.cli("export", "--entity", "assets", "--as-of", "2020-01-01").output) == []
    # A bare date means the end of that day: today's state.
    today = _max_at(demo)[:10]
    assert len(json.loads(demo.cli("export", "--entity", "assets", "--as-of", today).output)) == 10


@pytest.mark.postgres
def test_as_of_on_postgres(demo, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    from itam_sync.store import Store

    demo.config.write_text(demo.config.read_text().replace(f"sqlite:///{demo.db}", postgres_url))
    assert demo.cli("run", "--full", "-q").exit_code == 0
    before = json.loads(demo.cli("export", "--entity", "assets").output)
    pg = Store.open(postgres_url)
    with pg.begin() as repo:
        t1 = repo.log.log_rows(limit=1)[-1]["at"]
        desktop = repo.entities.entity_by_key("asset", "mac:001b638445e6")
    pg.close()
    _next_second()
    _edit_mdm(demo)
    assert demo.cli("run", "-q").exit_code == 0
    assert json.loads(demo.cli("export", "--entity", "assets", "--as-of", t1).output) == before
    ex = json.loads(demo.cli("explain", "C02FK1ABQ6L4", "--as-of", t1, "--json").output)
    assert {f["field"]: f["value"] for f in ex["fields"]}["os_version"] == "14.6.1"
    now = {a["id"] for a in json.loads(demo.cli("export", "--entity", "assets", "--as-of", "2999-01-01").output)}
    assert desktop in {a["id"] for a in before} and desktop not in now  # merged away since
    gone = json.loads(demo.cli("explain", str(desktop), "--as-of", "2999-01-01", "--json").output)
    assert gone["status"] == "merged"
