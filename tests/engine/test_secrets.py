"""Secrets are references resolved at run time: never in the database, the merge log or the logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import SyncFailed, run_connector
from itam_sync.sdk.connector import Connector, ConnectorSettings, Stream, StreamState
from itam_sync.settings import ConfigError, ConnectorConfig, Settings, StoreConfig, resolve_secrets

SECRET = "s3cr3t-T0KEN-value-9f8e7d"
MAPPING = """streams:
  things:
    entity: asset
    key: id
    fields:
      serial_number: {from: serial, transforms: [serial]}
"""


class TokenSettings(ConnectorSettings):
    token: str
    fail: bool = False


class ThingsStream(Stream):
    name = "things"

    def records(self, state: StreamState) -> Iterator[dict[str, Any]]:
        settings: TokenSettings = self.connector.settings  # type: ignore[assignment]
        assert settings.token == SECRET  # the connector does get the real value
        if settings.fail:
            raise RuntimeError("source exploded")
        yield {"id": "1", "serial": "ABC123"}


class TokenConnector(Connector):
    type_name = "token_test"
    settings_model = TokenSettings

    def streams(self) -> list[Stream]:
        return [ThingsStream(self)]


def _settings(tmp_path: Path, token_ref: str, fail: bool = False) -> Settings:
    (tmp_path / "m.yaml").write_text(MAPPING)
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 's.db'}"), connectors=[ConnectorConfig(
        name="things", type="token_test", mapping=str(tmp_path / "m.yaml"),
        settings={"token": token_ref, "fail": fail})])


def test_env_and_file_references_resolve_and_never_reach_storage_or_logs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ITAM_TEST_TOKEN", SECRET)
    reg = Registry(extra={"token_test": TokenConnector})
    caplog.set_level(logging.DEBUG)
    assert run_connector(_settings(tmp_path, "${env:ITAM_TEST_TOKEN}"), "things", full=True,
                         registry=reg).status == "success"
    with pytest.raises(SyncFailed):
        run_connector(_settings(tmp_path, "${env:ITAM_TEST_TOKEN}", fail=True), "things", full=True, registry=reg)
    secret_file = tmp_path / "token.txt"
    secret_file.write_text(SECRET + "\n")
    assert run_connector(_settings(tmp_path, f"${{file:{secret_file}}}"), "things", registry=reg).status == "success"
    for f in tmp_path.glob("s.db*"):
        assert SECRET.encode() not in f.read_bytes(), f"secret found in {f.name}"
    assert SECRET not in caplog.text


def test_missing_env_reference_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ITAM_NOPE", raising=False)
    with pytest.raises(ConfigError, match=r"environment variable ITAM_NOPE is not set \(fix: export ITAM_NOPE"):
        resolve_secrets({"token": "${env:ITAM_NOPE}"}, "connector 'x' settings")
