"""Data contracts (issue #14): fill rates and source paths per run; a vanished field or a fill-rate drop ends a
full run `degraded` (exit 3) with a message naming connector, stream, field and path."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest


def _rewrite_csv(path: Path, drop: str | None = None, blank: str | None = None) -> None:
    rows = list(csv.DictReader(path.open(newline="")))
    cols = [c for c in rows[0] if c != drop]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            if blank:
                r[blank] = ""
            w.writerow(r)


def _runs(demo, connector: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return json.loads(demo.cli("runs", "--json", "--connector", connector).output)


def _contract(run: dict, stream: str) -> dict:  # type: ignore[type-arg]
    return next(s for s in run["counts"]["_contract"] if s["stream"] == stream)


def test_a_vanished_source_field_ends_the_full_run_degraded_with_its_name(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    good = _runs(demo, "hr")[0]
    assert good["status"] == "success"
    _rewrite_csv(demo.data / "hr_people.csv", drop="manager_email")  # the HR export lost its manager column

    result = demo.cli("run", "--full", "-q", "--connector", "hr")

    assert result.exit_code == 3, result.output
    want = f"hr people: manager: source path manager_email absent from all 5 records (present on run {good['id']}"
    assert want in result.output
    run = _runs(demo, "hr")[0]
    assert run["status"] == "degraded"
    assert want in run["error"]
    # Staged all the same (degraded is not failed): the records changed, nothing was marked missing.
    assert run["counts"]["people"]["changed"] == 5 and run["counts"]["_total"]["missing_marked"] == 0
    assert _contract(run, "people")["paths"]["manager_email"] is False
    assert _contract(run, "people")["fields"]["manager"] == 0
    # The field's absence is reported once, not again as a fill-rate drop.
    assert "manager empty in" not in run["error"]
    # `status` shows it too.
    status = json.loads(demo.cli("status", "--json").output)
    assert next(c for c in status["connectors"] if c["connector"] == "hr")["last_run"]["status"] == "degraded"


def test_a_fill_rate_drop_degrades_until_accepted(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    good = _runs(demo, "hr")[0]
    assert _contract(good, "people")["fields"]["manager"] == 4  # 4 of 5 people have a manager
    _rewrite_csv(demo.data / "hr_people.csv", blank="manager_email")  # column there, every value gone

    result = demo.cli("run", "--full", "-q", "--connector", "hr")
    assert result.exit_code == 3
    assert f"hr people: manager empty in 100% of 5 records (filled in 80% on run {good['id']})" in result.output
    assert "source path manager_email absent" not in result.output  # the column is there
    degraded = _runs(demo, "hr")[0]
    assert degraded["status"] == "degraded"

    # Still degraded on the next full run: the baseline stays the last successful one.
    assert demo.cli("run", "--full", "-q", "--connector", "hr").exit_code == 3
    # A deliberate change is accepted once and becomes the new baseline.
    accepted = demo.cli("run", "--full", "-q", "--connector", "hr", "--accept-drops")
    assert accepted.exit_code == 0, accepted.output
    assert _runs(demo, "hr")[0]["status"] == "success"
    assert demo.cli("run", "--full", "-q", "--connector", "hr").exit_code == 0


def test_a_drop_within_sync_fill_rate_drop_is_success(demo) -> None:  # type: ignore[no-untyped-def]
    demo.config.write_text(demo.config.read_text().replace("deletion_guard: 0.10",
                                                           "deletion_guard: 0.10\n  fill_rate_drop: 0.9"))
    assert demo.cli("run", "--full", "-q").exit_code == 0
    _rewrite_csv(demo.data / "hr_people.csv", blank="manager_email")
    assert demo.cli("run", "--full", "-q", "--connector", "hr").exit_code == 0  # 80 points < 90


def test_fill_rates_and_paths_are_recorded_and_unchanged_records_count(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    first = _contract(_runs(demo, "hr")[0], "people")
    assert first["records"] == 5 and first["read"] == 5
    assert first["fields"] == {"employee_id": 5, "email": 5, "display_name": 5, "department": 5, "title": 5,
                               "manager": 4, "status": 5, "start_date": 5, "end_date": 1}
    assert first["paths"] == dict.fromkeys(["employee_id", "work_email", "first_name", "last_name", "department",
                                            "job_title", "manager_email", "status", "start_date", "end_date"],
                                           True)
    assert first["field_paths"]["display_name"] == [["first_name"], ["last_name"]]
    assert first["field_paths"]["(source key)"] == [["employee_id"]]
    # A second full run skips every record as unchanged: their fill comes from the store, the same numbers.
    assert demo.cli("run", "--full", "-q", "--connector", "hr").exit_code == 0
    second = _runs(demo, "hr")[0]
    assert second["counts"]["people"]["unchanged"] == 5
    assert _contract(second, "people")["fields"] == first["fields"]


def test_incremental_runs_record_but_do_not_judge(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    _rewrite_csv(demo.data / "hr_people.csv", drop="manager_email")
    assert demo.cli("run", "-q", "--connector", "hr").exit_code == 0
    run = _runs(demo, "hr")[0]
    assert run["mode"] == "incremental" and run["status"] == "success"
    assert _contract(run, "people")["fields"]["manager"] == 0


def test_a_path_absent_on_the_first_full_run_warns_only(demo, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    mapping = demo.config.parent / "mappings" / "hr.yaml"
    mapping.write_text(mapping.read_text().replace("from: manager_email", "from: manager_mail"))  # a typo
    with caplog.at_level(logging.WARNING, logger="itam_sync.engine.runner"):
        result = demo.cli("run", "--full", "-q", "--connector", "hr")
    assert result.exit_code == 0
    assert any("hr people: manager: source path manager_mail absent from all 5 records: check the path" in m
               for m in caplog.messages)
    # An optional field is never reported absent.
    mapping.write_text(mapping.read_text().replace("from: manager_mail, transforms: [email]",
                                                   "from: manager_mail, transforms: [email], optional: true"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="itam_sync.engine.runner"):
        assert demo.cli("run", "--full", "-q", "--connector", "hr").exit_code == 0
    assert not any("manager_mail" in m for m in caplog.messages)
