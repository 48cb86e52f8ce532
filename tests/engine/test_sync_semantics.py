"""Sync semantics: incremental skips, missing marks, the deletion guard, failed runs and exact log rows."""

from __future__ import annotations

import json

from tests_helpers import golden_by_key  # type: ignore[import-not-found]


def _edit_jsonl(path, key: str, value: str, field: str, new):  # type: ignore[no-untyped-def]
    lines = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get(key) == value:
            rec[field] = new
        lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n")


def _drop_jsonl(path, key: str, value: str) -> str:  # type: ignore[no-untyped-def]
    kept, dropped = [], ""
    for line in path.read_text().splitlines():
        if json.loads(line).get(key) == value:
            dropped = line
        else:
            kept.append(line)
    path.write_text("\n".join(kept) + "\n")
    return dropped


def test_incremental_run_skips_unchanged_and_logs_exact_change(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    # Nothing changed: file sources are not even read.
    demo.cli("run", "-q", "--connector", "mdm")
    runs = json.loads(demo.cli("runs", "--json", "--connector", "mdm").output)
    assert runs[0]["mode"] == "incremental" and runs[0]["counts"]["devices"]["seen"] == 0
    _edit_jsonl(demo.data / "mdm_devices.jsonl", "id", "mdm-002", "osVersion", "10.0.26100.2314")
    assert demo.cli("run", "-q", "--connector", "mdm").exit_code == 0
    runs = json.loads(demo.cli("runs", "--json", "--connector", "mdm").output)
    assert runs[0]["counts"]["devices"] | {} == {"seen": 6, "new": 0, "changed": 1, "unchanged": 5,
                                                 "reappeared": 0, "quarantined": 0}
    store = demo.store()
    with store.begin() as repo:
        eid = golden_by_key(repo, "asset", "serial_number:5CG1234XYZ")["_id"]
        merge_run = repo.runs.list_runs(1)[0]
        rows = [(r["entity_id"], r["action"], r["field"], r["old"], r["new"], r["source"], r["rule"])
                for r in repo.log.log_rows(run_id=merge_run["id"])]
    store.close()
    assert merge_run["connector"] == "(merge)"
    assert rows == [(eid, "set", "os_version", "10.0.22631.3737", "10.0.26100.2314", "mdm", "precedence:default")]


def test_full_run_marks_unseen_missing_behind_the_deletion_guard(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    dropped = _drop_jsonl(demo.data / "mdm_devices.jsonl", "id", "mdm-006")  # 1 of 6 = 17% > 10% guard
    result = demo.cli("run", "--full", "-q", "--connector", "mdm")
    assert result.exit_code == 0
    assert "deletion guard" in result.output and "--allow-shrink" in result.output
    store = demo.store()
    with store.begin() as repo:
        assert repo.entities.counts()["missing_records"] == 0
        assert repo.runs.list_runs(1, "mdm")[0]["status"] == "guarded"
    result = demo.cli("run", "--full", "-q", "--connector", "mdm", "--allow-shrink")
    with store.begin() as repo:
        assert repo.entities.counts()["missing_records"] == 1
        phone = golden_by_key(repo, "asset", "serial_number:F17ZK3LMN0D8")
        assert repo.entities.goldens([phone["_id"]])[phone["_id"]][2] == "missing"  # soft: kept, marked missing
        assert [r["action"] for r in repo.log.log_rows(entity_id=phone["_id"])][-1] == "missing"
    # The phone comes back: restored, not duplicated.
    with (demo.data / "mdm_devices.jsonl").open("a") as fh:
        fh.write(dropped + "\n")
    demo.cli("run", "--full", "-q", "--connector", "mdm")
    with store.begin() as repo:
        assert repo.entities.counts()["missing_records"] == 0
        assert repo.entities.goldens([phone["_id"]])[phone["_id"]][2] == "active"
        assert repo.entities.counts()["entities"]["asset:active"] == 10
    store.close()


def test_empty_full_pull_is_guarded(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    header = (demo.data / "edr_hosts.csv").read_text().splitlines()[0]
    (demo.data / "edr_hosts.csv").write_text(header + "\n")
    result = demo.cli("run", "--full", "-q", "--connector", "edr")
    assert "would mark 6 of 6 records (100%) missing" in result.output
    store = demo.store()
    with store.begin() as repo:
        assert repo.entities.counts()["missing_records"] == 0
    store.close()


def test_failed_run_marks_nothing_keeps_cursor_and_exits_non_zero(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    store = demo.store()
    with store.begin() as repo:
        before = (repo.runs.get_cursors("mdm"), list(repo.entities.iter_entities("asset")))
    (demo.data / "mdm_devices.jsonl").unlink()
    result = demo.cli("run", "--full", "-q", "--connector", "mdm")
    assert result.exit_code == 1
    assert "file not found" in result.output
    with store.begin() as repo:
        assert (repo.runs.get_cursors("mdm"), list(repo.entities.iter_entities("asset"))) == before
        assert repo.entities.counts()["missing_records"] == 0
        assert repo.runs.list_runs(1, "mdm")[0]["status"] == "failed"
    store.close()


def test_malformed_record_is_quarantined_with_reason(demo) -> None:  # type: ignore[no-untyped-def]
    with (demo.data / "mdm_devices.jsonl").open("a") as fh:
        fh.write('{"id": "mdm-bad", "serialNumber": "X1", "lastSyncDateTime": "yesterday"}\n{not json\n')
    demo.cli("run", "--full", "-q")
    store = demo.store()
    with store.begin() as repo:
        reasons = sorted((r[5] for r in repo.quarantine.list_quarantine() if r[2] == "mdm"),
                         key=lambda r: "not valid JSON" not in r)
    store.close()
    assert len(reasons) == 2
    assert "not valid JSON" in reasons[0] and "mdm_devices.jsonl:8" in reasons[0]
    assert "record 'mdm-bad'" in reasons[1] and "'yesterday'" in reasons[1]
    assert "mdm_devices.jsonl:7" in reasons[1]  # where to fix it


def test_conflict_closes_when_its_record_goes_missing_and_reopens_when_it_returns(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    assert [c["source_key"] for c in json.loads(demo.cli("conflicts", "--json").output)] == ["cs-a5"]
    hosts = demo.data / "edr_hosts.csv"
    original = hosts.read_text()
    hosts.write_text("".join(line for line in original.splitlines(keepends=True) if not line.startswith("cs-a5,")))
    demo.cli("run", "--full", "-q", "--connector", "edr", "--allow-shrink")
    assert json.loads(demo.cli("conflicts", "--json").output) == []
    hosts.write_text(original)
    demo.cli("run", "--full", "-q", "--connector", "edr")
    assert [c["source_key"] for c in json.loads(demo.cli("conflicts", "--json").output)] == ["cs-a5"]
