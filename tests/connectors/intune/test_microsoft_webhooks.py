"""Which Microsoft connectors `serve` offers vendor webhooks for.

Graph change notifications cover Entra users and groups, not Intune managed devices; Defender machines are
not a Graph resource at all (Graph's subscription resource list names security alerts only). So no webhook
is offered for `intune` or `defender`: they are triggered by their schedule (every run reads everything).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from itam_sync.service.webhooks import KIND_BY_TYPE, build_hooks
from itam_sync.settings import ConfigError, ConnectorConfig, ServiceConfig, Settings, StoreConfig, WebhookConfig

MS = {"tenant_id": "11111111-2222-3333-4444-555555555555", "client_id": "c", "client_secret": "${env:MS_SECRET}"}


def settings(tmp_path: Path, hooked: str) -> Settings:
    return Settings(
        store=StoreConfig(url=f"sqlite:///{tmp_path / 'itam.db'}"),
        connectors=[ConnectorConfig(name=t, type=t, settings=MS) for t in ("entra", "intune", "defender")],
        service=ServiceConfig(webhooks={hooked: WebhookConfig(secret="${env:GRAPH_CLIENT_STATE}")}))


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MS_SECRET", "s3cret")
    monkeypatch.setenv("GRAPH_CLIENT_STATE", "client-state-value")


def test_entra_keeps_graph_change_notifications(tmp_path: Path) -> None:
    hook = build_hooks(settings(tmp_path, "entra"))["entra"]
    assert (hook.kind, KIND_BY_TYPE["entra"]) == ("graph", "graph")


@pytest.mark.parametrize("connector_type", ["intune", "defender"])
def test_no_webhook_is_offered_for_intune_or_defender(tmp_path: Path, connector_type: str) -> None:
    assert connector_type not in KIND_BY_TYPE
    with pytest.raises(ConfigError, match=rf"service\.webhooks\.{connector_type}: connector type "
                                          rf"'{connector_type}' has no known event notifications"):
        build_hooks(settings(tmp_path, connector_type))
