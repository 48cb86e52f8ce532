"""Small helpers shared by the engine tests."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from itam_sync.cli.main import main
from itam_sync.settings import Settings, load_settings
from itam_sync.store import Store
from itam_sync.store.repos import Repos

ROOT = Path(__file__).resolve().parents[1]
# The instant the demo files were written at (config/demo.yaml `dates_relative_to`): the demo tests run with
# itam-sync's clock moved to it, so the files' dates are read unshifted and every age is what the story says.
DEMO_ANCHOR = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def clock_shift_to(instant: datetime) -> str:
    """An ITAM_SYNC_CLOCK_SHIFT value that moves the system clock to `instant` (time keeps running from there)."""
    seconds = round((instant - datetime.now(UTC)).total_seconds())
    return f"{'+' if seconds >= 0 else '-'}{abs(seconds)}s"


def golden_by_key(repo: Repos, entity_type: str, key: str) -> dict[str, Any]:
    """The golden record owning match key `key`, with its id under "_id"."""
    eid = repo.entities.entity_by_key(entity_type, key)
    assert eid is not None, f"no {entity_type} owns {key}"
    golden = repo.entities.goldens([eid])[eid][1]
    return {"_id": eid, **golden}


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


def make_demo(tmp_path: Path) -> Demo:
    """A private copy of the demo (data, mappings, config) on a tmp SQLite file."""
    data = tmp_path / "data"
    shutil.copytree(ROOT / "config" / "demo", data)
    maps = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings" / "demo", maps)
    db = tmp_path / "itam.db"
    text = (ROOT / "config" / "demo.yaml").read_text()
    text = text.replace("sqlite:///../demo.db", f"sqlite:///{db}")
    text = text.replace("path: demo/", f"path: {data}/").replace("mappings/demo/", f"{maps}/")
    config = tmp_path / "itam-sync.yaml"
    config.write_text(text)
    return Demo(config, data, db)
