"""Issue 15, item 1: `itam-sync init --connectors ...` writes a config for exactly that set: precedence filled in by
role, role comments, schedules with a nightly full resync, commented sink and reminder examples; every settings
comment says "required" or shows a default (never PydanticUndefined), and each file type's help shows its own
kind of file."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from click.testing import CliRunner

from itam_sync.cli.main import main
from itam_sync.settings import load_settings
from itam_sync.settings.schedules import check_schedule_text

SET = "okta,intune,jamf,crowdstrike,bamboohr,procurement"


def init(*args: str) -> str:
    result = CliRunner().invoke(main, ["init", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_guided_init_writes_only_those_connectors_with_precedence_by_role(tmp_path: Path) -> None:
    out = tmp_path / "itam-sync.yaml"
    init("--connectors", SET, "--output", str(out))
    text = out.read_text()
    cfg = yaml.safe_load(text)
    assert [c["type"] for c in cfg["connectors"]] == ["intune", "jamf", "crowdstrike", "okta", "bamboohr",
                                                      "procurement"]
    assert all(c.get("enabled", True) for c in cfg["connectors"])
    for c in cfg["connectors"]:
        check_schedule_text(c["schedule"])
        assert c["full_schedule"].startswith("0 ") and check_schedule_text(c["full_schedule"])
    prec = cfg["precedence"]
    assert prec["default"] == ["intune", "jamf", "crowdstrike", "okta", "bamboohr", "procurement"]
    assert prec["person"]["default"] == ["bamboohr", "okta"]  # HR first for people
    fields = prec["asset"]["fields"]
    assert fields["assigned_to"] == {"order": ["intune", "jamf", "okta", "procurement"], "freshness": "30d"}
    for f in ("purchase_cost", "purchase_date", "order_number", "vendor", "warranty_start", "warranty_end"):
        assert fields[f] == {"order": ["procurement"]}, f
    assert fields["last_seen"] == {"strategy": "latest"}
    # Role comments above each block, in the order the blocks come.
    roles = re.findall(r"^  # role: (\w+) \(", text, re.M)
    assert roles == ["mdm", "mdm", "edr", "idp", "hr", "procurement"]
    # Commented examples of a sink and reminders that validate once uncommented.
    examples = text[text.index("# sinks:"):]
    assert "# reminders:" in examples and "warranty_ending" in examples
    uncommented = "\n".join(line.removeprefix("# ") for line in examples.splitlines()
                            if line.startswith("#  ") or line.startswith("# sinks:") or line.startswith("# reminders:"))
    extra = yaml.safe_load(uncommented)
    assert [s["type"] for s in extra["sinks"]] == ["servicenow", "webhook"]
    assert [r["type"] for r in extra["reminders"]["rules"]] == ["warranty_ending", "terminated_not_recovered",
                                                               "device_unseen"]
    cfg.update(extra)
    filled = yaml.safe_dump(cfg).replace("00000000-0000-0000-0000-000000000000", "contoso.onmicrosoft.com")
    (tmp_path / "with-examples.yaml").write_text(filled)
    assert load_settings(tmp_path / "with-examples.yaml").settings.sinks[0].name == "cmdb"


def test_guided_init_validates_once_the_placeholders_are_replaced(tmp_path: Path) -> None:
    out = tmp_path / "itam-sync.yaml"
    init("--connectors", SET, "--output", str(out))
    result = CliRunner().invoke(main, ["validate", "--config", str(out)])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "connectors.0.settings.tenant_id: '00000000-0000-0000-0000-000000000000' is the " \
                                "placeholder `itam-sync init` wrote" in errors[0]
    out.write_text(out.read_text().replace("00000000-0000-0000-0000-000000000000", "contoso.onmicrosoft.com")
                   .replace("/srv/itam/procurement", str(tmp_path / "purchases")))
    (tmp_path / "purchases").mkdir()
    result = CliRunner().invoke(main, ["validate", "--config", str(out)])
    assert result.exit_code == 0, result.output
    assert f"ok {out}: 6 connectors, store sqlite:///{tmp_path / 'itam.db'}" in result.output


def test_settings_comments_say_required_or_show_a_default_never_pydantic_undefined() -> None:
    everything = init()
    guided = init("--connectors", SET)
    for text in (everything, guided):
        assert "PydanticUndefined" not in text
        assert "default None" not in text  # optional settings say so
    assert "#   settings.scopes: default ['okta.users.read', 'okta.devices.read', 'okta.apps.read']" in everything
    assert "#   settings.org_url: required, e.g. https://example.okta.com" in guided
    jsonl = everything[everything.index("# JSON Lines files"):everything.index("  - name: jsonl-main")]
    assert ".jsonl" in jsonl and ".csv" not in jsonl
    csv_help = everything[everything.index("# CSV files"):everything.index("  - name: csv-main")]
    assert ".csv" in csv_help and ".jsonl" not in csv_help


def test_guided_init_refuses_unknown_or_repeated_types() -> None:
    result = CliRunner().invoke(main, ["init", "--connectors", "okta,intnue"])
    assert result.exit_code == 2 and "no connector type 'intnue' (fix: did you mean 'intune'?)" in result.output
    result = CliRunner().invoke(main, ["init", "--connectors", "okta,okta"])
    assert result.exit_code == 2 and "name each type once" in result.output
