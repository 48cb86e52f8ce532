"""Defender for Endpoint connector: the real connector code over recorded-shape responses (`responses`),
with msal's OIDC discovery and token requests faked the same way, and through the engine where it matters."""

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
from itam_sync.connectors.defender.connector import DefenderConnector, DefenderSettings

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
MAPPING = ROOT / "mappings" / "defender.yaml"
TENANT = "5b8a1c2d-0000-4e5f-9a8b-7c6d5e4f3a2b"
AUTHORITY = f"https://login.microsoftonline.com/{TENANT}"
API = "https://api.securitycenter.microsoft.com"
SECRET = "d3f3nder-S3CRET"
SETTINGS: dict[str, Any] = {"tenant_id": TENANT, "client_id": "itam-defender-reader", "client_secret": SECRET}
PAGES: dict[str | None, Any] = {None: "machines_page1.json", "10000": "machines_page2.json",
                                "20000": "machines_page3.json"}
REGISTRY = Registry(extra={"defender": DefenderConnector})


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


class FakeDefender:
    """GET /api/machines: pages by `$skip`, scripted failures per page, 401 for rejected tokens."""

    def __init__(self, pages: dict[str | None, Any] | None = None,
                 failures: dict[str | None, list[tuple[int, dict[str, str]]]] | None = None,
                 reject: frozenset[str] = frozenset()) -> None:
        self.pages = PAGES if pages is None else pages
        self.failures = failures or {}
        self.reject = reject
        self.queries: list[dict[str, list[str]]] = []
        self.auth: list[str | None] = []

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        query = parse_qs(urlsplit(str(request.url)).query)
        self.queries.append(query)
        self.auth.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") in self.reject:
            return 401, {}, json.dumps({"error": {"code": "Unauthorized", "message": "token expired"}})
        skip = query.get("$skip", [None])[0]
        if self.failures.get(skip):
            status, headers = self.failures[skip].pop(0)
            return status, headers, json.dumps({"error": {"code": "TooManyRequests" if status == 429 else "Oops"}})
        page = self.pages[skip]
        if isinstance(page, tuple):  # (status, body)
            return page[0], {"Content-Type": "application/json"}, json.dumps(page[1])
        body = fixture(page) if isinstance(page, str) else page
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def serve(self, rsps: responses.RequestsMock, base: str = API) -> FakeDefender:
        rsps.add_callback(responses.GET, re.compile(re.escape(f"{base}/api/machines") + r"(\?.*)?$"), callback=self)
        return self


@contextlib.contextmanager
def defender_mock(fail: bool) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        if fail:  # the whole Microsoft side is down: discovery, token endpoint and API
            for method in (responses.GET, responses.POST):
                rsps.add(method, re.compile(r"https://.*"), status=503)
        else:
            ms_login(rsps)
            FakeDefender().serve(rsps)
        yield rsps


@pytest.fixture(autouse=True)
def _no_real_waits(recorded_sleeps: list[float]) -> list[float]:
    return recorded_sleeps  # retries (conformance failure runs included) sleep into a list


TestDefenderConformance = conformance_suite(DefenderConnector, SETTINGS, mock=defender_mock)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 'itam.db'}"),
                    connectors=[ConnectorConfig(name="defender", type="defender", mapping=str(MAPPING),
                                                settings={**SETTINGS, **overrides})])


def connector(**overrides: Any) -> DefenderConnector:
    return DefenderConnector("defender", DefenderSettings.model_validate({**SETTINGS, **overrides}))


def token_posts(rsps: responses.RequestsMock) -> list[dict[str, list[str]]]:
    return [parse_qs(str(c.request.body)) for c in rsps.calls if c.request.method == "POST"]


def test_pages_follow_next_link_without_top() -> None:
    with responses.RequestsMock() as rsps:
        ms_login(rsps)
        api = FakeDefender().serve(rsps)
        records = list(connector().streams()[0].records(StreamState()))
    ids = [r.get("id") if isinstance(r, dict) else r for r in records]
    assert ids[:4] == ["1e5bc9d7e413ddd7902c2932e418702b84d0cc07", "7c3f0e2a9b8d4c1e6f5a0b9c8d7e6f5a4b3c2d1e",
                       "4d2e8a1b6c9f0e3d7a5b2c8e1f4a6d9b0c3e7f2a", "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"]
    assert len(records) == 7  # page 3 holds a null and two broken machines: passed on for quarantine
    assert api.queries == [{}, {"$skip": ["10000"]}, {"$skip": ["20000"]}]  # $top would suppress nextLink
    assert api.auth == ["Bearer tok-1"] * 3


def test_token_for_the_defender_resource_on_a_regional_host() -> None:
    eu = "https://eu.api.security.microsoft.com"
    with responses.RequestsMock() as rsps:
        ms_login(rsps)
        rsps.get(f"{eu}/api/machines", json=fixture("machines_empty.json"))
        assert list(connector(api_url=eu).streams()[0].records(StreamState())) == []
        (form,) = token_posts(rsps)
    assert form["scope"] == ["https://api.securitycenter.microsoft.com/.default"]
    assert form["client_id"] == ["itam-defender-reader"] and form["grant_type"] == ["client_credentials"]


def test_empty_pages(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    # An empty page that still links onwards does not end paging: the server decides.
    first = {"value": [], "@odata.nextLink": f"{API}/api/machines?$skip=10000"}
    with responses.RequestsMock() as rsps:
        ms_login(rsps)
        last = {k: v for k, v in fixture("machines_page2.json").items() if k != "@odata.nextLink"}
        FakeDefender({None: first, "10000": last}).serve(rsps)
        result = run_connector(settings, "defender", full=True, registry=REGISTRY)
    assert result.counts["machines"]["new"] == 2
    # A tenant with nothing: the run succeeds and has nothing to map.
    with responses.RequestsMock() as rsps:
        ms_login(rsps)
        FakeDefender({None: "machines_empty.json"}).serve(rsps)
        (tmp_path / "empty").mkdir()
        result = run_connector(make_settings(tmp_path / "empty"), "defender", full=True, registry=REGISTRY)
    assert result.status == "success" and result.counts["machines"]["seen"] == 0


def test_429_waits_what_retry_after_says(tmp_path: Path, recorded_sleeps: list[float]) -> None:
    with responses.RequestsMock() as rsps:
        ms_login(rsps)
        api = FakeDefender(failures={"10000": [(429, {"Retry-After": "7"})]}).serve(rsps)
        result = run_connector(make_settings(tmp_path), "defender", full=True, registry=REGISTRY)
    assert result.status == "success" and result.counts["machines"]["new"] == 4
    assert recorded_sleeps == [7.0]
    assert [q.get("$skip") for q in api.queries] == [None, ["10000"], ["10000"], ["20000"]]


def test_5xx_given_up_fails_the_run_and_marks_nothing_missing(tmp_path: Path,
                                                             recorded_sleeps: list[float]) -> None:
    settings = make_settings(tmp_path)
    with responses.RequestsMock() as rsps:
        ms_login(rsps)
        FakeDefender().serve(rsps)
        run_connector(settings, "defender", full=True, registry=REGISTRY)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        before = (list(repo.entities.iter_entities("asset")), repo.runs.get_cursors("defender"))
    recorded_sleeps.clear()
    with responses.RequestsMock() as rsps, pytest.raises(SyncFailed, match="gave up"):
        ms_login(rsps)
        api = FakeDefender(failures={"10000": [(503, {})] * 9}).serve(rsps)
        run_connector(settings, "defender", full=True, registry=REGISTRY)
    assert sum(q.get("$skip") == ["10000"] for q in api.queries) == 5  # max_attempts
    assert len(recorded_sleeps) == 4  # backoff between attempts
    with store.begin() as repo:
        after = (list(repo.entities.iter_entities("asset")), repo.runs.get_cursors("defender"))
        counts, runs = repo.entities.counts(), repo.runs.list_runs(1)
    store.close()
    assert runs[0]["status"] == "failed"
    assert counts["missing_records"] == 0 and after == before


def test_expired_token_is_refreshed_once(tmp_path: Path) -> None:
    with responses.RequestsMock() as rsps:
        ms_login(rsps, "tok-1", "tok-2")
        api = FakeDefender(reject=frozenset({"Bearer tok-1"})).serve(rsps)
        result = run_connector(make_settings(tmp_path), "defender", full=True, registry=REGISTRY)
        forms = token_posts(rsps)
    assert result.status == "success" and result.counts["machines"]["new"] == 4
    assert api.auth == ["Bearer tok-1", "Bearer tok-2", "Bearer tok-2", "Bearer tok-2"]
    assert len(forms) == 2


def test_malformed_machines_are_quarantined(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with defender_mock(False):
        result = run_connector(settings, "defender", full=True, registry=REGISTRY)
    assert result.counts["machines"] == {"seen": 7, "new": 4, "changed": 0, "unchanged": 0, "reappeared": 0,
                                         "quarantined": 3}
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        reasons = [row[5] for row in repo.quarantine.list_quarantine(result.run_id)]
    store.close()
    assert len(reasons) == 3
    assert any("no source key" in r for r in reasons)  # the machine without an id
    assert any("must be an object" in r for r in reasons)  # the null in the page
    assert any("risk_level" in r and "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567" in r for r in reasons)


def test_incremental_run_reads_every_machine_so_a_silent_sensor_is_seen(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with defender_mock(False):
        run_connector(settings, "defender", full=True, registry=REGISTRY)
    # The SQL server's sensor goes silent: healthStatus turns Inactive, and lastSeen (the last full report)
    # stays where it was. The fake honours `lastSeen gt` as documented, so a filtered run would never return it.
    page1 = fixture("machines_page1.json")
    page1["value"][1]["healthStatus"] = "Inactive"
    with responses.RequestsMock() as rsps:
        ms_login(rsps)
        api = LastSeenFilteringDefender({**PAGES, None: page1}).serve(rsps)
        result = run_connector(settings, "defender", full=False, registry=REGISTRY)
    assert result.status == "success"
    assert api.queries == [{}, {"$skip": ["10000"]}, {"$skip": ["20000"]}]  # no $filter
    assert result.counts["machines"]["changed"] == 1
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        sql = [g for _, g, _ in repo.entities.iter_entities("asset") if g.get("hostname", [None])[0] == "srv-sql-01"]
    store.close()
    assert sql[0]["edr_protected"][:2] == [False, "defender"] and sql[0]["health_state"][0] == "Inactive"


class LastSeenFilteringDefender(FakeDefender):
    """Applies `$filter=lastSeen gt <time>` the way the OData samples document it (404 when nothing is left)."""

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        query = parse_qs(urlsplit(str(request.url)).query)
        since = query.get("$filter", [""])[0].removeprefix("lastSeen gt ")
        if not since:
            return super().__call__(request)
        self.queries.append(query)
        machines = [m for page in self.pages.values() for m in (fixture(page) if isinstance(page, str) else page)[
            "value"] if isinstance(m, dict) and m.get("lastSeen", "") > since]
        if not machines:
            return 404, {}, json.dumps(fixture("machines_not_found.json"))
        return 200, {"Content-Type": "application/json"}, json.dumps({"value": machines})


def test_404_fails_the_run_and_marks_nothing_missing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with defender_mock(False):
        run_connector(settings, "defender", full=True, registry=REGISTRY)
    not_found: dict[str | None, Any] = {None: (404, fixture("machines_not_found.json"))}
    for full in (False, True):  # no filter is sent, so 404 means "no machines at all": never "nothing new"
        with responses.RequestsMock() as rsps, pytest.raises(SyncFailed, match="404"):
            ms_login(rsps)
            FakeDefender(not_found).serve(rsps)
            run_connector(settings, "defender", full=full, registry=REGISTRY)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        assert repo.entities.counts()["missing_records"] == 0
    store.close()


def test_mapping_golden() -> None:
    raw = fixture("machines_page1.json")["value"][0]
    obs = load_mapping(MAPPING).stream("machines").map(raw, "machines")
    assert obs.source_key == "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
    assert obs.observed_at == "2024-06-02T06:03:12Z"
    assert obs.fields == {
        "entra_device_id": "80fe8ff8-2624-418e-9591-41f0491218f9",
        "hostname": "lt-anna-w11",
        "fqdn": "lt-anna-w11.corp.example.com",
        "mac_addresses": ["a4b1c2d3e4f5", "00155d6e0f12"],
        "ip_addresses": ["10.20.4.17", "203.0.113.24"],
        "os_name": "Windows",
        "os_version": "Windows 11 23H2",
        "last_seen": "2024-06-02T06:03:12Z",
        "agent_version": "10.8760.22631.3737",
        "health_state": "Active",
        "risk_level": "medium",
        "tags": ["finance", "VIP"],
        "edr_protected": True,
    }


def test_edr_protected_needs_an_onboarded_active_sensor() -> None:
    stream = load_mapping(MAPPING).stream("machines")
    page2 = fixture("machines_page2.json")["value"]
    galaxy, printer = (stream.map(r, "machines").fields for r in page2)
    assert galaxy["edr_protected"] is True and galaxy["kind"] == "mobile" and "mac_addresses" not in galaxy
    assert galaxy["entra_device_id"] == "5d6e7f80-9a1b-4c2d-8e3f-4a5b6c7d8e9f"
    # Discovered by device discovery, never onboarded: seen, but not protected; all-zero Entra id dropped.
    assert printer["edr_protected"] is False and "entra_device_id" not in printer
    silent = {"id": "m1", "onboardingStatus": "Onboarded", "healthStatus": "Inactive"}
    assert stream.map(silent, "machines").fields["edr_protected"] is False
    # machine.md lists the value as `onboarded`; examples write `Onboarded`: both count.
    documented = {"id": "m2", "onboardingStatus": "onboarded", "healthStatus": "Active"}
    assert stream.map(documented, "machines").fields["edr_protected"] is True
    server = fixture("machines_page1.json")["value"][1]
    assert stream.map(server, "machines").fields["kind"] == "server"


def test_secret_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with defender_mock(False):
        run_connector(make_settings(tmp_path), "defender", full=True, registry=REGISTRY)
    assert SECRET not in caplog.text and SECRET not in repr(connector().http)
