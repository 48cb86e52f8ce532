"""The Google Workspace connector over httplib2 fakes (HttpMockSequence and a routing fake) and the engine.

The default settings read all four streams: the three Directory lists and the Cloud Identity company inventory."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import google.auth.jwt
import httplib2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from googleapiclient.http import HttpMockSequence
from itam_sync.connectors.google_workspace.connector import SCOPES, GoogleWorkspaceConnector, GoogleWorkspaceSettings
from pydantic import ValidationError

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import ConnectorError, StreamState
from itam_sync.sdk.errors import HttpError
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
TOKEN_URI = "https://oauth2.googleapis.com/token"
USERS = "/admin/directory/v1/users"
CHROMEOS = "/admin/directory/v1/customer/my_customer/devices/chromeos"
MOBILE = "/admin/directory/v1/customer/my_customer/devices/mobile"
COMPANY = "/v1/devices"  # Cloud Identity, on cloudidentity.googleapis.com

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SA_INFO = {
    "type": "service_account", "project_id": "itam-test", "private_key_id": "0123456789abcdef",
    "private_key": _KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode(),
    "client_email": "itam-sync@itam-test.iam.gserviceaccount.com", "client_id": "101234567890123456789",
    "token_uri": TOKEN_URI}
SETTINGS: dict[str, Any] = {"credentials_json": json.dumps(SA_INFO), "subject": "itam-reader@example.com",
                            "company_devices": True}


def fx(name: str) -> str:
    return (FIXTURES / name).read_text()


def ok(body: str | dict[str, Any]) -> tuple[dict[str, str], str]:
    return {"status": "200", "content-type": "application/json"}, body if isinstance(body, str) else json.dumps(body)


def error(status: int, reason: str = "backendError") -> tuple[dict[str, str], str]:
    return ({"status": str(status), "content-type": "application/json"},
            json.dumps({"error": {"code": status, "message": reason, "errors": [{"reason": reason}]}}))


def token(n: int = 1) -> tuple[dict[str, str], str]:
    return ok({"access_token": f"ya29.token-{n}", "expires_in": 3599, "token_type": "Bearer"})


class FakeGoogle:
    """An httplib2 stand-in routing by (path, pageToken): the token endpoint, the three Directory lists and the
    Cloud Identity devices list."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.pages: dict[tuple[str, str], str] = {
            (USERS, ""): fx("users_page1.json"), (USERS, "Q0FFU0VnRWlBRUFBRmdBQUFB"): fx("users_page2.json"),
            (CHROMEOS, ""): fx("chromeos_page1.json"),
            (CHROMEOS, "CiQ4YTNjMWQyZS1hYWFhLTRiNWMtOWQwZS0xZjJhM2I0YzVkNmU"): fx("chromeos_page2.json"),
            (CHROMEOS, "CiQzMzMz"): fx("chromeos_page3.json"),
            (MOBILE, ""): fx("mobile_page1.json"),
            (COMPANY, ""): fx("company_devices_page1.json"), (COMPANY, "Q0lEMg"): fx("company_devices_page2.json"),
        }
        self.request_sequence: list[tuple[str, str, Any, dict[str, str]]] = []
        self.tokens = 0

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None,
                redirections: int = 5, connection_type: Any = None) -> tuple[httplib2.Response, bytes]:
        self.request_sequence.append((uri, method, body, headers or {}))
        url = urlsplit(uri)
        if uri == TOKEN_URI:
            self.tokens += 1
            head, content = token(self.tokens)
        elif self.fail:
            head, content = error(503)
        else:
            page = self.pages.get((url.path, parse_qs(url.query).get("pageToken", [""])[0]))
            head, content = ok(page) if page is not None else error(404, "Resource Not Found: customer")
        return httplib2.Response(head), content.encode()

    def queries(self, path: str) -> list[dict[str, str]]:
        return [{k: v[0] for k, v in parse_qs(urlsplit(u).query).items()}
                for u, *_ in self.request_sequence if urlsplit(u).path == path]


@contextlib.contextmanager
def transport(http: Any) -> Iterator[list[float]]:
    """Serve every connector's requests from `http`; the client's backoff sleeps go into the list."""
    sleeps: list[float] = []
    with mock.patch.object(GoogleWorkspaceConnector, "transport", lambda self: http), \
            mock.patch("googleapiclient.http.time.sleep", sleeps.append):
        yield sleeps


def google_mock(fail: bool) -> contextlib.AbstractContextManager[Any]:
    return transport(FakeGoogle(fail=fail))


TestGoogleWorkspaceConformance = conformance_suite(GoogleWorkspaceConnector, SETTINGS, mock=google_mock)


# ------------------------------------------------------------------------------------------ helpers

def connector(**overrides: Any) -> GoogleWorkspaceConnector:
    return GoogleWorkspaceConnector("gws", GoogleWorkspaceSettings.model_validate({**SETTINGS, **overrides}))


def pull(name: str, **overrides: Any) -> list[Any]:
    conn = connector(**overrides)
    (s,) = [s for s in conn.streams() if s.name == name]
    try:
        return list(s.records(StreamState()))
    finally:
        conn.close()


def make_settings(tmp: Path) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp / 'gws.db'}"),
                    connectors=[ConnectorConfig(name="gws", type="google_workspace", settings=SETTINGS,
                                                mapping=str(ROOT / "mappings" / "google_workspace.yaml"))])


def run(settings: Settings, full: bool = True) -> Any:
    return run_connector(settings, "gws", full=full,
                         registry=Registry(extra={"google_workspace": GoogleWorkspaceConnector}))


def auth_headers(http: Any) -> list[str]:
    return [h.get("authorization", "") for u, _, _, h in http.request_sequence if u != TOKEN_URI]


# -------------------------------------------------------------------------------------------- tests

def test_pages_follow_next_page_token_to_an_empty_last_page() -> None:
    fake = FakeGoogle()
    with transport(fake):
        users = pull("users")
        devices = pull("chromeos_devices")
    assert [u.get("primaryEmail") for u in users] == ["anna.berg@example.com", "lars.ek@example.com",
                                                      "olle.svensson@example.com", "broken@example.com"]
    first, second = fake.queries(USERS)
    assert first == {"customer": "my_customer", "maxResults": "500", "projection": "full", "alt": "json"}
    assert second == {**first, "pageToken": "Q0FFU0VnRWlBRUFBRmdBQUFB"}
    assert [d["deviceId"] for d in devices] == ["8a3c1d2e-aaaa-4b5c-9d0e-1f2a3b4c5d6e",
                                                "1f2e3d4c-bbbb-4a5b-8c9d-0e1f2a3b4c5d"]
    assert len(fake.queries(CHROMEOS)) == 3  # the third page has no items key and no token: the end
    assert fake.queries(CHROMEOS)[0]["projection"] == "BASIC"


def test_service_account_token_is_a_delegated_jwt_grant() -> None:
    fake = FakeGoogle()
    with transport(fake):
        pull("mobile_devices")
    (uri, method, body, _), *_ = fake.request_sequence
    assert (uri, method) == (TOKEN_URI, "POST")
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = google.auth.jwt.decode(form["assertion"], verify=False)
    assert claims["sub"] == "itam-reader@example.com" and claims["aud"] == TOKEN_URI
    assert set(claims["scope"].split()) == set(SCOPES.values())
    assert auth_headers(fake) == ["Bearer ya29.token-1"]


def test_empty_list_without_items_key_is_no_records() -> None:
    with transport(HttpMockSequence([token(), ok(fx("users_empty.json"))])):
        assert pull("users") == []


def test_429_is_retried_with_the_clients_backoff() -> None:
    http = HttpMockSequence([token(), error(429, "rateLimitExceeded"), error(403, "userRateLimitExceeded"),
                             ok(fx("mobile_page1.json"))])
    with transport(http) as sleeps:
        devices = pull("mobile_devices")
    assert len(devices) == 2
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 2 and 0 <= sleeps[1] <= 4  # random * 2^attempt


def test_persistent_5xx_fails_the_run_and_marks_nothing_missing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with transport(FakeGoogle()):
        assert run(settings).status == "success"
    failing = FakeGoogle(fail=True)
    with transport(failing) as sleeps, pytest.raises(SyncFailed, match="HTTP 503 .* gave up after 5 retries"):
        run(settings)
    assert len(failing.queries(USERS)) == 6 and len(sleeps) == 5  # 1 try + num_retries
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        counts, last = repo.entities.counts(), repo.runs.list_runs(1)[0]
    store.close()
    assert last["status"] == "failed" and counts["missing_records"] == 0 and counts["source_records"] == 10


def test_401_refreshes_the_token_and_succeeds() -> None:
    http = HttpMockSequence([token(1), error(401, "Invalid Credentials"), token(2), ok(fx("mobile_page1.json"))])
    with transport(http):
        assert len(pull("mobile_devices")) == 2
    assert auth_headers(http) == ["Bearer ya29.token-1", "Bearer ya29.token-2"]


def test_delegation_not_authorised_is_a_config_error_naming_the_scopes() -> None:
    refused = ({"status": "401", "content-type": "application/json"},
               json.dumps({"error": "unauthorized_client", "error_description": "Client is unauthorized to retrieve "
                           "access tokens using this method, or client not authorized for any of the scopes "
                           "requested."}))
    with transport(HttpMockSequence([refused])), pytest.raises(ConnectorError, match="Domain-wide") as err:
        pull("users")
    assert err.value.kind == "config" and SCOPES["users"] in str(err.value)


def test_check_names_the_scope_on_403() -> None:
    http = HttpMockSequence([token(), ok(fx("users_page1.json")), error(403, "Not Authorized to access this "
                                                                             "resource/api")])
    with transport(http), pytest.raises(ConnectorError, match="device.chromeos.readonly") as err:
        connector().check()
    assert err.value.kind == "config"


def test_malformed_page_is_an_error_not_an_empty_list() -> None:
    with transport(HttpMockSequence([token(), ok({"kind": "admin#directory#users", "users": {"oops": 1}})])), \
            pytest.raises(HttpError, match="malformed page"):
        pull("users")


def test_malformed_user_is_quarantined(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with transport(FakeGoogle()):
        result = run(settings)
    assert result.counts["users"]["quarantined"] == 1 and result.counts["users"]["new"] == 3
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        (row,) = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert row[3] == "users" and "no source key" in row[5]


def test_incremental_run_rereads_everything_and_marks_nothing_missing(tmp_path: Path) -> None:
    """The Directory API has no changed-since filter: no cursor is saved, and an incremental run is a full read
    that cannot tell what vanished (only full runs mark missing)."""
    settings = make_settings(tmp_path)
    with transport(FakeGoogle()):
        run(settings)
    fake = FakeGoogle()
    fake.pages[(MOBILE, "")] = json.dumps({"kind": "admin#directory#mobiledevices"})  # both phones gone
    with transport(fake):
        result = run(settings, full=False)
    assert result.status == "success" and result.counts["_total"]["missing_marked"] == 0
    assert fake.queries(USERS)[0].get("pageToken") is None and len(fake.queries(USERS)) == 2
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        assert repo.runs.get_cursors("gws") == {}
    store.close()


def test_endpoints_are_settings() -> None:
    fake_token = "https://oauth2.example.test/token"
    http = HttpMockSequence([token(), ok(fx("users_empty.json"))])
    with transport(http):
        pull("users", root_url="https://admin.example.test/", token_uri=fake_token, customer="C03az79cb")
    (token_call, users_call) = http.request_sequence
    assert token_call[0] == fake_token
    assert users_call[0].startswith("https://admin.example.test/admin/directory/v1/users?customer=C03az79cb")


def test_settings_need_exactly_one_key_and_a_bad_key_is_not_echoed() -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        GoogleWorkspaceSettings.model_validate({**SETTINGS, "credentials_file": "/tmp/key.json"})
    with pytest.raises(ConnectorError, match="not usable") as err:
        connector(credentials_json='{"private_key": "SECRET-KEY-MATERIAL"}').service()
    assert "SECRET" not in str(err.value) and err.value.kind == "config"
    with pytest.raises(ConnectorError, match="cannot read credentials_file"):
        connector(credentials_json=None, credentials_file="/nonexistent/key.json").service()


# ----------------------------------------------------------------------------------- mapping golden

MAPPING = ROOT / "mappings" / "google_workspace.yaml"


def mapped(stream_name: str, record: dict[str, Any]) -> dict[str, Any]:
    obs = load_mapping(MAPPING).stream(stream_name).map(record)
    return {"key": obs.source_key, "observed_at": obs.observed_at, **obs.fields}


def test_mapping_user_golden() -> None:
    anna, lars = json.loads(fx("users_page1.json"))["users"]
    assert mapped("users", anna) == {
        "key": "104857293847561029384", "observed_at": None, "employee_id": "E10442",
        "email": "anna.berg@example.com",
        "email_aliases": ["anna.berg@example.com", "anna@example.com", "anna.berg@example.com.test-google-a.com"],
        "display_name": "Anna Berg", "department": "Finance", "title": "Controller", "manager": "lars.ek@example.com",
        "status": "active", "idp_user_id": "104857293847561029384", "last_login": "2024-06-03T06:51:10Z"}
    m = mapped("users", lars)
    assert (m["status"], m["employee_id"], m["display_name"], "last_login" in m) == (
        "suspended", "E10007", "Lars Ek", False)
    olle = json.loads(fx("users_page2.json"))["users"][0]
    assert mapped("users", olle)["status"] == "terminated"


def test_mapping_chromeos_golden() -> None:
    book = json.loads(fx("chromeos_page1.json"))["chromeosdevices"][0]
    assert mapped("chromeos_devices", book) == {
        "key": "8a3c1d2e-aaaa-4b5c-9d0e-1f2a3b4c5d6e", "observed_at": "2024-06-01T07:45:10Z", "kind": "laptop",
        "serial_number": "5CD2147Q9K", "mac_addresses": ["3c22fb4d5e6f"], "model": "HP Chromebook 14 G7",
        "os_name": "ChromeOS", "os_version": "125.0.6422.154", "assigned_to": "anna.berg@example.com",
        "location": "Stockholm HQ", "tags": ["asset_tag=IT-004211"], "last_seen": "2024-06-01T07:45:10Z",
        "enrolled_at": "2023-08-21T09:00:00Z", "mdm_managed": True, "lifecycle_state": "deployed"}
    box = mapped("chromeos_devices", json.loads(fx("chromeos_page2.json"))["chromeosdevices"][0])
    assert (box["kind"], box["mac_addresses"], box["lifecycle_state"], box["mdm_managed"], "assigned_to" in box) == (
        "desktop", ["f44d30aabbcc"], "retired", False, False)


def test_mapping_mobile_golden() -> None:
    pixel, ipad = json.loads(fx("mobile_page1.json"))["mobiledevices"]
    assert mapped("mobile_devices", pixel) == {
        "key": "AFiQxQ8mGbTz4sR3wYkQ7cI9pL2nE5vU", "observed_at": "2024-06-02T21:14:05Z", "kind": "mobile",
        "serial_number": "39071FDJH00ABC", "imei": "352099001761481", "mac_addresses": ["ae123456789a"],
        "manufacturer": "Google", "model": "Pixel 8", "os_name": "Android", "os_version": "Android 14",
        "assigned_to": "lars.ek@example.com", "last_seen": "2024-06-02T21:14:05Z",
        "enrolled_at": "2023-11-02T08:30:00Z", "mdm_managed": True}
    assert mapped("mobile_devices", ipad)["kind"] == "tablet" and mapped("mobile_devices", ipad)["os_name"] == "iOS"


# ------------------------------------------------------------------- company-owned devices (Cloud Identity)

CLOUD_IDENTITY = "https://cloudidentity.googleapis.com"


def test_company_devices_are_the_cloud_identity_company_inventory() -> None:
    http = HttpMockSequence([token(), ok(fx("company_devices_page1.json")), ok(fx("company_devices_page2.json"))])
    with transport(http):
        devices = pull("company_devices")
    assert [(d["serialNumber"], d["ownerType"]) for d in devices] == [
        ("5CG1234XYZ", "COMPANY"), ("HT82V1A01076", "COMPANY"), ("DMPXK2ABC123", "COMPANY")]
    first, second = (u for u, *_ in http.request_sequence[1:])
    assert urlsplit(first)[:3] == ("https", "cloudidentity.googleapis.com", COMPANY)
    query = {k: v[0] for k, v in parse_qs(urlsplit(first).query).items()}
    assert query == {"customer": "customers/my_customer", "view": "COMPANY_INVENTORY", "pageSize": "100",
                     "alt": "json"}
    assert {k: v[0] for k, v in parse_qs(urlsplit(second).query).items()} == {**query, "pageToken": "Q0lEMg"}
    assert auth_headers(http) == ["Bearer ya29.token-1"] * 2  # one token for both APIs


def test_company_devices_are_opt_in_and_only_then_is_their_scope_asked_for() -> None:
    off = connector(company_devices=False)
    assert [s.name for s in off.streams()] == ["users", "chromeos_devices", "mobile_devices"]
    assert SCOPES["company_devices"] not in off.scopes()
    fake = FakeGoogle()
    with transport(fake):
        list(off.streams()[0].records(StreamState()))
    claims = google.auth.jwt.decode(parse_qs(fake.request_sequence[0][2].decode())["assertion"][0], verify=False)
    assert set(claims["scope"].split()) == {SCOPES["users"], SCOPES["chromeos_devices"], SCOPES["mobile_devices"]}
    assert not fake.queries(COMPANY)


def test_company_devices_customer_and_endpoint_are_settings() -> None:
    http = HttpMockSequence([token(), ok({})])
    with transport(http):
        assert pull("company_devices", customer="C03az79cb", cloud_identity_url="https://ci.example.test/") == []
    (uri, *_), = http.request_sequence[1:]
    assert uri.startswith("https://ci.example.test/v1/devices?") and "customer=customers%2FC03az79cb" in uri


def test_check_reads_one_company_device_and_names_its_scope_on_403() -> None:
    one = [ok(fx("users_page1.json")), ok(fx("chromeos_page1.json")), ok(fx("mobile_page1.json"))]
    with transport(HttpMockSequence([token(), *one, ok(fx("company_devices_page1.json"))])):
        assert connector().check() == {"users": 1, "chromeos_devices": 1, "mobile_devices": 1, "company_devices": 1}
    with transport(HttpMockSequence([token(), *one, error(403, "Cloud Identity API has not been used")])), \
            pytest.raises(ConnectorError, match="cloud-identity.devices.readonly") as err:
        connector().check()
    assert err.value.kind == "config"


def test_company_device_and_synced_mobile_device_are_one_asset(tmp_path: Path) -> None:
    """The iPad is in the company inventory and, once its user synced it, in mobile_devices: one asset."""
    settings = make_settings(tmp_path)
    with transport(FakeGoogle()):
        result = run(settings)
    assert result.counts["company_devices"]["new"] == 3
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        ipads = [g for _, g, _ in repo.entities.iter_entities("asset")
                 if (g.get("serial_number") or [None])[0] == "DMPXK2ABC123"]
    store.close()
    assert len(ipads) == 1
    assert ipads[0]["tags"][0] == ["asset_tag=IT-004609", "owner_type=COMPANY"]


def test_mapping_company_device_golden() -> None:
    laptop, phone = json.loads(fx("company_devices_page1.json"))["devices"]
    assert mapped("company_devices", laptop) == {
        "key": "devices/Y2xpZW50LWxhcHRvcC0wMzc3", "observed_at": "2024-06-03T07:12:44Z",
        "serial_number": "5CG1234XYZ", "mac_addresses": ["3c22fb123456"], "manufacturer": "HP",
        "model": "HP EliteBook 840 G8", "hostname": "fin-lt-0377", "os_name": "Windows",
        "os_version": "Windows 11 23H2", "last_seen": "2024-06-03T07:12:44Z",
        "tags": ["asset_tag=IT-004377", "owner_type=COMPANY"]}
    assert "kind" not in mapped("company_devices", laptop)  # laptop or desktop: the API does not say
    m = mapped("company_devices", phone)
    assert (m["kind"], m["os_name"], m["imei"], m["manufacturer"]) == ("mobile", "Android", "352099001761482", "Google")
    ipad = mapped("company_devices", json.loads(fx("company_devices_page2.json"))["devices"][0])
    assert (ipad["kind"], ipad["os_name"], ipad["serial_number"]) == ("tablet", "iOS", "DMPXK2ABC123")
