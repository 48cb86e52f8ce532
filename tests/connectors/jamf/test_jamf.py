"""Jamf Pro connector: the real connector code over recorded-shape Jamf Pro API responses (`responses`),
both auth modes, and through the engine where it matters."""

from __future__ import annotations

import base64
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
from itam_sync.connectors.jamf.connector import JamfConnector, JamfSettings
from pydantic import ValidationError

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
MAPPING = ROOT / "mappings" / "jamf.yaml"
BASE = "https://acme.jamfcloud.com"
COMPUTERS = "/api/v3/computers-inventory"
COMPUTERS_V1 = "/api/v1/computers-inventory"  # deprecated; still on older servers
MOBILE = "/api/v2/mobile-devices/detail"
SECRET = "jamf-S3CRET-value"
OAUTH: dict[str, Any] = {"base_url": BASE, "client_id": "itam-sync", "client_secret": SECRET, "page_size": 2}
USER: dict[str, Any] = {"base_url": BASE, "username": "svc-itam", "password": SECRET, "page_size": 2}
PAGES: dict[str, dict[str, Any]] = {
    COMPUTERS: {"0": "computers_page0.json", "1": "computers_page1.json", "2": "computers_page2.json"},
    COMPUTERS_V1: {"0": "computers_page0.json", "1": "computers_page1.json", "2": "computers_page2.json"},
    MOBILE: {"0": "mobile_devices_page0.json"},
}
REGISTRY = Registry(extra={"jamf": JamfConnector})
# Filter fields as the Jamf Pro API reference lists them: computers-inventory takes section-prefixed names,
# v2 mobile-devices/detail flat ones (lastInventoryUpdateDate filter added in 11.4.0).
FILTERABLE = {COMPUTERS: {"general.lastContactTime", "general.reportDate"},
              COMPUTERS_V1: {"general.lastContactTime", "general.reportDate"},
              MOBILE: {"lastInventoryUpdateDate", "serialNumber", "mobileDeviceId"}}


def fixture(name: str) -> Any:
    return json.loads((HERE / "fixtures" / name).read_text())


class FakeJamf:
    """A Jamf Pro server: both token endpoints, and the two inventory lists paged by `page`.

    `failures[(path, page)]` scripts (status, headers) answers served before the page; tokens listed in
    `reject` get a 401 (expired). Tokens are handed out in order: jt-1, jt-2, ...
    """

    def __init__(self, pages: dict[str, dict[str, Any]] | None = None,
                 failures: dict[tuple[str, str], list[tuple[int, dict[str, str]]]] | None = None,
                 reject: frozenset[str] = frozenset()) -> None:
        self.pages = PAGES if pages is None else pages
        self.failures = failures or {}
        self.reject = reject
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.auth: list[str | None] = []
        self.token_requests: list[requests.PreparedRequest] = []

    def token(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.token_requests.append(request)
        n = len(self.token_requests)
        if urlsplit(str(request.url)).path == "/api/oauth/token":
            body = {"access_token": f"jt-{n}", "scope": "api-role:2", "token_type": "Bearer", "expires_in": 1799}
        else:
            body = {"token": f"jt-{n}", "expires": "2099-06-02T08:28:40.123Z"}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def api(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        url = urlsplit(str(request.url))
        query = parse_qs(url.query)
        self.requests.append((url.path, query))
        self.auth.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") in self.reject:
            return 401, {}, json.dumps({"httpStatus": 401, "errors": [{"code": "INVALID_TOKEN"}]})
        page = query.get("page", ["0"])[0]
        rsql = query.get("filter", [""])[0]
        if rsql and rsql.split(">=")[0] not in FILTERABLE[url.path]:  # Jamf refuses fields it does not filter on
            error = {"code": "INVALID_FIELD", "field": "filter", "description": f"{rsql} is not a valid filter"}
            return 400, {}, json.dumps({"httpStatus": 400, "errors": [error]})
        if self.failures.get((url.path, page)):
            status, headers = self.failures[(url.path, page)].pop(0)
            return status, headers, "<html><body>Service Unavailable</body></html>"
        body = self.pages[url.path][page]
        return 200, {"Content-Type": "application/json"}, json.dumps(fixture(body) if isinstance(body, str) else body)

    def serve(self, rsps: responses.RequestsMock) -> FakeJamf:
        rsps.add_callback(responses.POST, re.compile(re.escape(BASE) + r"/api/(oauth|v1/auth)/token$"),
                          callback=self.token)
        rsps.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/api/v[123]/.*"), callback=self.api)
        return self

    def calls(self, path: str) -> list[dict[str, list[str]]]:
        return [q for p, q in self.requests if p == path]


@contextlib.contextmanager
def jamf_mock(fail: bool) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        if fail:  # the Jamf Pro server is down: token endpoint and API answer 503
            for method in (responses.GET, responses.POST):
                rsps.add(method, re.compile(r"https://.*"), status=503)
        else:
            FakeJamf().serve(rsps)
        yield rsps


@pytest.fixture(autouse=True)
def _no_real_waits(recorded_sleeps: list[float]) -> list[float]:
    return recorded_sleeps  # retries (conformance failure runs included) sleep into a list


TestJamfConformance = conformance_suite(JamfConnector, OAUTH, mock=jamf_mock)


def make_settings(tmp_path: Path, base: dict[str, Any] = OAUTH, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 'itam.db'}"),
                    connectors=[ConnectorConfig(name="jamf", type="jamf", mapping=str(MAPPING),
                                                settings={**base, **overrides})])


def connector(base: dict[str, Any] = OAUTH, **overrides: Any) -> JamfConnector:
    return JamfConnector("jamf", JamfSettings.model_validate({**base, **overrides}))


def test_pages_sections_and_stable_sort() -> None:
    with responses.RequestsMock() as rsps:
        jamf = FakeJamf().serve(rsps)
        computers, mobile = (list(s.records(StreamState())) for s in connector().streams())
    assert [c["id"] for c in computers] == ["117", "118", "121", "125", None, "131"]
    assert [m["mobileDeviceId"] for m in mobile] == ["7", "9"]
    # Three pages of two; totalCount (6) ends paging without asking for an empty fourth page.
    assert [q["page"] for q in jamf.calls(COMPUTERS)] == [["0"], ["1"], ["2"]]
    first = jamf.calls(COMPUTERS)[0]
    assert first["section"] == ["GENERAL", "HARDWARE", "USER_AND_LOCATION", "OPERATING_SYSTEM"]
    assert first["page-size"] == ["2"] and first["sort"] == ["id:asc"] and "filter" not in first
    (only,) = jamf.calls(MOBILE)
    assert only["section"] == ["GENERAL", "HARDWARE", "USER_AND_LOCATION", "NETWORK"]
    assert only["sort"] == ["mobileDeviceId:asc"]
    assert set(jamf.auth) == {"Bearer jt-1"}  # one token for every request


def test_oauth_client_credentials_token_request() -> None:
    with responses.RequestsMock() as rsps:
        jamf = FakeJamf().serve(rsps)
        list(connector().streams()[1].records(StreamState()))
    (token_request,) = jamf.token_requests
    assert token_request.url == f"{BASE}/api/oauth/token"
    assert parse_qs(str(token_request.body)) == {"grant_type": ["client_credentials"], "client_id": ["itam-sync"],
                                                 "client_secret": [SECRET]}


def test_user_account_trades_basic_credentials_for_a_bearer_token() -> None:
    with responses.RequestsMock() as rsps:
        jamf = FakeJamf().serve(rsps)
        records = list(connector(USER).streams()[1].records(StreamState()))
    (token_request,) = jamf.token_requests
    assert token_request.url == f"{BASE}/api/v1/auth/token"
    assert token_request.headers["Authorization"] == "Basic " + base64.b64encode(
        f"svc-itam:{SECRET}".encode()).decode()
    assert len(records) == 2 and jamf.auth == ["Bearer jt-1"]


@pytest.mark.parametrize("creds", [
    {"base_url": BASE},
    {"base_url": BASE, "client_id": "a", "client_secret": "b", "username": "c", "password": "d"},
    {"base_url": BASE, "client_id": "a"},
    {"base_url": BASE, "username": "c"},
])
def test_exactly_one_complete_credential(creds: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        JamfSettings.model_validate(creds)


def test_empty_pages(tmp_path: Path) -> None:
    # No mobile devices at all; and a server whose totalCount over-promises ends on the first empty page.
    pages = {COMPUTERS: {"0": "computers_page0.json", "1": {"totalCount": 6, "results": []}},
             MOBILE: {"0": "mobile_devices_empty.json"}}
    with responses.RequestsMock() as rsps:
        jamf = FakeJamf(pages).serve(rsps)
        result = run_connector(make_settings(tmp_path), "jamf", full=True, registry=REGISTRY)
    assert result.status == "success"
    assert result.counts["computers"]["new"] == 2 and result.counts["mobile_devices"]["seen"] == 0
    assert [q["page"] for q in jamf.calls(COMPUTERS)] == [["0"], ["1"]]


def test_429_waits_what_retry_after_says(tmp_path: Path, recorded_sleeps: list[float]) -> None:
    with responses.RequestsMock() as rsps:
        jamf = FakeJamf(failures={(COMPUTERS, "1"): [(429, {"Retry-After": "3"})]}).serve(rsps)
        result = run_connector(make_settings(tmp_path), "jamf", full=True, registry=REGISTRY)
    assert result.status == "success" and result.counts["computers"]["new"] == 4
    assert recorded_sleeps == [3.0]
    assert [q["page"] for q in jamf.calls(COMPUTERS)] == [["0"], ["1"], ["1"], ["2"]]


def test_5xx_given_up_fails_the_run_and_marks_nothing_missing(tmp_path: Path,
                                                             recorded_sleeps: list[float]) -> None:
    settings = make_settings(tmp_path)
    with jamf_mock(False):
        run_connector(settings, "jamf", full=True, registry=REGISTRY)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        before = (list(repo.entities.iter_entities("asset")), repo.runs.get_cursors("jamf"))
    recorded_sleeps.clear()
    # Computers read fine; the mobile devices list keeps failing: the whole run fails, nothing is committed.
    with responses.RequestsMock() as rsps, pytest.raises(SyncFailed, match="gave up"):
        jamf = FakeJamf(failures={(MOBILE, "0"): [(503, {})] * 9}).serve(rsps)
        run_connector(settings, "jamf", full=True, registry=REGISTRY)
    assert len(jamf.calls(MOBILE)) == 5 and len(recorded_sleeps) == 4
    with store.begin() as repo:
        after = (list(repo.entities.iter_entities("asset")), repo.runs.get_cursors("jamf"))
        counts, runs = repo.entities.counts(), repo.runs.list_runs(1)
    store.close()
    assert runs[0]["status"] == "failed"
    assert counts["missing_records"] == 0 and after == before


@pytest.mark.parametrize("creds", [OAUTH, USER], ids=["api-client", "user-account"])
def test_expired_token_is_refreshed_once(tmp_path: Path, creds: dict[str, Any]) -> None:
    with responses.RequestsMock() as rsps:
        jamf = FakeJamf(reject=frozenset({"Bearer jt-1"})).serve(rsps)
        result = run_connector(make_settings(tmp_path, creds), "jamf", full=True, registry=REGISTRY)
    assert result.status == "success" and result.counts["computers"]["new"] == 4
    assert jamf.auth == ["Bearer jt-1"] + ["Bearer jt-2"] * 4  # the 401, then 3 computer + 1 mobile pages
    assert len(jamf.token_requests) == 2


def test_token_refused_is_a_config_error(tmp_path: Path) -> None:
    with responses.RequestsMock() as rsps, pytest.raises(SyncFailed, match="refused") as info:
        rsps.post(f"{BASE}/api/v1/auth/token", status=401, json={"httpStatus": 401, "errors": []})
        run_connector(make_settings(tmp_path, USER), "jamf", full=True, registry=REGISTRY)
    assert SECRET not in str(info.value)


def test_malformed_records_are_quarantined(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with jamf_mock(False):
        result = run_connector(settings, "jamf", full=True, registry=REGISTRY)
    assert result.counts["computers"]["quarantined"] == 2 and result.counts["computers"]["new"] == 4
    assert result.counts["mobile_devices"]["new"] == 2
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        reasons = sorted(row[5] for row in repo.quarantine.list_quarantine(result.run_id))
    store.close()
    assert len(reasons) == 2
    assert "no source key" in reasons[1]
    assert "enrolled_at" in reasons[0] and "'131'" in reasons[0]


def test_incremental_run_filters_on_the_saved_cursors(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with jamf_mock(False):
        run_connector(settings, "jamf", full=True, registry=REGISTRY)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        cursors = repo.runs.get_cursors("jamf")
    store.close()
    assert cursors == {"computers": "2024-06-02T07:58:40Z", "mobile_devices": "2024-06-02T09:12:44.102Z"}
    with responses.RequestsMock() as rsps:
        jamf = FakeJamf().serve(rsps)
        assert run_connector(settings, "jamf", full=False, registry=REGISTRY).status == "success"
    assert jamf.calls(COMPUTERS)[0]["filter"] == ["general.lastContactTime>=2024-06-02T07:58:40Z"]
    assert jamf.calls(MOBILE)[0]["filter"] == ["lastInventoryUpdateDate>=2024-06-02T09:12:44.102Z"]
    assert all(q["sort"] for q in jamf.calls(COMPUTERS))  # the filter rides along on every page


def test_incremental_filter_can_be_switched_off(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, incremental_filter=False)
    with jamf_mock(False):
        run_connector(settings, "jamf", full=True, registry=REGISTRY)
    with responses.RequestsMock() as rsps:
        jamf = FakeJamf().serve(rsps)
        result = run_connector(settings, "jamf", full=False, registry=REGISTRY)
    assert not any("filter" in q for _, q in jamf.requests)
    assert result.counts["computers"]["unchanged"] == 4  # read again, skipped by content hash


def test_mapping_golden_computer() -> None:
    raw = fixture("computers_page0.json")["results"][0]
    obs = load_mapping(MAPPING).stream("computers").map(raw, "computers")
    assert obs.source_key == "117" and obs.observed_at == "2024-06-02T07:58:40Z"
    assert obs.fields == {
        "kind": "laptop",
        "serial_number": "C02FK1ABQ6L4",
        "udid": "55F2D7E1-6C1B-4F0A-9A2E-3B4C5D6E7F80",
        "mac_addresses": ["8c85901a2b3c"],
        "hostname": "lt-anna-mbp",
        "manufacturer": "Apple",
        "model": "MacBook Pro (14-inch, 2021)",
        "os_name": "macOS",
        "os_version": "14.5",
        "assigned_to": "anna.berg@example.com",
        "ip_addresses": ["10.20.4.33", "198.51.100.20"],
        "last_seen": "2024-06-02T07:58:40Z",
        "enrolled_at": "2023-02-01T09:12:00Z",
        "agent_version": "11.6.0-t1718",
        "mdm_managed": True,
    }


def test_mapping_golden_mobile_device() -> None:
    raw = fixture("mobile_devices_page0.json")["results"][0]
    obs = load_mapping(MAPPING).stream("mobile_devices").map(raw, "mobile_devices")
    assert obs.source_key == "7" and obs.observed_at == "2024-06-02T09:12:44Z"
    assert obs.fields == {
        "kind": "mobile",
        "serial_number": "F2LXK3ABCD12",
        "udid": "00008110-000A1B2C3D4E801E",
        "imei": "352099001761481",
        "mac_addresses": ["f099b6123456"],
        "manufacturer": "Apple",
        "model": "iPhone 14",
        "os_name": "iOS",
        "os_version": "17.5.1",
        "assigned_to": "lars.ek@example.com",
        "ip_addresses": ["10.20.7.41"],
        "last_seen": "2024-06-02T09:12:44Z",
        "enrolled_at": "2022-11-21T13:40:00Z",
        "mdm_managed": True,
    }


def test_messy_computers_map_to_clean_values() -> None:
    stream = load_mapping(MAPPING).stream("computers")
    mini, vm, air = (stream.map(r, "computers").fields for r in
                     [*fixture("computers_page0.json")["results"][1:], *fixture("computers_page1.json")["results"]])
    assert mini["kind"] == "desktop" and mini["serial_number"] == "C07XK1ABPJHD"
    assert mini["udid"] == "9B0E7C4A-2F3D-4E5F-8A6B-7C8D9E0F1A2B" and mini["hostname"] == "build-mini-02"
    assert mini["mdm_managed"] is False and "assigned_to" not in mini and "last_seen" not in mini
    assert mini["mac_addresses"] == ["f02f4b001122", "f02f4b001123"]
    assert vm["kind"] == "vm"
    # A username that is an e-mail stands in for the missing e-mail; the dock's MAC is kept as data
    # (identity resolution ignores it for matching).
    assert air["assigned_to"] == "lars.ek@example.com" and air["kind"] == "laptop"
    assert air["mac_addresses"] == ["3c22fb4d5e6f", "00e04c680102"]
    ipad = load_mapping(MAPPING).stream("mobile_devices").map(
        fixture("mobile_devices_page0.json")["results"][1], "mobile_devices").fields
    assert ipad["kind"] == "tablet" and "assigned_to" not in ipad and "mac_addresses" not in ipad


def test_secret_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for creds in (OAUTH, USER):
        with jamf_mock(False):
            run_connector(make_settings(tmp_path / creds.get("username", "oauth"), creds), "jamf", full=True,
                          registry=REGISTRY)
        assert SECRET not in repr(connector(creds).http)
    assert SECRET not in caplog.text


def test_computers_read_from_the_current_inventory_version_v1_kept_for_older_servers(tmp_path: Path) -> None:
    with responses.RequestsMock() as rsps:
        jamf = FakeJamf().serve(rsps)
        assert run_connector(make_settings(tmp_path), "jamf", full=True, registry=REGISTRY).status == "success"
    assert len(jamf.calls(COMPUTERS)) == 3 and jamf.calls(COMPUTERS_V1) == []  # /v1 is deprecated by Jamf
    with responses.RequestsMock() as rsps:
        jamf = FakeJamf().serve(rsps)
        old = make_settings(tmp_path / "old", computers_inventory_version="v1")
        assert run_connector(old, "jamf", full=True, registry=REGISTRY).status == "success"
    assert len(jamf.calls(COMPUTERS_V1)) == 3 and jamf.calls(COMPUTERS) == []
