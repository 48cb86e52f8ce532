"""Issue 15, items 2-4 and 14: a config is refused when it is loaded for what would fail later (bad cron fields,
shell-style or literal secrets, an unknown store scheme, a non-canonical identity key), secret warnings are
one line for enabled connectors only, relative paths start from the config file's folder, read-only commands
never create a store, and operator times go through one parser."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from itam_sync.cli.main import main
from itam_sync.settings import ConfigError, load_settings
from itam_sync.settings.times import BadTime, parse_when_iso

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def okta_config(tmp_path: Path, *, schedule: str = "every 1h", token: str = "${env:ITAM_T_OKTA_TOKEN}",
                extra: str = "", store: str = "sqlite:///itam.db") -> Path:
    return write(tmp_path / "itam-sync.yaml",
                 f"store:\n  url: {store}\nmappings_dir: {MAPPINGS}\n{extra}"
                 "connectors:\n"
                 f"  - name: okta\n    type: okta\n    schedule: \"{schedule}\"\n"
                 f"    settings:\n      org_url: https://acme.okta.com\n      api_token: \"{token}\"\n")


# -- item 3: validate refuses what run, serve and status would trip over ---------------------------------

def test_a_cron_field_out_of_range_is_refused_by_validate_run_and_status(tmp_path: Path) -> None:
    cfg = okta_config(tmp_path, schedule="0 25 * * *")
    for command in ("validate", "run", "status"):
        result = cli(command, "--config", str(cfg))
        assert result.exit_code == 2, (command, result.output)
        assert (f"{cfg}:7: connectors.0.schedule: schedule '0 25 * * *': the hour field '25' is not valid (the "
                "last value (25) is higher than the maximum value (23)") in result.output, command
    assert not (tmp_path / "itam.db").exists()


def test_a_shell_style_reference_is_an_error_with_the_fix(tmp_path: Path) -> None:
    cfg = okta_config(tmp_path, token="${OKTA_API_TOKEN}")
    result = cli("validate", "--config", str(cfg))
    assert result.exit_code == 2
    assert (f"{cfg}:10: connectors.0.settings.api_token: ${{OKTA_API_TOKEN}} is a shell-style reference, which "
            "itam-sync does not expand (it would be sent as is) (fix: write ${env:OKTA_API_TOKEN}") in result.output


def test_a_literal_secret_is_an_error_that_never_repeats_the_secret(tmp_path: Path) -> None:
    cfg = okta_config(tmp_path, token="00aB-literal-token-value")
    result = cli("validate", "--config", str(cfg))
    assert result.exit_code == 2
    assert (f"{cfg}:10: connectors.0.settings.api_token: api_token holds a literal secret; config files end up in "
            "version control and backups, so secrets must be references (fix: export OKTA_API_TOKEN=... and write "
            "${env:OKTA_API_TOKEN}, or ${file:/run/secrets/okta_api_token})") in result.output
    assert "literal-token-value" not in result.output
    # Not a secret by its name: a URL or an id may be literal.
    assert cli("validate", "--config", str(okta_config(tmp_path))).exit_code == 0


def test_an_unknown_store_scheme_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    cfg = okta_config(tmp_path, store="sqlit:///itam.db")
    for command in ("validate", "summary"):
        result = cli(command, "--config", str(cfg))
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [
            f"error: {cfg}:2: store.url: unknown store URL scheme 'sqlit'; itam-sync stores data in sqlite, "
            "postgresql, postgresql+psycopg (fix: did you mean 'sqlite'? use sqlite:///itam.db (a file next to the "
            "config) or postgresql://user@host/db)"]
    result = cli("validate", "--config", str(okta_config(tmp_path, store="sqlite://itam.db")))
    assert result.exit_code == 2 and "needs three slashes before a relative path" in result.output


def test_an_identity_key_must_be_a_canonical_field(tmp_path: Path) -> None:
    cfg = okta_config(tmp_path, extra="identity:\n  asset_keys: [serial, mac_addresses]\n")
    result = cli("validate", "--config", str(cfg))
    assert result.exit_code == 2
    assert (f"{cfg}:5: identity.asset_keys.0: 'serial' is not a canonical asset field, so it can never match "
            "(fix: did you mean 'serial_number'?)") in result.output


def test_placeholder_ids_are_refused_in_enabled_connectors_only(tmp_path: Path) -> None:
    block = ("  - name: intune\n    type: intune\n    enabled: {enabled}\n    settings:\n"
             "      tenant_id: 00000000-0000-0000-0000-000000000000\n      client_id: app\n"
             "      client_secret: ${{env:ITAM_T_SECRET}}\n")
    cfg = write(tmp_path / "c.yaml", f"mappings_dir: {MAPPINGS}\nconnectors:\n" + block.format(enabled="true"))
    result = cli("validate", "--config", str(cfg))
    assert result.exit_code == 2
    assert (f"{cfg}:7: connectors.0.settings.tenant_id: '00000000-0000-0000-0000-000000000000' is the placeholder "
            "`itam-sync init` wrote (fix: put your real tenant_id here") in result.output
    cfg.write_text(f"mappings_dir: {MAPPINGS}\nconnectors:\n" + block.format(enabled="false"))
    assert cli("validate", "--config", str(cfg)).exit_code == 0


# -- item 4: secret warnings once, enabled connectors only, only where secrets are used -------------------

def test_unset_secrets_warn_once_for_enabled_connectors_and_not_in_read_only_commands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ITAM_T_OKTA_TOKEN", "ITAM_T_JAMF_ID", "ITAM_T_JAMF_SECRET"):
        monkeypatch.delenv(var, raising=False)
    cfg = okta_config(tmp_path)
    cfg.write_text(cfg.read_text() + "  - name: jamf\n    type: jamf\n    enabled: false\n    settings:\n"
                   "      base_url: https://acme.jamfcloud.com\n      client_id: ${env:ITAM_T_JAMF_ID}\n"
                   "      client_secret: ${env:ITAM_T_JAMF_SECRET}\n")
    result = cli("validate", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {cfg}: secret is not available here, needed when the connectors run: "
                        "$ITAM_T_OKTA_TOKEN (okta line 10) (fix: export the variables / create the files before "
                        "`itam-sync run`)"]
    assert "JAMF" not in result.output
    assert cli("run", "--config", str(cfg), "-q").output.count("warning:") == 1
    summary = cli("summary", "--config", str(cfg))  # read-only: no secret is used, none is mentioned
    assert summary.exit_code == 0 and "warning" not in summary.output


# -- item 2: relative paths start from the config file's folder; read-only commands create nothing --------

def test_store_and_data_files_resolve_from_the_config_folder_wherever_the_command_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "config" / "demo", project / "config" / "demo")
    shutil.copytree(ROOT / "mappings" / "demo", project / "mappings" / "demo")
    shutil.copy(ROOT / "config" / "demo.yaml", project / "config" / "demo.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = project / "config" / "demo.yaml"
    assert load_settings(cfg).settings.store.url == f"sqlite:///{project / 'demo.db'}"
    result = cli("run", "--config", str(cfg), "--full", "-q")
    assert result.exit_code == 0, result.output
    assert (project / "demo.db").exists() and list(elsewhere.iterdir()) == []
    assert "hr_people.csv" not in result.output


def test_an_existing_store_next_to_the_working_directory_is_still_found(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = okta_config(tmp_path / "etc")
    monkeypatch.chdir(tmp_path)
    assert load_settings(cfg).settings.store.url == f"sqlite:///{tmp_path / 'etc' / 'itam.db'}"
    (tmp_path / "itam.db").write_bytes(b"")  # a store an older version created from the working directory
    assert load_settings(cfg).settings.store.url == f"sqlite:///{tmp_path / 'itam.db'}"


@pytest.mark.parametrize("args", [("summary",), ("export", "--entity", "assets"), ("explain", "C02FK1ABQ6L4"),
                                  ("log",), ("runs",), ("conflicts",), ("overrides",), ("quarantine",), ("web",),
                                  ("audit", "verify")])
def test_read_only_commands_never_create_a_store_or_its_folder(tmp_path: Path, args: tuple[str, ...]) -> None:
    cfg = okta_config(tmp_path, store="sqlite:///data/stores/itam.db")
    command, rest = args[0], list(args[1:])
    full = [command, *rest[:1], "--config", str(cfg), *rest[1:]] if command == "audit" else \
        [command, "--config", str(cfg), *rest]
    result = cli(*full)
    assert result.exit_code == 2, result.output
    assert (f"error: no store at {tmp_path / 'data' / 'stores' / 'itam.db'} (store.url in {cfg}): nothing has been "
            "synced there yet") in result.output
    assert not (tmp_path / "data").exists()


def test_status_before_the_first_run_says_never_ran_and_creates_nothing(tmp_path: Path) -> None:
    cfg = okta_config(tmp_path)
    result = cli("status", "--config", str(cfg), "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("connector,type,enabled,schedule")
    assert not (tmp_path / "itam.db").exists()


# -- item 14: times are parsed, not compared as strings ---------------------------------------------------

NOW = datetime(2026, 6, 15, 10, 30, 0, tzinfo=UTC)


@pytest.mark.parametrize("text,end,expected", [
    ("2026-11-01", False, "2026-11-01T00:00:00Z"),
    ("2026-11-01", True, "2026-11-01T23:59:59Z"),
    ("2026-11-01T12:00", False, "2026-11-01T12:00:00Z"),
    ("2026-11-01 12:00:00+02:00", False, "2026-11-01T10:00:00Z"),
    ("2026-11-01T12:00:00.250Z", False, "2026-11-01T12:00:00Z"),
    ("yesterday", False, "2026-06-14T00:00:00Z"),
    ("yesterday", True, "2026-06-14T23:59:59Z"),
    ("today", False, "2026-06-15T00:00:00Z"),
    ("now", False, "2026-06-15T10:30:00Z"),
    ("2d", False, "2026-06-13T10:30:00Z"),
    ("2d ago", False, "2026-06-13T10:30:00Z"),
    ("-12h", False, "2026-06-14T22:30:00Z"),
    ("+1w", False, "2026-06-22T10:30:00Z"),
    ("in 30m", False, "2026-06-15T11:00:00Z"),
])
def test_the_one_time_parser(text: str, end: bool, expected: str) -> None:
    assert parse_when_iso(text, end_of_day=end, now=NOW) == expected


@pytest.mark.parametrize("text", ["12/05/2026", "2026-02-30", "June", "2026-11", "+2d ago", ""])
def test_the_time_parser_refuses_the_rest_naming_the_accepted_forms(text: str) -> None:
    with pytest.raises(BadTime, match=r"accepted: YYYY-MM-DD, YYYY-MM-DDTHH:MM\[:SS\]\[Z\|\+HH:MM\], now, today"):
        parse_when_iso(text, now=NOW)


def test_a_bare_span_is_ahead_for_an_expiry() -> None:
    assert parse_when_iso("30d", now=NOW, ahead=True) == "2026-07-15T10:30:00Z"
    assert parse_when_iso("30d ago", now=NOW, ahead=True) == "2026-05-16T10:30:00Z"


def test_log_since_takes_relative_times_and_refuses_others(demo) -> None:  # type: ignore[no-untyped-def]
    import json

    assert demo.cli("run", "--full", "-q").exit_code == 0
    everything = json.loads(demo.cli("log", "--limit", "100000", "--json").output)
    for since in ("yesterday", "2d", "today"):
        rows = json.loads(demo.cli("log", "--since", since, "--limit", "100000", "--json").output)
        assert len(rows) == len(everything) > 0, since
    assert json.loads(demo.cli("log", "--since", "in 1d", "--json").output) == []
    result = demo.cli("log", "--since", "12/05/2026")
    assert result.exit_code == 2
    assert "error: --since '12/05/2026' is not a date or time itam-sync reads; accepted: YYYY-MM-DD" in result.output


def test_events_type_must_be_a_known_event_type(demo) -> None:  # type: ignore[no-untyped-def]
    demo.cli("run", "--full", "-q")
    result = demo.cli("events", "--type", "bogus")
    assert result.exit_code == 2
    assert "Invalid value for '--type': 'bogus' is not one of 'field_changed', 'entity_linked'" in result.output
    assert demo.cli("events", "--type", "override_set").exit_code == 0


def test_config_error_lists_every_problem_at_once(tmp_path: Path) -> None:
    cfg = okta_config(tmp_path, schedule="61 * * * *", token="${OKTA_API_TOKEN}", store="mysql:///x")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    text = "\n".join(err.value.problems)
    assert "minute field '61'" in text and "${OKTA_API_TOKEN} is a shell-style reference" not in text  # pydantic first
    cfg = okta_config(tmp_path, token="${OKTA_API_TOKEN}", store="mysql:///x")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert len(err.value.problems) == 2
