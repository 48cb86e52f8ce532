"""A connector whose extra is not installed stays listed and fails with the extra's name, never a traceback."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from missing_modules import hide_modules

from itam_sync.engine.registry import GROUP, ConnectorUnavailable, Registry, UnknownConnectorType


def test_missing_extra_keeps_the_type_listed_and_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "boto3", "botocore",
                 reload=("itam_sync.connectors.aws", "itam_sync.connectors.certificates", "itam_sync.sdk.cloud"))
    reg = Registry()
    assert {"aws", "certificates", "okta"} <= set(reg.names())
    with pytest.raises(ConnectorUnavailable) as err:
        reg.get("aws")
    assert str(err.value) == "connector type 'aws' needs `pip install itam-sync[aws]`"
    assert err.value.extra == "aws"
    assert isinstance(err.value, UnknownConnectorType)  # every command already reports those in one line
    assert reg.describe("aws") == "needs `pip install itam-sync[aws]`"
    # Certificates reads TLS endpoints with the core install; only its ACM settings need boto3.
    assert reg.describe("certificates") == "TLS certificates from host:port endpoints and AWS Certificate Manager"
    assert reg.describe("okta") == reg.get("okta").description


def test_google_libraries_missing_name_the_extra_of_each_google_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "googleapiclient", "google_auth_httplib2", "httplib2",
                 reload=("itam_sync.connectors.gcp", "itam_sync.connectors.google_workspace", "itam_sync.sdk.cloud"))
    reg = Registry()
    assert reg.describe("gcp") == "needs `pip install itam-sync[gcp]`"
    assert reg.describe("google_workspace") == "needs `pip install itam-sync[google]`"


def test_a_broken_third_party_connector_says_what_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry()
    reg._eps["broken"] = EntryPoint("broken", "itam_sync_no_such_plugin.connector:Broken", GROUP)
    with pytest.raises(ConnectorUnavailable) as err:
        reg.get("broken")
    assert err.value.extra is None
    assert "cannot be imported (ModuleNotFoundError: No module named 'itam_sync_no_such_plugin'" in str(err.value)
    assert reg.describe("broken").startswith("(cannot load: cannot be imported (ModuleNotFoundError")
