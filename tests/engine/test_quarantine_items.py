"""Quarantine keeps one row per broken record (issue #20 item 10, #15 item 16): repeated runs update it with
the latest reason and a count, a record that maps again resolves it, and a record without a source key is
named by file and line and the key expression."""

from __future__ import annotations

import json
from typing import Any

BROKEN = {"id": "00u1broken", "status": "ACTIVE", "lastUpdated": "not a date",
          "profile": {"login": "ghost@example.com", "email": "ghost@example.com"}}


def _rows(demo, *args: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return json.loads(demo.cli("quarantine", "--json", *args).output)


def test_a_record_broken_on_every_run_keeps_one_row_with_a_count(demo) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        assert demo.cli("run", "--full", "-q").exit_code == 0
    rows = [r for r in _rows(demo) if r["connector"] == "okta-users"]
    assert len(rows) == 1, rows  # not one per run
    (row,) = rows
    assert row["source_key"] == "00u1broken" and row["count"] == 3 and row["status"] == "open"
    assert "'not a date'" in row["reason"]
    assert row["position"].endswith("okta_users.jsonl:7")  # where to fix it
    store = demo.store()
    with store.begin() as repo:
        assert repo.entities.counts()["quarantined"] == 1
    store.close()

    # The source fixes the record: the row is resolved (and kept, for the record).
    path = demo.data / "okta_users.jsonl"
    path.write_text(path.read_text().replace('"lastUpdated":"not a date"', '"lastUpdated":"2026-11-20T08:00:00Z"'))
    assert demo.cli("run", "-q", "--connector", "okta-users").exit_code == 0
    assert [r for r in _rows(demo) if r["connector"] == "okta-users"] == []
    (resolved,) = [r for r in _rows(demo, "--resolved") if r["connector"] == "okta-users"]
    assert resolved["id"] == row["id"] and resolved["status"] == "resolved" and resolved["count"] == 3


def test_a_record_gone_from_the_source_resolves_on_a_full_run(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    path = demo.data / "okta_users.jsonl"
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True) if "00u1broken" not in line))
    assert demo.cli("run", "--full", "-q", "--connector", "okta-users").exit_code == 0
    assert [r for r in _rows(demo) if r["connector"] == "okta-users"] == []


def test_a_line_without_a_source_key_names_file_line_and_key_expression(demo) -> None:  # type: ignore[no-untyped-def]
    path = demo.data / "hr_people.csv"
    lines = path.read_text().splitlines()
    lines.insert(3, ",Zoe,Ng,zoe.ng@example.com,Sales,Rep,Active,,2024-01-10,,2026-11-20T08:00:00Z")  # no id
    path.write_text("\n".join(lines) + "\n")
    for _ in range(2):
        assert demo.cli("run", "--full", "-q", "--connector", "hr").exit_code == 0
    (row,) = [r for r in _rows(demo) if r["connector"] == "hr"]
    assert row["position"] == f"{path}:4" and row["source_key"] is None and row["count"] == 2
    assert row["reason"] == f"stream 'people': no source key: 'employee_id' gave '' (at {path}:4)"
    table = demo.cli("quarantine").output
    assert "hr_people.csv:4" in table.replace("\n", "")
