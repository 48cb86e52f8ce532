"""Intune connector: the real connector code over recorded-shape Graph responses (`responses`), with msal's
OIDC discovery and token requests faked the same way, and through the engine where it matters."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from itam_sync.connectors.intune.connector import IntuneConnector, IntuneSettings

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
MAPPING = ROOT / "mappings" / "intune.yaml"
TENANT = "11111111-2222-3333-4444-555555555555"
AUTHORITY = f"https://login.microsoftonline.com/{TENANT}"
GRAPH = "https://graph.microsoft.com"
SECRET = "intune-S3CRET-value"
SETTINGS: dict[str, Any] = {"tenant_id": TENANT, "client_id": "itam-intune-reader", "client_secret": SECRET}
PAGES: dict[str | None, Any] = {None: "managed_devices_page1.json", "page2": "managed_devices_page2.json",
                                "page3": "managed_devices_page3.json"}
REGISTRY = Registry(extra={"intune": IntuneConnector})


def fixture(name: str) -> Any:
    return json.loads((HERE / "fixtures" / name).read_text())


def ms_login(rsps: responses.RequestsMock, *tokens: str, authority: str = AUTHORITY) -> None:
    """msal's tenant discovery and one token response per token, served in order."""
    rsps.get(f"{authority}/v2.0/.well-known/openid-configuration",
             json={"token_endpoint": f"{authority}/oauth2/v2.0/token", "issuer": f"{authority}/v2.0",
                   "authorization_endpoint": f"{authority}/oauth2/v2.0/authorize"})
    for token in tokens or ("tok-1",):
        rsps.post(f"{authority}/oauth2/v2.0/token",
                  json={"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token})


class FakeGraph:
    """GET .../deviceManagement/managedDevices: pages by `$skiptoken`, scripted failures, 401 for bad tokens."""

    def __init__(self, pages: dict[str | None, Any] | None = None,
                 failures: dict[str | None, list[tuple[int, dict[str, str]]]] | None = None,
                 reject: frozenset[str] = frozenset()) -> None:
        self.pages = PAGES if pages is None else pages
        self.failures = failures or {}
        self.reject = reject
        self.queries: list[dict[str, list[str]]] = []
        self.auth: list[str | None] = []
        self.paths: list[str] = []

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        url = urlsplit(str(request.url))
        query = parse_qs(url.query)
        self.queries.append(query)
        self.paths.append(url.path)
        self.auth.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") in self.reject:
            return 401, {}, json.dumps({"error": {"code": "InvalidAuthenticationToken",
                                                  "message": "Lifetime validation failed, the token is expired."}})
        token = query.get("$skiptoken", [None])[0]
        if self.failures.get(token):
            status, headers = self.failures[token].pop(0)
            return status, headers, json.dumps({"error": {"code": "TooManyRequests" if status == 429 else "x"}})
        page = self.pages[token]
        body = fixture(page) if isinstance(page, str) else page
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def serve(self, rsps: responses.RequestsMock, base: str = GRAPH) -> FakeGraph:
        pattern = re.escape(base) + r"/(v1\.0|beta)/deviceManagement/managedDevices(\?.*)?$"
        rsps.add_callback(responses.GET, re.compile(pattern), callback=self)
        return self


@contextlib.contextmanager
def intune_mock(fail: bool) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        if fail:  # the whole Microsoft side is down: discovery, token endpoint and Graph
            for method in (responses.GET, responses.POST):
                rsps.add(method, re.compile(r"https://.*"), status=503)
        else:
            ms_login(rsps)
            FakeGraph().serve(rsps)
        yield rsps


@pytest.fixture(autouse=True)
def _no_real_waits(recorded_sleeps: list[float]) -> list[float]:
    return recorded_sleeps  # retries (conformance failure runs included) sleep into a list


TestIntuneConformance = conformance_suite(IntuneConnector, SETTINGS, mock=intune_mock)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 'itam.db'}"),
                    connectors=[ConnectorConfig(name="intune", type="intune", mapping=str(MAPPING),
                                                settings={**SETTINGS, **overrides})])


def connector(**overrides: Any) -> IntuneConnector:
    return IntuneConnector("intune", IntuneSettings.model_validate({**SETTINGS, **overrides}))


def token_posts(rsps: responses.RequestsMock) -> list[dict[str, list[str]]]:
    return [parse_qs(str(c.request.body)) for c in rsps.calls if c.request.method == "POST"]


def test_pages_follow_next_link_verbatim() -> None:
    with responses.RequestsMock() as rsps:
        ms_login(rsps)
        graph = FakeGraph().serve(rsps)
        records = list(connector().streams()[0].records(StreamState()))
        (form,) = token_posts(rsps)
    assert [r.get("id") for r in records] == [
        "705c034c-034c-705c-4c03-5c704c035c70", "9a1f0c2e-6b7d-4e8f-9a0b-1c2d3e4f5a6b",
        "1c9e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6", "b7e6d5c4-b3a2-4910-8f7e-6d5c4b3a2910",
        None, "e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e6f7"]
    assert graph.queries == [{}, {"$skiptoken": ["page2"]}, {"$skiptoken": ["page3"]}]
    assert graph.paths == ["/v1.0/deviceManagement/managedDevices"] * 3
    assert graph.auth == ["Bearer tok-1"] * 3  # one token for the whole run
    assert form["scope"] == ["https://graph.microsoft.com/.default"]
    assert form["client_id"] == ["itam-intune-reader"] and form["grant_type"] == ["client_credentials"]


def test_national_cloud_endpoints_are_settings() -> None:
    gov_login, gov_graph = "https://login.microsoftonline.us", "https://graph.microsoft.us"
    with responses.RequestsMock() as rsps:
        ms_login(rsps, authority=f"{gov_login}/{TENANT}")
        graph = FakeGraph({None: "managed_devices_empty.json"}).serve(rsps, base=gov_graph)
        c = connector(authority_host=gov_login, graph_url=gov_graph, api_version="beta")
        assert list(c.streams()[0].records(StreamState())) == []
        (form,) = token_posts(rsps)
    assert form["scope"] == ["https://graph.microsoft.us/.default"]
    assert graph.paths == ["/beta/deviceManagement/managedDevices"]


def test_empty_pages(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    # An empty page that still links onwards does not end paging: the server decides.
    first = {"value": [], "@odata.nextLink": f"{GRAPH}/v1.0/deviceManagement/managedDevices?$skiptoken=page2"}
    last = {k: v for k, v in fixture("managed_devices_page2.json").items() if k != "@odata.nextLink"}
    with responses.RequestsMock() as rsps:
        ms_login(rsps)
        FakeGraph({None: first, "page2": last}).serve(rsps)
        result = run_connector(settings, "intune", full=True, registry=REGISTRY)
    assert result.counts["managed_devices"]["new"] == 2
    # The tenant now answers with nothing at all: a full run must not read that as "every device is gone".
    with responses.RequestsMock() as rsps:
        ms_login(rsps)
        FakeGraph({None: "managed_devices_empty.json"}).serve(rsps)
        result = run_connector(settings, "intune", full=True, registry=REGISTRY)
    assert result.status == "guarded" and result.counts["_total"]["missing_marked"] == 0


def test_429_waits_what_retry_after_says(tmp_path: Path, recorded_sleeps: list[float]) -> None:
    with responses.RequestsMock() as rsps:
        ms_login(rsps)
        graph = FakeGraph(failures={"page2": [(429, {"Retry-After": "12"})]}).serve(rsps)
        result = run_connector(make_settings(tmp_path), "intune", full=True, registry=REGISTRY)
    assert result.status == "success" and result.counts["managed_devices"]["new"] == 4
    assert recorded_sleeps == [12.0]
    assert [q.get("$skiptoken") for q in graph.queries] == [None, ["page2"], ["page2"], ["page3"]]


def test_5xx_given_up_fails_the_run_and_marks_nothing_missing(tmp_path: Path,
                                                             recorded_sleeps: list[float]) -> None:
    settings = make_settings(tmp_path)
    with intune_mock(False):
        run_connector(settings, "intune", full=True, registry=REGISTRY)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        before = (list(repo.entities.iter_entities("asset")), repo.runs.get_cursors("intune"))
    recorded_sleeps.clear()
    with responses.RequestsMock() as rsps, pytest.raises(SyncFailed, match="gave up"):
        ms_login(rsps)
        graph = FakeGraph(failures={"page2": [(502, {})] * 9}).serve(rsps)
        run_connector(settings, "intune", full=True, registry=REGISTRY)
    assert sum(q.get("$skiptoken") == ["page2"] for q in graph.queries) == 5
    assert len(recorded_sleeps) == 4
    with store.begin() as repo:
        after = (list(repo.entities.iter_entities("asset")), repo.runs.get_cursors("intune"))
        counts, runs = repo.entities.counts(), repo.runs.list_runs(1)
    store.close()
    assert runs[0]["status"] == "failed"
    assert counts["missing_records"] == 0 and after == before


def test_expired_token_is_refreshed_once(tmp_path: Path) -> None:
    with responses.RequestsMock() as rsps:
        ms_login(rsps, "tok-1", "tok-2")
        graph = FakeGraph(reject=frozenset({"Bearer tok-1"})).serve(rsps)
        result = run_connector(make_settings(tmp_path), "intune", full=True, registry=REGISTRY)
        forms = token_posts(rsps)
    assert result.status == "success" and result.counts["managed_devices"]["new"] == 4
    assert graph.auth == ["Bearer tok-1", "Bearer tok-2", "Bearer tok-2", "Bearer tok-2"]
    assert len(forms) == 2


def test_revoked_credentials_fail_fast_as_config(tmp_path: Path) -> None:
    with responses.RequestsMock() as rsps, pytest.raises(SyncFailed, match="invalid_client"):
        ms_login(rsps)
        rsps.replace(responses.POST, f"{AUTHORITY}/oauth2/v2.0/token", status=401,
                     json={"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret."})
        run_connector(make_settings(tmp_path), "intune", full=True, registry=REGISTRY)


def test_malformed_devices_are_quarantined(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with intune_mock(False):
        result = run_connector(settings, "intune", full=True, registry=REGISTRY)
    assert result.counts["managed_devices"] == {"seen": 6, "new": 4, "changed": 0, "unchanged": 0,
                                                "reappeared": 0, "quarantined": 2}
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        reasons = sorted(row[5] for row in repo.quarantine.list_quarantine(result.run_id))
    store.close()
    assert len(reasons) == 2
    assert "no source key" in reasons[1]
    assert "enrolled_at" in reasons[0] and "e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e6f7" in reasons[0]


def test_incremental_run_reads_every_device_without_a_date_filter(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with intune_mock(False):
        run_connector(settings, "intune", full=True, registry=REGISTRY)
    # The Galaxy becomes compliant after its next check-in. A date filter on managedDevices cannot be trusted
    # (only lt/gt are documented; gt/ge are reported to answer nothing): this fake answers a filtered request
    # with an empty page, as reported, so a filtered incremental run would lose the change without a trace.
    page2 = fixture("managed_devices_page2.json")
    page2["value"][1] |= {"complianceState": "compliant", "lastSyncDateTime": "2024-06-02T10:15:00Z"}
    with responses.RequestsMock() as rsps:
        ms_login(rsps)
        graph = FilterDroppingGraph({**PAGES, "page2": page2}).serve(rsps)
        result = run_connector(settings, "intune", full=False, registry=REGISTRY)
    assert result.status == "success"
    assert all("$filter" not in q for q in graph.queries) and len(graph.queries) == 3
    assert result.counts["managed_devices"]["changed"] == 1 and result.counts["managed_devices"]["unchanged"] == 3
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        galaxy = repo.entities.entity_by_key("asset", "entra_device_id:5d6e7f80-9a1b-4c2d-8e3f-4a5b6c7d8e9f")
        golden = next(g for eid, g, _ in repo.entities.iter_entities("asset") if eid == galaxy)
    store.close()
    assert golden["compliance_state"][:2] == ["compliant", "intune"]


class FilterDroppingGraph(FakeGraph):
    """Answers any `$filter`ed request with an empty collection, as users report for date filters here."""

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        if "$filter" in parse_qs(urlsplit(str(request.url)).query):
            self.queries.append(parse_qs(urlsplit(str(request.url)).query))
            return 200, {"Content-Type": "application/json"}, json.dumps(fixture("managed_devices_empty.json"))
        return super().__call__(request)


def test_mapping_golden() -> None:
    raw = fixture("managed_devices_page1.json")["value"][0]
    obs = load_mapping(MAPPING).stream("managed_devices").map(raw, "managed_devices")
    assert obs.source_key == "705c034c-034c-705c-4c03-5c704c035c70"
    assert obs.observed_at == "2024-06-02T08:11:45Z"
    assert obs.fields == {
        "serial_number": "5CG1234XYZ",
        "mac_addresses": ["a4b1c2d3e4f5"],
        "hostname": "lt-anna-w11",
        "manufacturer": "HP",
        "model": "EliteBook 840 G8",
        "os_name": "Windows",
        "os_version": "10.0.22631.3737",
        "entra_device_id": "80fe8ff8-2624-418e-9591-41f0491218f9",
        "assigned_to": "anna.berg@example.com",
        "compliance_state": "compliant",
        "last_seen": "2024-06-02T08:11:45Z",
        "enrolled_at": "2023-01-09T10:00:00Z",
        "mdm_managed": True,
        "lifecycle_state": "deployed",
    }


def test_messy_devices_map_to_clean_keys() -> None:
    stream = load_mapping(MAPPING).stream("managed_devices")
    iphone = stream.map(fixture("managed_devices_page1.json")["value"][1], "managed_devices").fields
    assert iphone["kind"] == "mobile" and iphone["imei"] == "352099001761481"
    assert iphone["mac_addresses"] == ["f099b6123456"] and iphone["serial_number"] == "F2LXK3ABCD12"
    desktop, android = (stream.map(r, "managed_devices").fields
                        for r in fixture("managed_devices_page2.json")["value"])
    # Never synced, not Entra-registered, placeholder serial, no Wi-Fi: none of it becomes a value or a key.
    for absent in ("serial_number", "entra_device_id", "last_seen", "assigned_to", "kind", "mac_addresses"):
        assert absent not in desktop
    assert android["kind"] == "mobile" and "serial_number" not in android
    assert android["compliance_state"] == "inGracePeriod"


def test_mapping_reads_no_property_a_list_response_leaves_empty() -> None:
    # ethernetMacAddress (null), udid and iccid ("") and physicalMemoryInBytes (0) are filled only by a
    # single-device GET with $select; the connector lists. Even if a value were present, the mapping must not
    # build identity on a property the list call does not deliver.
    raw = fixture("managed_devices_page1.json")["value"][0] | {
        "ethernetMacAddress": "001B213A4C5D", "udid": "00008110-000A1B2C3D4E801E", "iccid": "8946071234567890123"}
    fields = load_mapping(MAPPING).stream("managed_devices").map(raw, "managed_devices").fields
    assert fields["mac_addresses"] == ["a4b1c2d3e4f5"] and "udid" not in fields


def test_secret_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with intune_mock(False):
        run_connector(make_settings(tmp_path), "intune", full=True, registry=REGISTRY)
    assert SECRET not in caplog.text and SECRET not in repr(connector().http)
