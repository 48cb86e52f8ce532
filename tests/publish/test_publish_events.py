"""`itam-sync events`: change events from the demo's merge log, their schema, and resumption by id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from itam_sync.publish.events import EVENT_JSON_SCHEMA, SCHEMA_ID, TYPES, follow_events, resume_file
from itam_sync.settings import load_settings

_JSON_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "null": (type(None),),
                                            "object": (dict,), "array": (list,)}


def check(value: Any, schema: dict[str, Any], where: str = "event") -> None:
    """The subset of JSON Schema EVENT_JSON_SCHEMA uses (no jsonschema dependency for one test)."""
    if "const" in schema:
        assert value == schema["const"], where
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        allowed = tuple(t for k in kinds for t in _JSON_TYPES[k])
        assert isinstance(value, allowed) and not isinstance(value, bool), f"{where}: {value!r} is not {kinds}"
    if "minimum" in schema:
        assert value >= schema["minimum"], where
    for key in schema.get("required", []):
        assert key in value, f"{where}: missing {key}"
    for key, sub in schema.get("properties", {}).items():
        if isinstance(value, dict) and key in value:
            check(value[key], sub, f"{where}.{key}")


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_merge_log_row_is_an_event_in_the_documented_schema(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    result = demo.cli("events")
    assert result.exit_code == 0, result.output
    events = lines(result.output)
    log_rows = json.loads(demo.cli("log", "--json", "--limit", "100000").output)
    # One event per stored row, in id order (`log` lists a first merge's create row field by field, one id).
    assert [e["id"] for e in events] == sorted({r["id"] for r in log_rows})
    for e in events:
        check(e, EVENT_JSON_SCHEMA)
        for change in e.get("fields", []):
            check(change, EVENT_JSON_SCHEMA["properties"]["fields"]["items"])
    assert {e["schema"] for e in events} == {SCHEMA_ID}
    by_type = {t: [e for e in events if e["type"] == t] for t in TYPES}
    assert by_type["entity_linked"] and by_type["entity_created"] and by_type["conflict"]
    # A first merge is one entity_created event: every field, and for each what decided it and by which rule,
    # exactly as `log` shows that row's per-field entries.
    laptop = next(e for e in by_type["entity_created"] if e["entity"]["key"] == "serial_number:C02FK1ABQ6L4")
    holder = next(c for c in laptop["fields"] if c["field"] == "assigned_to")
    assert holder == {"field": "assigned_to", "old": None, "new": "bob.li@example.com", "source": "mdm",
                      "rule": "freshness:90d"}
    assert laptop["new"] == {c["field"]: c["new"] for c in laptop["fields"]}
    assert (laptop["action"], laptop["field"], laptop["old"], laptop["rule"]) == ("create", None, None, "first merge")
    logged = [r for r in log_rows if r["id"] == laptop["id"]]
    assert [(r["action"], r["field"], r["old"], r["new"], r["source"], r["rule"]) for r in logged] == [
        ("set", c["field"], None, c["new"], c["source"], c["rule"]) for c in laptop["fields"]]
    assert laptop["entity"]["type"] == "asset" and laptop["run"] is not None
    # The refused dock-MAC link is a conflict event naming the key.
    [conflict] = by_type["conflict"]
    assert conflict["new"]["key"] == "mac:3c18a00b7c11"


def test_since_id_and_type_filters(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    all_ids = [e["id"] for e in lines(demo.cli("events").output)]
    tail = lines(demo.cli("events", "--since-id", str(all_ids[-5])).output)
    assert [e["id"] for e in tail] == all_ids[-4:]
    only = lines(demo.cli("events", "--type", "conflict", "--type", "missing").output)
    assert only and {e["type"] for e in only} == {"conflict"}


def test_an_output_file_resumes_after_its_last_event(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    out = tmp_path / "events.jsonl"
    assert demo.cli("events", "--output", str(out)).exit_code == 0
    first = lines(out.read_text())
    assert resume_file(str(out)) == first[-1]["id"]
    # Nothing new: appending again writes nothing.
    assert demo.cli("events", "-o", str(out)).exit_code == 0
    assert len(lines(out.read_text())) == len(first)
    # A change, then a writer killed mid-line: the torn line is cut and the file continues cleanly.
    assert demo.cli("override", "C02FK1ABQ6L4", "location", "Lisbon", "--reason", "office move").exit_code == 0
    with out.open("a") as fh:
        fh.write('{"schema": "itam-sync/change-event/v1", "id": 99')
    result = demo.cli("events", "-o", str(out))
    assert result.exit_code == 0, result.output
    events = lines(out.read_text())
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids)) and ids[: len(first)] == [e["id"] for e in first]
    assert events[-1]["field"] == "location" and events[-1]["new"] == "Lisbon"
    assert events[-1]["source"] == "manual" and events[-1]["actor"]
    # A file that is not an events file is not silently appended to.
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    bad = demo.cli("events", "-o", str(other))
    assert bad.exit_code == 2 and "not an itam-sync event; pass --since-id" in bad.output


def test_follow_yields_new_events_as_they_are_committed(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    settings = load_settings(demo.config).settings
    store = demo.store()
    seen: list[int] = []
    got_new = threading.Event()
    stop = threading.Event()
    high = 0
    with store.begin() as repo:
        high = repo.log.max_log_id()

    def consume() -> None:
        for e in follow_events(store, high - 2, interval=0.05, settings=settings, keep_going=lambda: not stop.is_set()):
            seen.append(e.id)
            if e.id > high:
                got_new.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    assert demo.cli("override", "5CG1234XYZ", "location", "Porto", "--reason", "move").exit_code == 0
    assert got_new.wait(10)
    stop.set()
    t.join(5)
    store.close()
    assert seen[:2] == [high - 1, high] and seen[2] == high + 1


@pytest.mark.slow
def test_events_follow_from_the_command_line(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    store = demo.store()
    with store.begin() as repo:
        high = repo.log.max_log_id()
    store.close()
    exe = str(Path(sys.executable).parent / "itam-sync")
    proc = subprocess.Popen([exe, "events", "-c", str(demo.config), "--follow",
                             "--interval", "0.1", "--since-id", str(high - 1)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["id"] == high
        assert demo.cli("override", "5CG1234XYZ", "location", "Porto", "--reason", "move").exit_code == 0
        new = json.loads(proc.stdout.readline())
        assert new["id"] == high + 1 and new["new"] == "Porto"
    finally:
        proc.terminate()
        proc.wait(10)
