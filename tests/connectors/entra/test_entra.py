"""The Entra ID connector over `responses` (msal discovery + token, Graph): delta cursors, paging, failures."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from itam_sync.connectors.entra.connector import EntraConnector, EntraSettings
from itam_sync.connectors.entra.managers import ManagerResolver

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import ConnectorError, StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite, record_sleeps

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
GRAPH = "https://graph.microsoft.com"
LOGIN = "https://login.microsoftonline.com"
TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
SETTINGS: dict[str, Any] = {"tenant_id": TENANT, "client_id": "11111111-2222-3333-4444-555555555555",
                            "client_secret": "s3cr3t~value"}
DELTA_D1 = f"{GRAPH}/v1.0/users/delta?$deltatoken=d1"
DELTA_D2 = f"{GRAPH}/v1.0/users/delta?$deltatoken=d2"
ANNA, LARS = "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e", "9f1c0a2b-1111-4c3d-9e8f-0a1b2c3d4e5f"
OLLE, MAJA = "c3a1b2d4-2222-4e5f-8a9b-1c2d3e4f5a6b", "e7f8a9b0-4444-4c5d-8e9f-3a4b5c6d7e8f"


def fx(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeGraph:
    """msal's OIDC discovery and token endpoint, and the Graph pages keyed by (path, skip/delta token).

    `errors[path]` is a queue of (status, headers) served first; `fail` makes every Graph call a 503.
    """

    def __init__(self, fail: bool = False, login: str = LOGIN) -> None:
        self.fail, self.login = fail, login
        self.pages: dict[tuple[str, str], Any] = {
            ("/v1.0/users/delta", ""): fx("users_delta_page1.json"),
            ("/v1.0/users/delta", "p2"): fx("users_delta_page2.json"),
            ("/v1.0/users/delta", "p3"): fx("users_delta_page3.json"),
            ("/v1.0/users/delta", "d1"): fx("users_delta_changes.json"),
            ("/v1.0/users/delta", "d2"): fx("users_delta_nochange.json"),
            ("/v1.0/devices", ""): fx("devices_page1.json"),
            ("/v1.0/devices", "RFNwdAIAAQAAAA"): fx("devices_page2.json"),
            ("/v1.0/subscribedSkus", ""): fx("subscribed_skus.json"),
            ("/v1.0/users", ""): {"value": [{"id": ANNA}]},
            # Look-ups for managers the delta pages name by id only (anything else answers 404).
            (f"/v1.0/users/{LARS}", ""): fx("user_lars_select.json"),
            (f"/v1.0/users/{ANNA}/manager", ""): fx("user_anna_manager.json"),
        }
        self.errors: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.calls: list[requests.PreparedRequest] = []
        self.tokens = 0

    def install(self, rsps: responses.RequestsMock) -> FakeGraph:
        rsps.get(f"{self.login}/{TENANT}/v2.0/.well-known/openid-configuration", json={
            "token_endpoint": f"{self.login}/{TENANT}/oauth2/v2.0/token",
            "authorization_endpoint": f"{self.login}/{TENANT}/oauth2/v2.0/authorize",
            "issuer": f"{self.login}/{TENANT}/v2.0"})
        rsps.add_callback(responses.POST, f"{self.login}/{TENANT}/oauth2/v2.0/token", callback=self.token)
        rsps.add_callback(responses.GET, re.compile(re.escape(GRAPH) + r"/v1\.0/.*"), callback=self.serve)
        return self

    def token(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.tokens += 1
        return 200, {}, json.dumps({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                                    "access_token": f"graph-token-{self.tokens}"})

    def serve(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.calls.append(request)
        url = urlsplit(str(request.url))
        q = self.query(request)
        if self.fail:
            return 503, {}, json.dumps({"error": {"code": "serviceNotAvailable", "message": "try later"}})
        if self.errors.get(url.path):
            status, headers = self.errors[url.path].pop(0)
            return status, headers, json.dumps({"error": {"code": f"E{status}", "message": "error"}})
        token = q.get("$skiptoken") or q.get("$deltatoken") or ""
        body = self.pages.get((url.path, token))
        if body is None:
            return 404, {}, json.dumps(fx("error_not_found.json"))
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    @staticmethod
    def query(request: requests.PreparedRequest) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}

    def requests_to(self, path: str) -> list[dict[str, str]]:
        return [self.query(r) for r in self.calls if urlsplit(str(r.url)).path == path]

    def lookups(self) -> list[str]:
        """Paths of the manager look-ups made (GET /users/{id} and /users/{id}/manager)."""
        paths = (urlsplit(str(r.url)).path for r in self.calls)
        return [p for p in paths if re.fullmatch(r"/v1\.0/users/[^/]+(/manager)?", p) and not p.endswith("/delta")]


def graph_mock(fail: bool) -> contextlib.AbstractContextManager[Any]:
    @contextlib.contextmanager
    def serve() -> Iterator[FakeGraph]:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps, record_sleeps():
            yield FakeGraph(fail=fail).install(rsps)
    return serve()


TestEntraConformance = conformance_suite(EntraConnector, SETTINGS, mock=graph_mock)


# ------------------------------------------------------------------------------------------ helpers

@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeGraph().install(rsps)


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp / 'entra.db'}"),
                    connectors=[ConnectorConfig(name="entra", type="entra", settings={**SETTINGS, **overrides},
                                                mapping=str(ROOT / "mappings" / "entra.yaml"))])


def run(settings: Settings, full: bool = True) -> Any:
    return run_connector(settings, "entra", full=full, registry=Registry(extra={"entra": EntraConnector}))


def connector(**overrides: Any) -> EntraConnector:
    return EntraConnector("entra", EntraSettings.model_validate({**SETTINGS, **overrides}))


def stream(conn: EntraConnector, name: str) -> Any:
    (s,) = [s for s in conn.streams() if s.name == name]
    return s


def cursors(settings: Settings) -> dict[str, Any]:
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        out = repo.runs.get_cursors("entra")
    store.close()
    return out


def golden_people(settings: Settings) -> dict[str, dict[str, Any]]:
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        # A golden record is {field: [value, source, observed_at]}.
        people = {g["email"][0]: g for _, g, _ in repo.entities.iter_entities("person") if "email" in g}
    store.close()
    return people


# -------------------------------------------------------------------------------------------- tests

def test_delta_round_follows_next_links_over_an_empty_page_and_keeps_the_delta_link(graph: FakeGraph) -> None:
    state = StreamState()
    users = list(stream(connector(), "users").records(state))
    assert [u["displayName"] for u in users] == ["Lars Ek", "Olle Svensson", "Scanner service", "Anna Berg"]
    assert state.new_cursor == DELTA_D1
    first, *rest = graph.requests_to("/v1.0/users/delta")
    # The manager is tracked by selecting it (users delta does not support $expand).
    assert "$expand" not in first
    assert {"accountEnabled", "employeeId", "department", "jobTitle", "mail", "userPrincipalName", "otherMails",
            "employeeHireDate", "employeeLeaveDateTime", "manager"} <= set(first["$select"].split(","))
    assert rest == [{"$skiptoken": "p2"}, {"$skiptoken": "p3"}]  # next links followed verbatim
    assert graph.calls[0].headers["Authorization"] == "Bearer graph-token-1" and graph.tokens == 1


def test_new_round_resolves_manager_ids_from_the_users_of_the_same_run(graph: FakeGraph) -> None:
    users = {u["id"]: u for u in stream(connector(), "users").records(StreamState())}
    # Anna's manager@delta names Lars, who comes after her: she waits until he has been read.
    assert users[ANNA]["manager"] == {"id": LARS, "mail": None, "userPrincipalName": "lars.ek@example.com"}
    assert users[OLLE]["manager"] == {"id": ANNA, "mail": "Anna.Berg@example.com",
                                      "userPrincipalName": "anna.berg@example.com"}
    assert users[LARS]["manager"] is None  # a new round names every manager: no annotation, no manager
    assert graph.lookups() == []  # nothing to look up: every manager is in the round


def test_user_added_without_manager_in_select_gets_it_anyway(graph: FakeGraph) -> None:
    # A configured property list without `manager` still tracks it: the connector adds it.
    list(stream(connector(user_properties=["id", "mail", "userPrincipalName"]), "users").records(StreamState()))
    (first, *_) = graph.requests_to("/v1.0/users/delta")
    assert first["$select"] == "id,mail,userPrincipalName,manager"


def test_devices_expand_owners_and_page(graph: FakeGraph) -> None:
    devices = list(stream(connector(), "devices").records(StreamState()))
    assert len(devices) == 3 and devices[0]["registeredOwners"][0]["userPrincipalName"] == "anna.berg@example.com"
    first, second = graph.requests_to("/v1.0/devices")
    # No $select nested in $expand: Graph does not support it on directory-object relationships.
    assert first["$expand"] == "registeredOwners" and first["$top"] == "100"
    assert second["$skiptoken"] == "RFNwdAIAAQAAAA"


def test_incremental_run_calls_the_saved_delta_link_and_maps_removed_users(graph: FakeGraph,
                                                                           tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert run(settings).status == "success"
    assert cursors(settings) == {"users": DELTA_D1}
    assert golden_people(settings)["olle.svensson@example.com"]["status"][:2] == ["active", "entra"]
    graph.calls.clear()
    result = run(settings, full=False)
    assert result.status == "success"
    (sent,) = graph.requests_to("/v1.0/users/delta")
    assert sent == {"$deltatoken": "d1"}  # the saved link verbatim, no $select added
    assert cursors(settings) == {"users": DELTA_D2}
    assert result.counts["users"]["changed"] == 2 and result.counts["users"]["new"] == 1
    assert result.counts["_total"]["missing_marked"] == 0
    people = golden_people(settings)
    anna = people["anna.berg@example.com"]
    assert anna["title"][0] == "Senior Controller" and anna["department"][0] == "Group Finance"
    # Olle was deleted in Entra: the delta's @removed entry (id only) makes the same person terminated.
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        by_idp = {g["idp_user_id"][0]: g for _, g, _ in repo.entities.iter_entities("person")}
    store.close()
    assert by_idp[OLLE]["status"][:2] == ["terminated", "entra"]
    assert sorted(by_idp) == sorted([ANNA, LARS, OLLE, MAJA])  # the removed entry made no new person


def test_incremental_run_keeps_and_resolves_managers_not_in_its_pages(graph: FakeGraph, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert run(settings).status == "success"
    assert golden_people(settings)["anna.berg@example.com"]["manager"][:2] == ["lars.ek@example.com", "entra"]
    graph.calls.clear()
    assert run(settings, full=False).status == "success"
    people = golden_people(settings)
    # Anna changed title but not manager, so her record carries no manager@delta: her manager is read with
    # GET /users/{id}/manager instead of being dropped. Maja is new and names Lars, who is not in this
    # round: one GET /users/{id} turns his id into his address.
    assert people["anna.berg@example.com"]["manager"][:2] == ["lars.ek@example.com", "entra"]
    assert people["maja.lind@example.com"]["manager"][:2] == ["lars.ek@example.com", "entra"]
    assert sorted(graph.lookups()) == sorted([f"/v1.0/users/{ANNA}/manager", f"/v1.0/users/{LARS}"])
    assert graph.requests_to(f"/v1.0/users/{LARS}") == [{"$select": "id,mail,userPrincipalName"}]


def test_delta_round_needing_too_many_lookups_is_replaced_by_a_new_round(graph: FakeGraph) -> None:
    state = StreamState(cursor=DELTA_D1, full=False)
    users = list(stream(connector(manager_lookups=1), "users").records(state))
    # The delta round needs two look-ups (Anna's manager, Maja's manager by id), the cap is one: nothing of
    # it reaches the engine; a new round is read instead, whose managers are all among its own users.
    assert [u["displayName"] for u in users] == ["Lars Ek", "Olle Svensson", "Scanner service", "Anna Berg"]
    assert [q.get("$deltatoken") or q.get("$skiptoken") or "first" for q in graph.requests_to(
        "/v1.0/users/delta")] == ["d1", "first", "p2", "p3"]
    assert graph.lookups() == [] and state.new_cursor == DELTA_D1


def test_removed_and_missing_managers_leave_the_manager_empty(graph: FakeGraph) -> None:
    conn = connector()
    gone = "0f0f0f0f-5555-4a4a-8b8b-9c9c9c9c9c9c"  # not a user any more: GET /users/{id} answers 404
    round_ = [
        # A manager taken away: the annotation's entry carries @removed (microsoft/api-guidelines
        # change-tracking pattern, `property@delta` with `@removed`).
        {"id": ANNA, "mail": "anna.berg@example.com", "manager@delta": [
            {"@odata.type": "#microsoft.graph.user", "id": LARS, "@removed": {"reason": "deleted"}}]},
        {"id": MAJA, "mail": "maja.lind@example.com", "manager@delta": [
            {"@odata.type": "#microsoft.graph.user", "id": gone}]},
        None]
    out = list(ManagerResolver(conn.http, 10, "entra").new_round(round_))
    assert out[0]["manager"] is None and out[1] is None
    assert out[2]["manager"] == {"id": gone, "mail": None, "userPrincipalName": None}
    assert graph.lookups() == [f"/v1.0/users/{gone}"]
    assert load_mapping(MAPPING).stream("users").map(out[2]).fields.get("manager") is None


def test_expired_delta_link_starts_a_new_round_in_the_same_run(graph: FakeGraph) -> None:
    graph.errors["/v1.0/users/delta"] = [(410, {})]
    state = StreamState(cursor=DELTA_D1, full=False)
    users = list(stream(connector(), "users").records(state))
    assert len(users) == 4 and state.new_cursor == DELTA_D1 and graph.lookups() == []
    assert [q.get("$deltatoken") or q.get("$skiptoken") or "first" for q in graph.requests_to(
        "/v1.0/users/delta")] == ["d1", "first", "p2", "p3"]


def test_delta_link_for_another_graph_host_is_not_followed(graph: FakeGraph) -> None:
    state = StreamState(cursor="https://graph.microsoft.us/v1.0/users/delta?$deltatoken=zz", full=False)
    assert len(list(stream(connector(), "users").records(state))) == 4
    assert "$select" in graph.requests_to("/v1.0/users/delta")[0]


def test_429_waits_retry_after(graph: FakeGraph, recorded_sleeps: list[float]) -> None:
    graph.errors["/v1.0/subscribedSkus"] = [(429, {"Retry-After": "7"})]
    skus = list(stream(connector(), "subscribed_skus").records(StreamState()))
    assert [s["skuPartNumber"] for s in skus] == ["SPE_E3", "FLOW_FREE"]
    assert recorded_sleeps == [7.0]


def test_5xx_gives_up_fails_the_run_and_marks_nothing_missing(tmp_path: Path, recorded_sleeps: list[float]) -> None:
    settings = make_settings(tmp_path)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeGraph().install(rsps)
        assert run(settings).status == "success"
    before = cursors(settings)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeGraph().install(rsps)
        fake.errors["/v1.0/devices"] = [(502, {})] * 10
        with pytest.raises(SyncFailed, match=r"gave up on GET \S*/v1.0/devices\S* after 5 attempts"):
            run(settings)
    assert len(fake.requests_to("/v1.0/devices")) == 5 and len(recorded_sleeps) == 4
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        counts, last = repo.entities.counts(), repo.runs.list_runs(1)[0]
    store.close()
    assert last["status"] == "failed" and counts["missing_records"] == 0
    assert cursors(settings) == before  # the users stream finished, but its new delta link was not saved


def test_401_gets_a_new_token_from_msal_and_succeeds(graph: FakeGraph) -> None:
    graph.errors["/v1.0/subscribedSkus"] = [(401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})]
    skus = list(stream(connector(), "subscribed_skus").records(StreamState()))
    assert len(skus) == 2 and graph.tokens == 2
    assert [c.headers["Authorization"] for c in graph.calls] == ["Bearer graph-token-1", "Bearer graph-token-2"]


def test_refused_client_secret_is_a_config_error_naming_the_fix() -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeGraph().install(rsps)
        rsps.replace(responses.POST, f"{LOGIN}/{TENANT}/oauth2/v2.0/token", status=401, json={
            "error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.\r\n"
            "Trace ID: 1"})
        with pytest.raises(ConnectorError, match="invalid_client: AADSTS7000215") as err:
            connector().check()
    assert err.value.kind == "config" and "s3cr3t" not in str(err.value)


def test_national_cloud_hosts_are_settings() -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeGraph(login="https://login.microsoftonline.us").install(rsps)
        rsps.add_callback(responses.GET, re.compile(r"https://graph\.microsoft\.us/v1\.0/.*"), callback=fake.serve)
        conn = connector(authority_host="https://login.microsoftonline.us", graph_url="https://graph.microsoft.us")
        assert conn.check() == {"users": 1, "devices": 1, "subscribed_skus": 1}
    assert all(str(c.url).startswith("https://graph.microsoft.us/") for c in fake.calls)
    assert fake.tokens == 1


def test_malformed_user_is_quarantined(graph: FakeGraph, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    result = run(settings)
    assert result.counts["users"]["quarantined"] == 1 and result.counts["users"]["new"] == 3
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        (row,) = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert row[3:5] == ("users", "d4e5f6a7-3333-4b5c-9d0e-2f3a4b5c6d7e") and "31/02/2021" in row[5]


def test_check_names_the_missing_permission_on_403(graph: FakeGraph) -> None:
    graph.errors["/v1.0/devices"] = [(403, {})]
    with pytest.raises(ConnectorError, match="Device.Read.All") as err:
        connector().check()
    assert err.value.kind == "config"


# ----------------------------------------------------------------------------------- mapping golden

MAPPING = ROOT / "mappings" / "entra.yaml"


def mapped(stream_name: str, record: dict[str, Any]) -> dict[str, Any]:
    obs = load_mapping(MAPPING).stream(stream_name).map(record)
    return {"key": obs.source_key, "observed_at": obs.observed_at, **obs.fields}


def test_mapping_user_golden(graph: FakeGraph) -> None:
    users = {u["id"]: u for u in stream(connector(), "users").records(StreamState())}  # as the engine sees them
    assert mapped("users", users[ANNA]) == {
        "key": ANNA, "observed_at": None, "employee_id": "E10442",
        "email": "anna.berg@example.com",
        "email_aliases": ["anna.berg@example.com", "anna.berg@example.onmicrosoft.com"],
        "display_name": "Anna Berg", "department": "Finance", "title": "Controller", "manager": "lars.ek@example.com",
        "location": "Stockholm HQ", "status": "active", "start_date": "2021-03-01", "idp_user_id": ANNA}
    lars = mapped("users", users[LARS])
    assert lars["status"] == "suspended" and lars["end_date"] == "2024-06-30" and "manager" not in lars
    assert mapped("users", users[OLLE])["manager"] == "anna.berg@example.com"
    removed = fx("users_delta_changes.json")["value"][2]
    assert mapped("users", removed) == {"key": OLLE, "observed_at": None, "status": "terminated", "idp_user_id": OLLE}


def test_mapping_device_golden() -> None:
    laptop, phone, kiosk = fx("devices_page1.json")["value"] + fx("devices_page2.json")["value"]
    assert mapped("devices", laptop) == {
        "key": "1b2c3d4e-aaaa-4bbb-8ccc-0d1e2f3a4b5c", "observed_at": "2024-06-03T07:12:44Z",
        "entra_device_id": "7e3a9b1c-5d2f-4a6b-9c8d-1e2f3a4b5c6d", "hostname": "lt-anna-w11",
        "manufacturer": "LENOVO", "model": "20XW0026MX", "os_name": "Windows", "os_version": "10.0.22631.3593",
        "assigned_to": "anna.berg@example.com", "last_seen": "2024-06-03T07:12:44Z", "mdm_managed": True,
        "compliance_state": "compliant"}
    iphone = mapped("devices", phone)
    assert (iphone["kind"], iphone["os_name"], iphone["assigned_to"], "hostname" in iphone) == (
        "mobile", "iOS", "lars.ek@example.com", False)
    k = mapped("devices", kiosk)
    assert "entra_device_id" not in k and "last_seen" not in k and k["compliance_state"] == "noncompliant"


def test_mapping_sku_golden() -> None:
    e3, _ = fx("subscribed_skus.json")["value"]
    assert mapped("subscribed_skus", e3) == {
        "key": "05e9a617-0261-4cee-bb44-138d3ef5d965", "observed_at": None, "product": "SPE_E3",
        "vendor": "Microsoft", "sku_id": "05e9a617-0261-4cee-bb44-138d3ef5d965", "seats_purchased": 450,
        "seats_assigned": 412}
