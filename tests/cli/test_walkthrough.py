"""Issue 15: the operator's walk-through, with the venv's `itam-sync` in a folder outside the repository.

Guided init for six connectors, validate (which names the placeholder to replace), the operator's edits (the
vendor URLs and secrets of `itam-sync sandbox`, a procurement folder next to the config), a full run against
the sandbox, the same store found from another folder, an override an auditor can follow (listed, explained,
removed) and the reports.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONNECTORS = "okta,intune,jamf,crowdstrike,bamboohr,procurement"
SANDBOX_SETTINGS = {  # what the operator types in place of the starter's example values (config/sandbox.yaml)
    "okta": {"org_url": "${env:ITAM_SANDBOX_URL}/okta", "api_token": "${env:ITAM_SANDBOX_SECRET}"},
    "intune": {"tenant_id": "sandbox-tenant", "client_id": "22222222-2222-2222-2222-222222222222",
               "client_secret": "${env:ITAM_SANDBOX_SECRET}", "authority_host": "${env:ITAM_SANDBOX_TLS_URL}/login",
               "graph_url": "${env:ITAM_SANDBOX_URL}/graph"},
    "jamf": {"base_url": "${env:ITAM_SANDBOX_URL}/jamf", "client_id": "sandbox-jamf-client",
             "client_secret": "${env:ITAM_SANDBOX_SECRET}"},
    "crowdstrike": {"base_url": "${env:ITAM_SANDBOX_URL}/crowdstrike", "client_id": "sandbox-falcon-client",
                    "client_secret": "${env:ITAM_SANDBOX_SECRET}"},
    "bamboohr": {"company_domain": "sandbox", "api_key": "${env:ITAM_SANDBOX_SECRET}",
                 "base_url": "${env:ITAM_SANDBOX_URL}/bamboohr/api/gateway.php/sandbox"},
    "procurement": {"folder": "purchases"},  # relative: next to the config file
}


def itam_sync_command() -> list[str]:
    script = Path(sys.executable).with_name("itam-sync")
    return [str(script)] if script.exists() else [sys.executable, "-m", "itam_sync"]


@pytest.fixture
def run_cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ITAM_SYNC_DATABASE", "ITAM_SANDBOX"))}
    env.pop("ITAM_SYNC_CONFIG", None)

    def run(*args: str, cwd: Path | None = None, sandbox: bool = False, ok: tuple[int, ...] = (0,)
            ) -> subprocess.CompletedProcess[str]:
        cmd = itam_sync_command() + list(args)
        if sandbox:
            cmd = itam_sync_command() + ["sandbox", "--devices", "40", "--seed", "7", "--port-base", "0", "--",
                                         *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or tmp_path, env=env, timeout=300)
        assert result.returncode in ok, (args, result.returncode, result.stdout[-3000:], result.stderr[-3000:])
        return result

    return run


def test_operator_walkthrough(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    assert not tmp_path.resolve().is_relative_to(ROOT)
    # 1. Guided init.
    run_cli("init", "--connectors", CONNECTORS, "--output", "itam-sync.yaml")
    config = tmp_path / "itam-sync.yaml"
    text = config.read_text()
    assert "PydanticUndefined" not in text and "# role: mdm" in text and "# sinks:" in text

    # 2. validate names the placeholder the operator has to replace.
    result = run_cli("validate", "-c", "itam-sync.yaml", ok=(2,))
    assert "connectors.0.settings.tenant_id: '00000000-0000-0000-0000-000000000000' is the placeholder" \
           in result.stderr

    # 3. The operator fills in the sources (here: the sandbox's) and a procurement folder next to the config.
    cfg = yaml.safe_load(text)
    for conn in cfg["connectors"]:
        conn["settings"] = SANDBOX_SETTINGS[conn["type"]]
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (tmp_path / "purchases").mkdir()
    result = run_cli("validate", "-c", "itam-sync.yaml")
    assert result.stdout.strip() == f"ok itam-sync.yaml: 6 connectors, store sqlite:///{tmp_path / 'itam.db'}"
    assert result.stderr.count("warning:") == 1 and "$ITAM_SANDBOX_SECRET" in result.stderr  # one line, once

    # 4. A full run against the sandbox, then procurement's invoice for one laptop, then a run again.
    run_cli("run", "-c", "itam-sync.yaml", "--full", "-q", sandbox=True)
    assert (tmp_path / "itam.db").exists()
    assets = json.loads(run_cli("export", "-c", "itam-sync.yaml", "--entity", "assets").stdout)
    laptop = next(a for a in assets if a["fields"].get("kind") == "laptop" and a["fields"].get("serial_number")
                  and a["fields"].get("assigned_to"))
    serial = laptop["fields"]["serial_number"]
    with (tmp_path / "purchases" / "2026-q3.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["PO Number", "Serial", "Vendor", "Cost", "Currency", "Purchase Date"],
                                  ["PO-7001", serial, "CDW", "1,899.00", "USD", "2024-05-02"]])
    run_cli("run", "-c", "itam-sync.yaml", "-q", sandbox=True)

    # 5. From another folder, the same store (relative paths start at the config file).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    summary = run_cli("summary", "-c", str(config), cwd=elsewhere)
    assert "assets" in summary.stdout and list(elsewhere.iterdir()) == []
    ex = json.loads(run_cli("explain", "-c", str(config), serial, "--json", cwd=elsewhere).stdout)
    fields = {f["field"]: f for f in ex["fields"]}
    assert (fields["purchase_cost"]["value"], fields["purchase_cost"]["source"]) == (1899.0, "procurement")
    assert fields["assigned_to"]["source"] in ("intune", "jamf", "okta")

    # 6. An override an auditor can follow.
    run_cli("override", "-c", "itam-sync.yaml", serial, "purchase_cost", "abc", "--reason", "typo", ok=(2,))
    run_cli("override", "-c", "itam-sync.yaml", serial, "lifecycle_state", "in_repair", "--reason",
            "screen replacement, ticket INC-88", "--expires", "30d")
    listed = json.loads(run_cli("overrides", "-c", "itam-sync.yaml", "--format", "json").stdout)
    assert [(o["entity_label"], o["field"], o["value"], o["reason"]) for o in listed] == [
        (serial, "lifecycle_state", "in_repair", "screen replacement, ticket INC-88")]
    ex = json.loads(run_cli("explain", "-c", "itam-sync.yaml", serial, "--json").stdout)
    state = next(f for f in ex["fields"] if f["field"] == "lifecycle_state")
    assert state["override"]["reason"] == "screen replacement, ticket INC-88"
    log = json.loads(run_cli("log", "-c", "itam-sync.yaml", "--entity", serial, "--since", "1h", "--json").stdout)
    assert any(r["action"] == "override" and "INC-88" in r["rule"] for r in log)
    run_cli("override", "-c", "itam-sync.yaml", serial, "lifecycle_state", "--remove", "--reason", "repaired")
    assert json.loads(run_cli("overrides", "-c", "itam-sync.yaml", "--json").stdout) == []
    assert run_cli("audit", "verify", "-c", "itam-sync.yaml").stdout.startswith("ok: merge log: chain intact")

    # 7. Reports.
    names = run_cli("report", "--list").stdout
    assert "kpis" in names
    kpis = run_cli("report", "kpis", "-c", "itam-sync.yaml", "--format", "json")
    assert json.loads(kpis.stdout)
    shutil.rmtree(tmp_path / "purchases")
