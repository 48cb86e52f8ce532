"""A config outside the repository uses the mappings bundled with itam-sync (issue 14: `init` + `validate` in
any folder used to fail with "mapping file mappings/okta.yaml not found")."""

from __future__ import annotations

from pathlib import Path

import pytest

from itam_sync.settings import ConnectorConfig, Settings
from itam_sync.settings.bundled import bundled_mapping, bundled_mappings_dir

REPO_MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


@pytest.fixture()
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A config in a folder of its own, run from that folder: no mappings/ beside it."""
    monkeypatch.chdir(tmp_path)
    settings = Settings(connectors=[ConnectorConfig(name="okta-prod", type="okta", settings={})])
    settings.source_path = str(tmp_path / "itam-sync.yaml")
    return settings


def test_bundled_mappings_are_the_repository_folder_in_a_checkout() -> None:
    assert bundled_mappings_dir() == REPO_MAPPINGS
    assert bundled_mapping("okta") == REPO_MAPPINGS / "okta.yaml"
    assert bundled_mapping("no_such_type") is None


def test_a_config_without_mappings_uses_the_bundled_one(elsewhere: Settings) -> None:
    assert elsewhere.mapping_path(elsewhere.connectors[0], "okta") == REPO_MAPPINGS / "okta.yaml"


def test_the_config_folder_mappings_win_over_the_bundled_ones(elsewhere: Settings, tmp_path: Path) -> None:
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "okta.yaml").write_text("users: {}\n")
    assert elsewhere.mapping_path(elsewhere.connectors[0], "okta").resolve() == tmp_path / "mappings" / "okta.yaml"
    (tmp_path / "mappings" / "okta-prod.yaml").write_text("users: {}\n")  # a per-instance variant wins too
    assert elsewhere.mapping_path(elsewhere.connectors[0], "okta").resolve() == tmp_path / "mappings" / "okta-prod.yaml"


def test_a_type_itam_sync_ships_no_mapping_for_still_points_at_the_config_folder(elsewhere: Settings) -> None:
    conn = ConnectorConfig(name="acme", type="acme_cmdb", settings={})
    assert elsewhere.mapping_path(conn, "acme_cmdb") == Path("mappings") / "acme_cmdb.yaml"
