"""Issue 15, items 13, 15 and 16: errors and output. `check` fails fast on an unreachable host naming the cause and
the fix, with progress; `run` prints a failure once; piped output keeps whole lines; every table has --format
json|csv (and every --json a help); one `status` column per CSV header, stripped source keys, a link that undoes
an unlink leaves no empty entity, and English plurals and articles."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from itam_sync.cli.main import main
from itam_sync.cli.output import article, plural

ROOT = Path(__file__).resolve().parents[2]


def itam(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess: stdout and stderr are pipes, not a terminal (as in `cmd > file`)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "itam_sync", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=120)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


def okta_config(tmp_path: Path, urls: dict[str, str]) -> Path:
    blocks = "".join(f"  - name: {name}\n    type: okta\n    settings:\n      org_url: {url}\n"
                     "      api_token: ${env:ITAM_T_OKTA_TOKEN}\n      app_assignments: false\n"
                     for name, url in urls.items())
    cfg = tmp_path / "itam-sync.yaml"
    cfg.write_text(f"mappings_dir: {ROOT / 'mappings'}\nconnectors:\n{blocks}")
    return cfg


# -- item 13 --------------------------------------------------------------------------------------------

def test_check_fails_fast_on_an_unreachable_host_naming_the_cause_and_the_fix(tmp_path: Path) -> None:
    port = closed_port()
    cfg = okta_config(tmp_path, {"refused": f"http://127.0.0.1:{port}", "nodns": "https://okta.example.invalid"})
    started = time.monotonic()
    result = itam("check", "--config", str(cfg), env={"ITAM_T_OKTA_TOKEN": "t"})
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert elapsed < 20, elapsed  # one attempt each, not five with back-off (85 s before)
    lines = result.stdout.splitlines()
    refused = next(line for line in lines if line.startswith("fail  refused:"))
    assert (f"127.0.0.1:{port} refused the connection (nothing listens there) (fix: check the URL and port in the "
            "connector's settings, and that the service is up)") in refused
    nodns = next(line for line in lines if line.startswith("fail  nodns:"))
    assert ("the host name 'okta.example.invalid' does not resolve (DNS lookup failed) (fix: check the URL in the "
            "connector's settings for a typo") in nodns
    assert "ConnectionError" not in result.stdout + result.stderr
    assert result.stderr.strip().endswith("2 connectors of 2 failed the check")


def test_check_shows_which_connector_it_is_checking_on_a_terminal(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = okta_config(tmp_path, {"refused": f"http://127.0.0.1:{closed_port()}"})
    monkeypatch.setenv("ITAM_T_OKTA_TOKEN", "t")
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats the output as a terminal: the progress display runs
    result = CliRunner().invoke(main, ["check", "--config", str(cfg)])
    assert result.exit_code == 1
    assert "checking refused (1 of 1): connecting and reading one record per stream" in result.output


def test_a_sync_that_gives_up_names_the_cause_too(tmp_path: Path) -> None:
    from itam_sync.sdk.errors import HttpError
    from itam_sync.sdk.http import HttpClient

    client = HttpClient(f"http://127.0.0.1:{closed_port()}", max_attempts=2, sleep=lambda s: None)
    with pytest.raises(HttpError) as err:
        client.get_json("/api/v1/users")
    assert "after 2 attempts (last: 127.0.0.1:" in str(err.value) and "refused the connection" in str(err.value)


def test_run_prints_a_failed_connector_once(tmp_path: Path) -> None:
    cfg = tmp_path / "itam-sync.yaml"
    (tmp_path / "inventory.csv").write_text("serial,host\nABC123,lt-1\n")
    cfg.write_text(f"mappings_dir: {ROOT / 'mappings'}\nconnectors:\n"
                   f"  - name: inv\n    type: csv\n    role: mdm\n    mapping: {ROOT / 'mappings/demo/edr.yaml'}\n"
                   "    settings: {path: missing.csv, stream: hosts}\n")
    result = itam("run", "--config", str(cfg), "-q")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "failed" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: sync of 'inv' failed (run 1): ")
    assert f"file not found: {tmp_path / 'missing.csv'}" in errors[0]  # relative to the config's folder
    # JSON logs keep the runner's own line for machines.
    result = itam("--log-format", "json", "run", "--config", str(cfg), "-q")
    assert any(json.loads(line).get("msg", "").startswith("run 2 of inv failed") for line in
               result.stderr.splitlines() if line.startswith("{"))


# -- item 15 --------------------------------------------------------------------------------------------

def test_piped_output_keeps_whole_lines(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    result = itam("conflicts", "--config", str(demo.config))
    assert result.returncode == 0
    reason = json.loads(demo.cli("conflicts", "--json").output)[0]["reason"]
    assert len(reason) > 80
    assert any(reason in line for line in result.stdout.splitlines()), result.stdout
    # The merge-log table: each row on one line, however wide (at 80 columns its cells were folded).
    result = itam("log", "--config", str(demo.config), "--entity", "C02FK1ABQ6L4", "--limit", "500")
    row = next(line for line in result.stdout.splitlines() if " assigned_to " in line and "freshness:90d" in line)
    assert "bob.li@example.com" in row and len(row) > 80
    result = itam("validate", "--config", str(demo.config))
    assert result.stdout.strip() == f"ok {demo.config}: 5 connectors, store sqlite:///{demo.db}"


@pytest.mark.parametrize("command", ["runs", "conflicts", "log", "summary", "quarantine", "status", "overrides",
                                     "merge"])
def test_every_table_has_format_json_and_csv(demo, command: str) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    as_json = demo.cli(command, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    parsed = json.loads(as_json.output)
    alias = json.loads(demo.cli(command, "--json").output)  # --json is an alias
    if command == "status":  # next run times move with the clock between the two calls
        assert [c["connector"] for c in alias["connectors"]] == [c["connector"] for c in parsed["connectors"]]
    elif command != "merge":
        assert parsed == alias
    as_csv = demo.cli(command, "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.reader(io.StringIO(as_csv.output)))
    assert rows and all(len(r) == len(rows[0]) for r in rows)


def test_run_has_format_json_and_csv_too(demo) -> None:  # type: ignore[no-untyped-def]
    result = demo.cli("run", "--full", "--format", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [(r["connector"], r["status"], r["mode"]) for r in out["runs"]] == [
        (n, "success", "full") for n in ("hr", "okta-users", "procurement", "mdm", "edr")]
    assert out["runs"][0]["seen"] > 0 and out["merge"]["entities"] > 0
    rows = list(csv.DictReader(io.StringIO(demo.cli("run", "--format", "csv").output)))
    assert [r["connector"] for r in rows] == ["hr", "okta-users", "procurement", "mdm", "edr"]
    assert {r["mode"] for r in rows} == {"incremental"}


def test_every_json_flag_has_a_help_text() -> None:
    def walk(cmd: click.Command, path: str) -> list[str]:
        missing = [f"{path} {'/'.join(p.opts)}" for p in cmd.params
                   if isinstance(p, click.Option) and "--json" in p.opts and not p.help]
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                missing += walk(sub, f"{path} {name}")
        return missing

    assert walk(main, "itam-sync") == []


# -- item 16 --------------------------------------------------------------------------------------------

def test_people_csv_has_one_status_column(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    header = next(csv.reader(io.StringIO(demo.cli("export", "--entity", "people", "--format", "csv").output)))
    assert header.count("status") == 1 and header[:2] == ["id", "entity_status"]
    rows = list(csv.DictReader(io.StringIO(demo.cli("export", "--entity", "people", "--format", "csv").output)))
    carla = next(r for r in rows if r["email"] == "carla.diaz@example.com")
    assert (carla["entity_status"], carla["status"]) == ("active", "terminated")


def test_source_keys_are_stripped_and_found_as_typed(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    ex = json.loads(demo.cli("explain", "C02FK1ABQ6L4", "--json").output)
    assert "procurement/orders/PO-2023-0142/C02FK1ABQ6L4" in [r["record"] for r in ex["records"]]
    for typed in ("procurement/orders/PO-2023-0142/C02FK1ABQ6L4", "procurement/orders/PO-2023-0142/C02FK1ABQ6L4 "):
        result = demo.cli("unlink", typed, "--reason", "check")
        assert result.exit_code == 0, result.output
        result = demo.cli("link", typed, str(ex["entity_id"]), "--reason", "undo")
        assert result.exit_code == 0, result.output


def test_a_link_that_undoes_an_unlink_leaves_no_empty_entity(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    assets = json.loads(demo.cli("export", "--entity", "assets").output)
    laptop = next(a for a in assets if a["fields"].get("serial_number") == "5CG1234XYZ")
    assert demo.cli("unlink", "edr/hosts/cs-a2", "--reason", "re-imaged spare?").exit_code == 0
    split = json.loads(demo.cli("export", "--entity", "assets").output)
    assert len(split) == len(assets) + 1
    assert demo.cli("link", "edr/hosts/cs-a2", str(laptop["id"]), "--reason", "no: same laptop").exit_code == 0
    after = json.loads(demo.cli("export", "--entity", "assets").output)
    assert sorted(a["id"] for a in after) == sorted(a["id"] for a in assets)
    assert all(a["status"] == "active" for a in after)
    back = next(a for a in after if a["id"] == laptop["id"])
    assert back["fields"] == laptop["fields"] and sorted(back["sources"]) == sorted(laptop["sources"])
    log = json.loads(demo.cli("log", "--entity", str(laptop["id"]), "--json").output)
    assert log[-1]["action"] != "merge" or log[-1]["rule"].startswith("manual link left entity")
    assert any(r["action"] == "merge" and r["rule"].startswith("manual link left entity") for r in log)


def test_plurals_and_articles(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert [plural(n, "row") for n in (0, 1, 2, 1500)] == ["0 rows", "1 row", "2 rows", "1,500 rows"]
    assert plural(1, "entity", "entities") == "1 entity" and plural(3, "entity", "entities") == "3 entities"
    assert [article(n) for n in ("asset", "person", "entity", "subscription")] == [
        "an asset", "a person", "an entity", "a subscription"]
    assert demo.cli("run", "--full", "-q").exit_code == 0
    result = demo.cli("run")
    assert "merged 0 entities: 0 changed, 0 merge-log rows" in result.output
    last = max(r["id"] for r in json.loads(demo.cli("log", "--limit", "5", "--json").output))
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(main, ["events", "--config", str(demo.config), "--since-id", str(last - 1),
                                       "--output", str(out)])
    assert f"1 event appended to {out}" in result.output
    person = json.loads(demo.cli("export", "--entity", "people").output)[0]["id"]
    result = demo.cli("link", "edr/hosts/cs-a2", str(person), "--reason", "wrong")
    assert result.exit_code == 2 and f"entity {person} is not an asset" in result.output


def test_huge_or_unicode_numbers_are_clear_errors_not_crashes(demo) -> None:  # type: ignore[no-untyped-def]
    """A report window of a billion days and an id of Unicode digits end with one clear line (issue 20 item 4)."""
    assert demo.cli("run", "--full", "--quiet").exit_code == 0
    result = demo.cli("report", "stale-devices", "--days", "999999999")
    assert result.exit_code != 0 and "--days out of range: it must be from 0 to 36500" in result.output
    result = demo.cli("explain", "\u0661\u0662")  # Arabic-Indic digits: not an id, so looked up as a key
    assert result.exit_code != 0 and "Traceback" not in result.output
