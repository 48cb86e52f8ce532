"""Fixtures for end-to-end tests: a private copy of the demo (data, mappings, config) on a tmp SQLite file."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from itam_sync.cli import main
from itam_sync.settings import Settings, load_settings
from itam_sync.store import Store

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Demo:
    """A demo copy: its config file, data dir and a CLI runner bound to the config."""

    config: Path
    data: Path
    db: Path

    def cli(self, *args: str) -> Result:
        result = CliRunner().invoke(main, [args[0], "--config", str(self.config), *args[1:]],
                                    catch_exceptions=False)
        return result

    def settings(self) -> Settings:
        return load_settings(self.config).settings

    def store(self) -> Store:
        return Store.open(f"sqlite:///{self.db}")


@pytest.fixture
def demo(tmp_path: Path) -> Demo:
    data = tmp_path / "data"
    shutil.copytree(ROOT / "config" / "demo", data)
    maps = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings" / "demo", maps)
    db = tmp_path / "itam.db"
    text = (ROOT / "config" / "demo.yaml").read_text()
    text = text.replace("sqlite:///demo.db", f"sqlite:///{db}")
    text = text.replace("config/demo/", f"{data}/").replace("mappings/demo/", f"{maps}/")
    config = tmp_path / "itam-sync.yaml"
    config.write_text(text)
    return Demo(config, data, db)
