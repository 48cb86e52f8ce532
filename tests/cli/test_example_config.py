"""config/example.yaml documents every built-in connector and validates as shipped."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from itam_sync.cli.main import main
from itam_sync.engine.registry import Registry

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_validates_and_covers_every_connector_type(tmp_path: Path) -> None:
    # As shipped, the only problems are the placeholder ids an operator must replace (tenant and key ids).
    result = CliRunner().invoke(main, ["validate", "--config", str(ROOT / "config" / "example.yaml")])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and errors, result.output
    assert all("is the placeholder `itam-sync init` wrote (fix: put your real" in e for e in errors), result.output
    # Filled in, it validates (mappings_dir is relative to the repository root, as the example says).
    text = (ROOT / "config" / "example.yaml").read_text().replace("00000000-0000-0000-0000-000000000000",
                                                                 "3f2d6c1e-8b7a-4e5f-9d0c-1a2b3c4d5e6f")
    text = text.replace("mappings_dir: mappings ", f"mappings_dir: {ROOT / 'mappings'} ")
    filled = tmp_path / "example.yaml"
    filled.write_text(text)
    result = CliRunner().invoke(main, ["validate", "--config", str(filled)])
    assert result.exit_code == 0, result.output
    types = {c["type"] for c in yaml.safe_load((ROOT / "config" / "example.yaml").read_text())["connectors"]}
    assert types >= set(Registry().names()) - {"csv", "jsonl"}  # the file types are in the demo


def test_every_connector_has_readme_and_mapping() -> None:
    for name in Registry().names():
        cls = Registry().get(name)
        if name in ("csv", "jsonl"):
            continue
        assert (ROOT / "connectors" / name / "README.md").exists(), name
        assert (ROOT / "mappings" / f"{cls.mapping_name()}.yaml").exists(), name
