"""On a core install (no extras) every command still starts; what needs an extra says which, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from missing_modules import hide_modules

from itam_sync.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def test_connectors_lists_a_type_whose_extra_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "azure", reload=("itam_sync.connectors.azure", "itam_sync.sdk.cloud"))
    result = CliRunner().invoke(main, ["connectors"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split(None, 1)[1] for line in result.output.splitlines()}
    assert lines["azure"] == "needs `pip install itam-sync[azure]`"
    assert "needs" not in lines["okta"] and "needs" not in lines["aws"]


def test_validate_names_the_extra_of_each_unusable_connector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "boto3", "botocore",
                 reload=("itam_sync.connectors.aws", "itam_sync.connectors.certificates", "itam_sync.sdk.cloud"))
    config = tmp_path / "itam-sync.yaml"
    config.write_text(f"""store:
  url: sqlite:///{tmp_path / 'x.db'}
connectors:
  - name: cloud
    type: aws
    settings: {{}}
  - name: certs
    type: certificates
    settings:
      acm_regions: [eu-north-1]
  - name: tls
    type: certificates
    settings:
      endpoints: [www.example.com]
""")
    result = CliRunner().invoke(main, ["validate", "-c", str(config)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {config}:5: connectors.0.type: connector type 'aws' needs `pip install itam-sync[aws]`",
        f"error: {config}:9: connectors.1.settings: acm_regions needs `pip install itam-sync[aws]` (endpoints work "
        "without it) (fix: see `itam-sync init` for the certificates settings)",
    ]
    assert "Traceback" not in result.output


def test_web_without_the_web_extra_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "uvicorn", "fastapi", "starlette", reload=("itam_sync.web",))
    result = CliRunner().invoke(main, prog_name="itam-sync", args=["web", "-c", str(ROOT / "config" / "demo.yaml")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: `itam-sync web` needs `pip install itam-sync[web]` (module uvicorn is not installed)"]


def test_serve_without_the_service_packages_names_the_serve_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "uvicorn", "fastapi", "starlette", "prometheus_client",
                 reload=("itam_sync.web", "itam_sync.service.server", "itam_sync.service.metrics"))
    result = CliRunner().invoke(main, prog_name="itam-sync", args=["serve", "-c", str(ROOT / "config" / "demo.yaml")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith(
        "error: `itam-sync serve` needs `pip install itam-sync[serve]` (module ")
