"""File sources that cannot be read whole, or lack a column their mapping identifies records by.

Issue #14: a file without its mapping's key or match-key columns is refused, naming file and header line,
and nothing of it is staged (a CSV without its serial column used to move an EDR record onto the wrong asset
through its MAC). Issue #20 items 9 and 11: encoding errors and oversized CSV values name file and line, and
a truncated JSONL or CSV ends a full run `degraded` (exit 3), never marking its records missing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from itam_sync.sdk.connector import BadRecord
from itam_sync.sdk.textfiles import csv_records, jsonl_records

SERIAL = [("serial_number", (("serial_number",), ("serial",)))]


def _write(path: Path, text: str | bytes) -> Path:
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)  # type: ignore[operator]
    return path


def test_csv_without_a_required_column_is_refused_before_any_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "edr.csv", "device_id,hostname,mac_address\ncs-1,lt-1,a4:83:e7:12:34:56\n")
    got = list(csv_records(path, "utf-8", ",", SERIAL))
    assert len(got) == 1
    line, bad = got[0]
    assert isinstance(bad, BadRecord) and bad.incomplete and line == 1 and bad.position == f"{path}:1"
    assert bad.reason.startswith(f"{path}:1: file refused, nothing of it was staged: no serial_number (one of "
                                 "serial_number, serial); the header has: device_id, hostname, mac_address")
    # With the column (even empty), the rows come through.
    path = _write(tmp_path / "ok.csv", "device_id,serial\ncs-1,\n")
    assert list(csv_records(path, "utf-8", ",", SERIAL)) == [(2, {"device_id": "cs-1", "serial": ""})]


def test_csv_cut_off_or_undecodable_or_oversized_is_named_by_line_and_incomplete(tmp_path: Path) -> None:
    ok = "id,name,serial\n1,a,S1\n2,b,S2\n"
    short = _write(tmp_path / "short.csv", ok + "3,c")  # the copy stopped mid-row
    *rows, (line, bad) = csv_records(short, "utf-8", ",")
    assert [r for _, r in rows] == [{"id": "1", "name": "a", "serial": "S1"}, {"id": "2", "name": "b", "serial": "S2"}]
    assert isinstance(bad, BadRecord) and bad.incomplete and line == 4
    assert bad.reason.startswith(f"{short}:4: the file ends in the middle of this record")
    quote = _write(tmp_path / "quote.csv", ok + '3,"c, d,S3\n')  # a quoted value never closed
    assert next(b for _, b in csv_records(quote, "utf-8", ",") if isinstance(b, BadRecord)).reason.startswith(
        f"{quote}:4: the file ends in the middle of this record")
    latin = _write(tmp_path / "latin.csv", (ok + "3,Åhléns,S3\n4,d,S4\n").encode("latin-1"))
    *rows, (line, bad) = csv_records(latin, "utf-8", ",")
    assert len(rows) == 2 and isinstance(bad, BadRecord) and bad.incomplete and line == 4
    assert bad.reason.startswith(f"{latin}:4: not utf-8 text (invalid continuation byte")
    big = _write(tmp_path / "big.csv", ok + "3," + "x" * (csv.field_size_limit() + 10) + ",S3\n4,d,S4\n")
    *rows, (line, bad) = csv_records(big, "utf-8", ",")
    assert len(rows) == 2 and isinstance(bad, BadRecord) and bad.incomplete and line == 4
    assert bad.reason.startswith(f"{big}:4: a value longer than the CSV field limit of 131,072 characters")
    # A bad row in the middle is quarantined; the file was still read to its end.
    mid = _write(tmp_path / "mid.csv", "id,name,serial\n1,a\n2,b,S2\n")
    (line, bad), (_, rec) = list(csv_records(mid, "utf-8", ","))
    assert isinstance(bad, BadRecord) and not bad.incomplete and line == 2 and rec == {"id": "2", "name": "b",
                                                                                       "serial": "S2"}


def test_jsonl_truncated_undecodable_or_without_its_key_column(tmp_path: Path) -> None:
    good = '{"id": "a", "serial": "S1"}\n{"id": "b"}\n'
    cut = _write(tmp_path / "cut.jsonl", good + '{"id": "c", "ser')
    *rows, (line, bad) = jsonl_records(cut, "utf-8")
    assert len(rows) == 2 and isinstance(bad, BadRecord) and bad.incomplete and line == 3
    assert bad.reason.startswith(f"{cut}:3: the file ends in the middle of this record")
    mid = _write(tmp_path / "mid.jsonl", '{"id": "a"}\n{oops\n{"id": "b"}\n')
    got = list(jsonl_records(mid, "utf-8"))
    assert isinstance(got[1][1], BadRecord) and not got[1][1].incomplete and got[1][0] == 2
    assert got[2] == (3, {"id": "b"})
    latin = _write(tmp_path / "latin.jsonl", (good + '{"id": "c", "name": "Åhléns"}\n').encode("latin-1"))
    *rows, (line, bad) = jsonl_records(latin, "utf-8")
    assert isinstance(bad, BadRecord) and bad.incomplete and line == 3 and bad.reason.startswith(f"{latin}:3: not ")
    # Required columns of JSON Lines: some record of the file must have each; the serial in record 1 does.
    assert [r for _, r in jsonl_records(_write(tmp_path / "ok.jsonl", good), "utf-8", SERIAL)] == [
        {"id": "a", "serial": "S1"}, {"id": "b"}]
    none = _write(tmp_path / "none.jsonl", '{"id": "a"}\n{"id": "b"}\n')
    ((line, bad),) = list(jsonl_records(none, "utf-8", SERIAL))
    assert isinstance(bad, BadRecord) and bad.incomplete and line == 1
    assert "no serial_number (one of serial_number, serial); no record of the file has them" in bad.reason


def _entities(demo, *device_ids: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    store = demo.store()
    with store.begin() as repo:
        out = {d: repo.records.find_record("edr", "hosts", d)[0][4] for d in device_ids}
    store.close()
    return out


def test_an_edr_csv_without_its_serial_column_is_refused_and_moves_nothing(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    before = _entities(demo, "cs-a1", "cs-a4", "cs-a5")
    path = demo.data / "edr_hosts.csv"
    rows = list(csv.DictReader(path.open(newline="")))
    with path.open("w", newline="") as fh:  # the export lost its serial column; MACs are still there
        w = csv.DictWriter(fh, [c for c in rows[0] if c != "serial_number"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

    result = demo.cli("run", "--full", "-q", "--connector", "edr")

    assert result.exit_code == 3, result.output
    assert f"{path}:1: file refused, nothing of it was staged: no serial_number (column serial_number)" in (
        result.output)
    run = json.loads(demo.cli("runs", "--json", "--connector", "edr").output)[0]
    assert run["status"] == "degraded"
    assert run["counts"]["hosts"] == {"seen": 1, "new": 0, "changed": 0, "unchanged": 0, "reappeared": 0,
                                      "quarantined": 1}
    assert run["counts"]["_total"]["missing_marked"] == 0
    assert _entities(demo, "cs-a1", "cs-a4", "cs-a5") == before  # no record joined another asset by MAC
    (row,) = [r for r in json.loads(demo.cli("quarantine", "--json").output) if r["connector"] == "edr"]
    assert row["position"] == f"{path}:1"


def test_a_truncated_jsonl_ends_the_full_run_degraded_and_marks_nothing_missing(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    path = demo.data / "mdm_devices.jsonl"
    text = path.read_text()
    path.write_text(text[:text.rindex('"deviceName"')])  # the copy stopped inside the last device

    result = demo.cli("run", "--full", "-q", "--connector", "mdm")

    assert result.exit_code == 3, result.output
    assert f"{path}:6: the file ends in the middle of this record" in result.output
    assert "nothing of this stream was marked missing" in result.output
    run = json.loads(demo.cli("runs", "--json", "--connector", "mdm").output)[0]
    assert run["status"] == "degraded" and run["counts"]["_total"]["missing_marked"] == 0
    assert "deletion guard" not in run["error"]
    store = demo.store()
    with store.begin() as repo:
        assert repo.entities.counts()["missing_records"] == 0
    store.close()


def test_an_undecodable_csv_names_file_and_line(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    path = demo.data / "hr_people.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace("Diaz", "Díaz")
    path.write_bytes("".join(lines).encode("latin-1"))
    result = demo.cli("run", "--full", "-q", "--connector", "hr")
    assert result.exit_code == 3
    assert f"{path}:4: not utf-8-sig text" in result.output
    assert json.loads(demo.cli("runs", "--json", "--connector", "hr").output)[0]["counts"]["_total"][
        "missing_marked"] == 0
