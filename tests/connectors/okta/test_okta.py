"""The Okta connector over `responses`: paging, throttling, failures, token refresh, cursors, mapping."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from itam_sync.connectors.okta.connector import OktaConnector, OktaSettings
from pydantic import ValidationError

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import BadRecord, ConnectorError, StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite, record_sleeps

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
ORG = "https://acme.okta.com"
TOKEN_URL = f"{ORG}/oauth2/v1/token"
SETTINGS: dict[str, Any] = {"org_url": ORG, "api_token": "00abcSSWStoken"}


def fx(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def routes() -> dict[str, list[Any]]:
    """Path -> its pages, as the fake org serves them."""
    return {
        "/api/v1/users": [fx("users_page1.json"), fx("users_page2.json"), fx("users_page3.json")],
        "/api/v1/devices": [fx("devices_page1.json"), fx("devices_page2.json")],
        "/api/v1/apps": [fx("apps.json")],
        "/api/v1/apps/0oa1slack000000000001/users": [fx("app_users_slack_page1.json"),
                                                     fx("app_users_slack_page2.json")],
        "/api/v1/apps/0oa3zoom000000000003/users": [fx("app_users_zoom.json")],
    }


class FakeOkta:
    """A fake org: serves each path's pages chained by Link headers (`after=<page index>`), like Okta.

    `errors[path]` is a queue of (status, headers) served before the real pages; `fail` makes every call a 500.
    """

    def __init__(self, pages: dict[str, list[Any]] | None = None, fail: bool = False) -> None:
        self.pages = routes() if pages is None else pages
        self.fail = fail
        self.errors: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.calls: list[requests.PreparedRequest] = []

    def install(self, rsps: responses.RequestsMock) -> FakeOkta:
        rsps.add_callback(responses.GET, re.compile(re.escape(ORG) + r"/api/v1/.*"), callback=self.serve)
        return self

    def serve(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.calls.append(request)
        url = urlsplit(str(request.url))
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        headers = {"X-Rate-Limit-Limit": "600", "X-Rate-Limit-Remaining": "598",
                   "X-Rate-Limit-Reset": str(int(time.time()) + 60), "Content-Type": "application/json"}
        if self.fail:
            return 500, headers, json.dumps({"errorCode": "E0000009", "errorSummary": "Internal Server Error"})
        if self.errors.get(url.path):
            status, extra = self.errors[url.path].pop(0)
            return status, {**headers, **extra}, json.dumps({"errorCode": "E0000047", "errorSummary": "error"})
        pages = self.pages.get(url.path)
        if pages is None:
            return 404, headers, json.dumps({"errorCode": "E0000007", "errorSummary": "Not found"})
        index = int(query.get("after", "0"))
        links = [f'<{request.url}>; rel="self"']
        if index + 1 < len(pages):
            links.append(f'<{ORG}{url.path}?{urlencode({**query, "after": str(index + 1)})}>; rel="next"')
        return 200, {**headers, "Link": ", ".join(links)}, json.dumps(pages[index])

    def requests_to(self, path: str) -> list[dict[str, str]]:
        """Query params of every request made to `path`, in order."""
        out = []
        for r in self.calls:
            u = urlsplit(str(r.url))
            if u.path == path:
                out.append({k: v[0] for k, v in parse_qs(u.query).items()})
        return out


def okta_mock(fail: bool) -> contextlib.AbstractContextManager[Any]:
    @contextlib.contextmanager
    def serve() -> Iterator[FakeOkta]:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps, record_sleeps():
            yield FakeOkta(fail=fail).install(rsps)
    return serve()


TestOktaConformance = conformance_suite(OktaConnector, SETTINGS, mock=okta_mock)


# ------------------------------------------------------------------------------------------ helpers

@pytest.fixture
def okta() -> Iterator[tuple[responses.RequestsMock, FakeOkta]]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps, FakeOkta().install(rsps)


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp / 'okta.db'}"),
                    connectors=[ConnectorConfig(name="okta-prod", type="okta", settings={**SETTINGS, **overrides},
                                                mapping=str(ROOT / "mappings" / "okta.yaml"))])


def run(settings: Settings, full: bool = True) -> Any:
    return run_connector(settings, "okta-prod", full=full, registry=Registry(extra={"okta": OktaConnector}))


def connector(**overrides: Any) -> OktaConnector:
    return OktaConnector("okta-prod", OktaSettings.model_validate({**SETTINGS, **overrides}))


def pull(conn: OktaConnector, stream: str, state: StreamState | None = None) -> list[Any]:
    (s,) = [s for s in conn.streams() if s.name == stream]
    return list(s.records(state or StreamState()))


def rsa_pem() -> tuple[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return pem, key.public_key()


# -------------------------------------------------------------------------------------------- tests

def test_users_follow_link_pages_across_an_empty_page_and_include_deprovisioned(okta: Any) -> None:
    _, fake = okta
    users = pull(connector(), "users")
    assert [u.get("id") for u in users] == ["00u1abcd2EFGH3ijk4l5", "00u2bcde3FGHI4jkl5m6",
                                            "00u3cdef4GHIJ5klm6n7", None]
    sent = fake.requests_to("/api/v1/users")
    assert len(sent) == 3 and [q.get("after") for q in sent] == [None, "1", "2"]
    # An unfiltered list omits DEPROVISIONED users: a full run filters on lastUpdated from the epoch.
    assert sent[0] == {"limit": "200", "filter": 'lastUpdated ge "1970-01-01T00:00:00.000Z"'}
    assert fake.calls[0].headers["Authorization"] == "SSWS 00abcSSWStoken"


def test_empty_stream_is_no_records_not_an_error(okta: Any) -> None:
    _, fake = okta
    fake.pages["/api/v1/devices"] = [[]]
    assert pull(connector(), "devices") == []
    assert fake.requests_to("/api/v1/devices") == [{"limit": "200", "expand": "user"}]


def test_apps_count_assignments_over_pages_and_skip_built_in_apps(okta: Any) -> None:
    _, fake = okta
    apps = pull(connector(), "apps")
    assert [a["label"] for a in apps] == ["Slack ", "Zoom"]  # saasure (the admin console) is skipped
    slack, zoom = apps
    assert slack["_assignments"] == {"count": 3, "emails": ["anna.berg@example.com", "lars.ek@example.com",
                                                            "olle.svensson@example.com"]}
    assert zoom["_assignments"] == {"count": 0, "emails": []}
    assert fake.requests_to("/api/v1/apps") == [{"limit": "200", "filter": 'status eq "ACTIVE"'}]
    assert fake.requests_to("/api/v1/apps/0oa1slack000000000001/users")[0] == {"limit": "500", "expand": "user"}


def test_apps_over_max_assignees_keep_the_count_but_no_partial_list(okta: Any) -> None:
    apps = pull(connector(max_assignees=2), "apps")
    assert apps[0]["_assignments"] == {"count": 3}
    assert load_mapping(ROOT / "mappings" / "okta.yaml").stream("apps").map(apps[0]).fields == {
        "product": "Slack", "seats_assigned": 3}


def test_app_without_id_is_a_bad_record(okta: Any) -> None:
    _, fake = okta
    fake.pages["/api/v1/apps"] = [[{"name": "broken", "label": "Broken"}, fx("apps.json")[2]]]
    got = pull(connector(), "apps")
    assert isinstance(got[0], BadRecord) and "without an id" in got[0].reason
    assert got[1]["id"] == "0oa3zoom000000000003"


def test_429_waits_until_the_okta_reset_time(okta: Any, recorded_sleeps: list[float]) -> None:
    _, fake = okta
    reset = int(time.time()) + 30
    fake.errors["/api/v1/users"] = [(429, {"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(reset)})]
    users = pull(connector(), "users")
    assert len(users) == 4
    assert len(recorded_sleeps) == 1 and 27 <= recorded_sleeps[0] <= 30


def test_5xx_gives_up_fails_the_run_and_marks_nothing_missing(tmp_path: Path, recorded_sleeps: list[float]) -> None:
    settings = make_settings(tmp_path)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeOkta().install(rsps)
        assert run(settings).status == "success"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeOkta().install(rsps)
        fake.errors["/api/v1/devices"] = [(503, {})] * 10
        gave_up = r"gave up on GET \S*/api/v1/devices\S* after 5 attempts \(last: HTTP 503\)"
        with pytest.raises(SyncFailed, match=gave_up):
            run(settings)
    assert len(fake.requests_to("/api/v1/devices")) == 5 and len(recorded_sleeps) == 4
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        counts, last = repo.entities.counts(), repo.runs.list_runs(1)[0]
    store.close()
    assert last["status"] == "failed" and counts["missing_records"] == 0
    assert counts["source_records"] == 3 + 3 + 2  # the first run's records, all still live


def test_expired_oauth_token_is_refreshed_with_a_fresh_client_assertion(okta: Any) -> None:
    rsps, fake = okta
    pem, public_key = rsa_pem()
    forms: list[dict[str, str]] = []

    def token(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        forms.append({k: v[0] for k, v in parse_qs(str(request.body)).items()})
        return 200, {}, json.dumps({"token_type": "Bearer", "expires_in": 3600,
                                    "access_token": f"tok-{len(forms)}", "scope": "okta.users.read"})

    rsps.add_callback(responses.POST, TOKEN_URL, callback=token)
    fake.errors["/api/v1/users"] = [(401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})]
    conn = connector(api_token=None, client_id="0oaservice123", private_key=pem, key_id="kid-1")
    assert len(pull(conn, "users")) == 4
    assert [c.headers["Authorization"] for c in fake.calls[:2]] == ["Bearer tok-1", "Bearer tok-2"]
    assert len(forms) == 2
    claims = []
    for form in forms:
        assert form["grant_type"] == "client_credentials" and form["client_id"] == "0oaservice123"
        assert form["scope"] == "okta.users.read okta.devices.read okta.apps.read"
        assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        assert jwt.get_unverified_header(form["client_assertion"])["kid"] == "kid-1"
        claims.append(jwt.decode(form["client_assertion"], public_key, algorithms=["RS256"], audience=TOKEN_URL))
    assert all(c["iss"] == c["sub"] == "0oaservice123" for c in claims)
    assert claims[0]["jti"] != claims[1]["jti"]  # Okta refuses a replayed assertion


def test_static_api_token_401_fails_at_once_as_a_config_error(okta: Any) -> None:
    _, fake = okta
    fake.errors["/api/v1/users"] = [(401, {})]
    with pytest.raises(ConnectorError, match="authentication failed") as err:
        pull(connector(), "users")
    assert err.value.kind == "config" and len(fake.calls) == 1


def test_malformed_user_is_quarantined_and_the_rest_synced(okta: Any, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    result = run(settings)
    assert result.status == "success"
    assert result.counts["users"]["quarantined"] == 1 and result.counts["users"]["new"] == 3
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        (row,) = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert row[2:4] == ("okta-prod", "users") and "no source key" in row[5]


def test_incremental_run_sends_the_saved_cursor(okta: Any, tmp_path: Path) -> None:
    _, fake = okta
    settings = make_settings(tmp_path)
    run(settings)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        cursors = repo.runs.get_cursors("okta-prod")
    store.close()
    # The newest lastUpdated of a mapped record: the quarantined one (09:00) does not move the cursor.
    assert cursors == {"users": "2024-06-02T08:15:00.000Z", "devices": "2024-06-01T17:40:11.000Z"}
    fake.calls.clear()
    assert run(settings, full=False).status == "success"
    assert fake.requests_to("/api/v1/users")[0] == {"limit": "200",
                                                    "filter": 'lastUpdated ge "2024-06-02T08:15:00.000Z"'}
    assert fake.requests_to("/api/v1/devices")[0] == {"limit": "200", "expand": "user",
                                                      "search": 'lastUpdated ge "2024-06-01T17:40:11.000Z"'}


def test_check_names_the_missing_scope_on_403(okta: Any) -> None:
    _, fake = okta
    assert connector().check() == {"users": 1, "devices": 1, "apps": 1}
    fake.errors["/api/v1/devices"] = [(403, {})]
    with pytest.raises(ConnectorError, match="okta.devices.read") as err:
        connector().check()
    assert err.value.kind == "config"


@pytest.mark.parametrize("overrides, problem", [
    ({"api_token": None}, "set exactly one of"),
    ({"access_token": "abc"}, "set exactly one of"),
    ({"api_token": None, "client_id": "0oa1"}, "needs private_key"),
    ({"page_size": 500}, "less than or equal to 200"),
])
def test_settings_are_validated(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        OktaSettings.model_validate({**SETTINGS, **overrides})


def test_bad_private_key_is_a_config_error_without_echoing_it(okta: Any) -> None:
    conn = connector(api_token=None, client_id="0oa1", private_key="not-a-pem-secret")
    with pytest.raises(ConnectorError, match="PEM") as err:
        pull(conn, "users")
    assert "not-a-pem-secret" not in str(err.value)


# ----------------------------------------------------------------------------------- mapping golden

MAPPING = ROOT / "mappings" / "okta.yaml"


def mapped(stream: str, record: dict[str, Any]) -> dict[str, Any]:
    obs = load_mapping(MAPPING).stream(stream).map(record)
    return {"key": obs.source_key, "observed_at": obs.observed_at, **obs.fields}


def test_mapping_user_golden() -> None:
    anna, lars = fx("users_page1.json")
    assert mapped("users", anna) == {
        "key": "00u1abcd2EFGH3ijk4l5", "observed_at": "2024-06-01T17:40:11Z",
        "employee_id": "E10442", "email": "anna.berg@example.com", "email_aliases": ["anna.berg@example.com"],
        "display_name": "Anna Berg", "department": "Finance", "title": "Controller",
        "status": "active", "idp_user_id": "00u1abcd2EFGH3ijk4l5", "last_login": "2024-06-03T06:58:12Z"}
    assert mapped("users", lars)["status"] == "suspended"
    assert mapped("users", lars)["display_name"] == "Lars Ek"
    assert mapped("users", fx("users_page3.json")[0])["status"] == "terminated"


def test_mapping_device_golden() -> None:
    mac, iphone, windows = fx("devices_page1.json") + fx("devices_page2.json")
    assert mapped("devices", mac) == {
        "key": "guo4a5u7JHHhjXrMK0g4", "observed_at": "2024-06-01T17:40:11Z",
        "serial_number": "C02FK1ABQ6L4", "udid": "7B1D2C3E-4F50-4A6B-8C9D-0E1F2A3B4C5D", "manufacturer": "APPLE",
        "model": "MacBookPro18,3", "os_name": "macOS", "os_version": "14.5.0",
        "assigned_to": "anna.berg@example.com", "mdm_managed": True}
    phone = mapped("devices", iphone)
    assert (phone["kind"], phone["imei"], phone["mdm_managed"], phone["assigned_to"]) == (
        "mobile", "351234567890123", False, "lars.ek@example.com")
    pc = mapped("devices", windows)
    assert "assigned_to" not in pc and pc["os_name"] == "Windows" and "kind" not in pc


def test_mapping_app_golden() -> None:
    slack = {**fx("apps.json")[0], "_assignments": {"count": 3, "emails": ["Anna.Berg@example.com", "x"]}}
    assert mapped("apps", slack) == {"key": "0oa1slack000000000001", "observed_at": "2024-03-01T10:00:00Z",
                                     "product": "Slack", "seats_assigned": 3,
                                     "assignees": ["anna.berg@example.com"]}
