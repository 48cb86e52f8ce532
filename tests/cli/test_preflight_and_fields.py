"""`run` checks the whole config as `validate` does before syncing anything (issue #20 item 9), and
`runs --fields RUN` prints a run's fill rates (issue #14)."""

from __future__ import annotations

import json
import sqlite3

import pytest


def _runs_recorded(demo) -> int:  # type: ignore[no-untyped-def]
    if not demo.db.exists():
        return 0
    with sqlite3.connect(demo.db) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name='sync_runs'").fetchone():
            return 0
        return int(db.execute("SELECT count(*) FROM sync_runs").fetchone()[0])


def _line_of(path, text: str) -> int:  # type: ignore[no-untyped-def]
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize("problem", ["type", "field", "jmespath"])
def test_a_problem_in_the_fifth_connector_stops_run_before_the_first_syncs(demo, problem: str) -> None:  # type: ignore[no-untyped-def]
    mapping = demo.config.parent / "mappings" / "edr.yaml"  # edr is the fifth connector
    if problem == "type":
        demo.config.write_text(demo.config.read_text().replace("  - name: edr\n    type: csv",
                                                               "  - name: edr\n    type: cvs"))
        where = f"{demo.config}:{_line_of(demo.config, 'type: cvs')}: connectors.4.type: unknown connector type 'cvs'"
    elif problem == "field":
        mapping.write_text(mapping.read_text().replace("      hostname: {from: hostname",
                                                       "      hostnam: {from: hostname"))
        where = f"{mapping}:{_line_of(mapping, 'hostnam:')}"
    else:
        mapping.write_text(mapping.read_text().replace("{from: os_version,", "{from: 'os_version[',"))
        where = f"{mapping}:{_line_of(mapping, 'os_version[')}"

    result = demo.cli("run", "--full", "-q")

    assert result.exit_code == 2, result.output
    assert where in result.output
    assert "nothing was synced" in result.output
    assert _runs_recorded(demo) == 0  # hr, okta-users, procurement and mdm did not run either
    # `validate` reports the same problem.
    validate = demo.cli("validate")
    assert validate.exit_code == 2 and where in validate.output


def test_runs_fields_prints_fill_rates_against_the_baseline(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    assert demo.cli("run", "--full", "-q", "--connector", "hr").exit_code == 0
    run_id = json.loads(demo.cli("runs", "--json", "--connector", "hr").output)[0]["id"]

    rows = json.loads(demo.cli("runs", "--fields", str(run_id), "--json").output)

    manager = next(r for r in rows if r["field"] == "manager")
    assert manager == {"stream": "people", "field": "manager", "records": 5, "filled": 4, "fill": 0.8,
                       "baseline_fill": 0.8, "baseline_run": run_id - 6, "paths": ["manager_email"],
                       "absent_paths": []}
    table = demo.cli("runs", "--fields", str(run_id)).output
    assert f"run {run_id}: hr (full, success) fill rates; baseline run {run_id - 6}" in table
    assert any(line.split()[:6] == ["people", "manager", "5", "4", "80%", "80%"] for line in table.splitlines())
    missing = demo.cli("runs", "--fields", "9999")
    assert missing.exit_code == 2 and "no run 9999" in missing.output
