"""GCP connector over googleapiclient's HttpMockSequence: the real client, token exchange included.

The connector's `transport()` (the plain httplib2 layer under google-auth's AuthorizedHttp) is swapped for an
HttpMockSequence, so the service-account JWT exchange, the 401 refresh, the discovery-built requests, the
retries and the paging all run for real; responses are served in order.
"""

from __future__ import annotations

import contextlib
import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import googleapiclient.http
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from googleapiclient.http import HttpMockSequence
from itam_sync.connectors.gcp.connector import GcpConnector, GcpSettings

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import RunResult, SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import BadRecord, ConnectorError, StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
MAPPING = ROOT / "mappings" / "gcp.yaml"
TOKEN_URI = "https://oauth2.googleapis.com/token"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
SA_JSON = json.dumps({"type": "service_account", "project_id": "fin-prod", "private_key_id": "4f1e2d3c",
                      "private_key": _KEY, "client_email": "itam-reader@fin-prod.iam.gserviceaccount.com",
                      "client_id": "103948572910384756123", "token_uri": TOKEN_URI})
SETTINGS: dict[str, Any] = {"projects": ["fin-prod", "platform-shared"], "service_account_json": SA_JSON,
                            "num_retries": 2, "page_size": 2}
OK = {"status": "200", "content-type": "application/json; charset=UTF-8"}


def body(name: str) -> str:
    return (FIXTURES / name).read_text()


def ok(name: str) -> tuple[dict[str, str], str]:
    return OK, body(name)


def status(code: int, name: str) -> tuple[dict[str, str], str]:
    return {"status": str(code), "content-type": "application/json"}, body(name)


def token(n: int = 1) -> tuple[dict[str, str], str]:
    return OK, json.dumps({**json.loads(body("token.json")), "access_token": f"gce-token-{n}"})


HAPPY = [token(), ok("aggregated_fin_page1.json"), ok("aggregated_fin_page2.json"), ok("aggregated_platform.json")]


class MockSequence(HttpMockSequence):
    """HttpMockSequence plus the `close()` a real httplib2.Http has (the connector closes its service)."""

    def close(self) -> None:
        self.closed = True


class Transport:
    """Hands each connector a fresh HttpMockSequence of `responses`; keeps them for assertions."""

    def __init__(self, responses: list[tuple[dict[str, str], str]]) -> None:
        self.responses = responses
        self.sequences: list[MockSequence] = []

    def __call__(self, conn: GcpConnector) -> MockSequence:
        seq = MockSequence(list(self.responses))
        self.sequences.append(seq)
        return seq

    @property
    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """(method, url, headers) of every request of the last connector."""
        return [(m, u, dict(h or {})) for u, m, _, h in self.sequences[-1].request_sequence]

    def api_queries(self) -> list[dict[str, str]]:
        return [{"path": urlsplit(u).path, **{k: v[0] for k, v in parse_qs(urlsplit(u).query).items()}}
                for m, u, _ in self.requests if u != TOKEN_URI]


@contextlib.contextmanager
def gce(responses: list[tuple[dict[str, str], str]], sleeps: list[float] | None = None) -> Iterator[Transport]:
    transport = Transport(responses)
    original_transport, original_time = GcpConnector.transport, googleapiclient.http.time
    setattr(GcpConnector, "transport", lambda self: transport(self))  # noqa: B010 - a class attribute, on purpose
    googleapiclient.http.time = types.SimpleNamespace(sleep=(sleeps if sleeps is not None else []).append)
    try:
        yield transport
    finally:
        setattr(GcpConnector, "transport", original_transport)  # noqa: B010
        googleapiclient.http.time = original_time


def gce_mock(fail: bool) -> contextlib.AbstractContextManager[Transport]:
    """The conformance suite's mock: two projects (the first in two pages), or 503 until retries run out."""
    return gce([token()] + [status(503, "error_503.json")] * 3 if fail else HAPPY)


TestGcpConformance = conformance_suite(GcpConnector, SETTINGS, mock=gce_mock, mapping=MAPPING)


# ------------------------------------------------------------------------------------------ helpers


def pull(**overrides: Any) -> list[Any]:
    conn = GcpConnector("gcp-prod", GcpSettings.model_validate({**SETTINGS, **overrides}))
    try:
        return list(conn.streams()[0].records(StreamState()))
    finally:
        conn.close()


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 'gcp.db'}"),
                    connectors=[ConnectorConfig(name="gcp-prod", type="gcp", settings={**SETTINGS, **overrides},
                                                mapping=str(MAPPING))])


def run(settings: Settings, *, full: bool = True) -> RunResult:
    return run_connector(settings, "gcp-prod", full=full, registry=Registry(extra={"gcp": GcpConnector}))


def names(records: list[Any]) -> list[str]:
    return [r["name"] for r in records if not isinstance(r, BadRecord)]


# -------------------------------------------------------------------------------------------- tests


def test_pages_every_project_with_the_service_account_token() -> None:
    with gce(HAPPY) as t:
        records = pull()
    assert names(records) == ["vm-batch-7", "win-sql-1", "gke-pool-1-abcd"]
    assert [q["path"] for q in t.api_queries()] == ["/compute/v1/projects/fin-prod/aggregated/instances"] * 2 + [
        "/compute/v1/projects/platform-shared/aggregated/instances"]
    first, second, third = t.api_queries()
    assert first["maxResults"] == "2" and "pageToken" not in first
    assert second["pageToken"].startswith("CkQIqPvX") and "pageToken" not in third
    method, url, headers = t.requests[0]
    assert (method, url) == ("POST", TOKEN_URI)  # the JWT-bearer grant, signed with the key
    assert all(h.get("authorization") == "Bearer gce-token-1" for _, u, h in t.requests[1:])
    batch = records[0]
    assert (batch["projectId"], batch["zoneName"], batch["regionName"], batch["machineTypeName"]) == (
        "fin-prod", "europe-north1-a", "europe-north1", "e2-standard-4")


def test_warning_only_scopes_and_empty_projects() -> None:
    with gce([token(), ok("aggregated_empty.json")]):
        assert pull(projects=["empty-proj"]) == []


def test_empty_project_through_the_engine(tmp_path: Path) -> None:
    with gce([token(), ok("aggregated_empty.json")]):
        result = run(settings_for(tmp_path, projects=["empty-proj"]))
    assert result.status == "success" and result.counts["instances"]["seen"] == 0


def test_filter_and_api_endpoint_are_sent() -> None:
    with gce([token(), ok("aggregated_platform.json")]) as t:
        pull(projects=["platform-shared"], filter="status = RUNNING",
             api_endpoint="https://compute-fin.p.googleapis.com/compute/v1/")
    (query,) = t.api_queries()
    assert query["filter"] == "status = RUNNING"
    assert t.requests[1][1].startswith("https://compute-fin.p.googleapis.com/compute/v1/projects/platform-shared/")


def test_429_is_retried_with_backoff() -> None:
    sleeps: list[float] = []
    with gce([token(), status(429, "error_429.json"), ok("aggregated_platform.json")], sleeps) as t:
        records = pull(projects=["platform-shared"])
    assert names(records) == ["gke-pool-1-abcd"]
    assert len(t.api_queries()) == 2 and len(sleeps) == 1 and 0 <= sleeps[0] <= 2  # rand() * 2**1


def test_5xx_given_up_fails_the_run_and_marks_nothing_missing(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with gce(HAPPY):
        assert run(settings).status == "success"
    sleeps: list[float] = []
    failing = [token(), ok("aggregated_fin_page1.json")] + [status(503, "error_503.json")] * 3
    with gce(failing, sleeps) as t, pytest.raises(SyncFailed, match="fin-prod"):
        run(settings)
    assert len(t.api_queries()) == 4 and len(sleeps) == 2  # page 2 tried 3 times (num_retries=2)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        counts, last = repo.entities.counts(), repo.runs.list_runs(1)[0]
    store.close()
    assert last["status"] == "failed" and counts["missing_records"] == 0


def test_unreachable_zones_fail_the_run(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with gce(HAPPY):
        run(settings)
    with gce([token(), ok("aggregated_fin_page1.json"), ok("aggregated_fin_page2.json"),
              ok("aggregated_unreachable.json")]), pytest.raises(SyncFailed, match="us-west4-b"):
        run(settings)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        assert repo.entities.counts()["missing_records"] == 0
    store.close()


def test_expired_token_is_refreshed_on_401() -> None:
    with gce([token(1), status(401, "error_401.json"), token(2), ok("aggregated_platform.json")]) as t:
        records = pull(projects=["platform-shared"])
    assert names(records) == ["gke-pool-1-abcd"]
    auth = [(u == TOKEN_URI, h.get("authorization")) for _, u, h in t.requests]
    assert auth == [(True, None), (False, "Bearer gce-token-1"), (True, None), (False, "Bearer gce-token-2")]


def test_refused_service_account_is_a_config_error() -> None:
    refused = ({"status": "400", "content-type": "application/json"},
               json.dumps({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}))
    with gce([refused]), pytest.raises(ConnectorError) as err:
        pull(projects=["platform-shared"])
    assert err.value.kind == "config" and "invalid_grant" in str(err.value)


def test_bad_key_json_is_a_config_error() -> None:
    with pytest.raises(ConnectorError) as err:
        pull(service_account_json="{not json")
    assert err.value.kind == "config"


def test_malformed_instance_is_quarantined(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with gce(HAPPY):
        result = run(settings)
    assert result.counts["instances"]["quarantined"] == 1 and result.counts["instances"]["new"] == 3
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        rows = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert [(r[3], "without an id" in r[5]) for r in rows] == [("instances", True)]


def test_incremental_runs_are_full_sweeps(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with gce(HAPPY):
        run(settings)
    with gce(HAPPY) as t:
        second = run(settings, full=False)
    assert second.counts["instances"]["unchanged"] == 3
    assert all("pageToken" not in q or q["path"].endswith("fin-prod/aggregated/instances") for q in t.api_queries())


def test_mapping_golden() -> None:
    with gce(HAPPY):
        records = {r["name"]: r for r in pull() if not isinstance(r, BadRecord)}
    stream = load_mapping(MAPPING).stream("instances")
    assert stream.source_key(records["vm-batch-7"]) == "1234567890123456789"
    assert stream.map(records["vm-batch-7"], "instances").fields == {
        "kind": "cloud_instance",
        "cloud_provider": "gcp",
        "cloud_account": "fin-prod",
        "region": "europe-north1",
        "instance_id": "1234567890123456789",
        "instance_type": "e2-standard-4",
        "power_state": "running",
        "lifecycle_state": "deployed",
        "hostname": "vm-batch-7",
        "ip_addresses": ["10.132.0.12", "34.88.10.21"],
        "os_name": "Linux",
        "tags": ["owner=anna-berg", "env=prod"],
    }
    win = stream.map(records["win-sql-1"], "instances").fields
    assert win["hostname"] == "win-sql-1" and win["os_name"] == "Windows" and win["power_state"] == "terminated"
    assert win["ip_addresses"] == ["10.10.0.5", "fd20:1:2:3::5"] and win["region"] == "europe-west1"
    assert "mac_addresses" not in win  # GCP exposes no MACs
    assert stream.map(records["gke-pool-1-abcd"], "instances").fields["tags"] == ["goog-gke-node="]
