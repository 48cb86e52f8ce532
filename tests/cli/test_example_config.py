"""config/example.yaml documents every built-in connector and validates as shipped."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from itam_sync.cli.main import main
from itam_sync.engine.registry import Registry

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_validates_and_covers_every_connector_type() -> None:
    result = CliRunner().invoke(main, ["validate", "--config", str(ROOT / "config" / "example.yaml")])
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
