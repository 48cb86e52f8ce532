"""The Apple Business Manager connector over `responses`: signed assertions, paging, throttling, mapping."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from itam_sync.connectors.apple_business_manager.connector import AbmSettings, AppleBusinessManagerConnector
from pydantic import ValidationError

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import ConnectorError, StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite, record_sleeps

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
API = "https://api-business.apple.com"
DEVICES = f"{API}/v1/orgDevices"
TOKEN_URL = "https://account.apple.com/auth/oauth2/token"
CLIENT_ID = "BUSINESSAPI.9703f56c-10ce-4876-8f59-e78e5e23a152"
KEY = ec.generate_private_key(ec.SECP256R1())
PEM = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                       serialization.NoEncryption()).decode()
SETTINGS: dict[str, Any] = {"client_id": CLIENT_ID, "key_id": "d136aa66-0c3b-4bd4-9892-c20e8db024ab",
                            "private_key": PEM}


def fx(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeAbm:
    """Serves orgDevices pages by `cursor` (none, c2, c3) and numbered tokens; records every token form."""

    def __init__(self, fail: bool = False) -> None:
        self.pages: dict[str | None, Any] = {None: fx("devices_page1.json"), "c2": fx("devices_page2.json"),
                                             "c3": fx("devices_page3.json")}
        self.fail = fail
        self.errors: list[tuple[int, dict[str, str]]] = []
        self.calls: list[requests.PreparedRequest] = []
        self.forms: list[dict[str, str]] = []

    def install(self, rsps: responses.RequestsMock) -> FakeAbm:
        rsps.add_callback(responses.GET, re.compile(re.escape(DEVICES) + r"(\?.*)?$"), callback=self.serve)
        rsps.add_callback(responses.POST, TOKEN_URL, callback=self.token)
        return self

    def token(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.forms.append({k: v[0] for k, v in parse_qs(str(request.body)).items()})
        return 200, {}, json.dumps({"access_token": f"abm-at-{len(self.forms)}", "token_type": "Bearer",
                                    "expires_in": 3600, "scope": "business.api"})

    def serve(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.calls.append(request)
        if self.fail:
            return 500, {}, json.dumps({"errors": [{"status": "500", "code": "UNEXPECTED_ERROR"}]})
        if self.errors:
            status, headers = self.errors.pop(0)
            return status, headers, json.dumps({"errors": [{"status": str(status)}]})
        cursor = self.queries()[-1].get("cursor")
        return 200, {"Content-Type": "application/json"}, json.dumps(self.pages[cursor])

    def queries(self) -> list[dict[str, str]]:
        return [{k: v[0] for k, v in parse_qs(urlsplit(str(c.url)).query).items()} for c in self.calls]


def abm_mock(fail: bool) -> contextlib.AbstractContextManager[Any]:
    @contextlib.contextmanager
    def serve() -> Iterator[FakeAbm]:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps, record_sleeps():
            yield FakeAbm(fail=fail).install(rsps)
    return serve()


TestAbmConformance = conformance_suite(AppleBusinessManagerConnector, SETTINGS, mock=abm_mock)


@pytest.fixture
def abm() -> Iterator[FakeAbm]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeAbm().install(rsps)


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp / 'abm.db'}"),
                    connectors=[ConnectorConfig(name="abm", type="apple_business_manager",
                                                settings={**SETTINGS, **overrides},
                                                mapping=str(ROOT / "mappings" / "apple_business_manager.yaml"))])


def run(settings: Settings, full: bool = True) -> Any:
    return run_connector(settings, "abm", full=full,
                         registry=Registry(extra={"apple_business_manager": AppleBusinessManagerConnector}))


def pull(state: StreamState | None = None, **overrides: Any) -> list[Any]:
    conn = AppleBusinessManagerConnector("abm", AbmSettings.model_validate({**SETTINGS, **overrides}))
    (stream,) = conn.streams()
    return list(stream.records(state or StreamState()))


def db(settings: Settings) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        out = repo.entities.counts(), repo.runs.get_cursors("abm"), repo.runs.list_runs(1)[0]
    store.close()
    return out


# -------------------------------------------------------------------------------------------- tests

def test_pages_follow_links_next_through_an_empty_last_page(abm: FakeAbm) -> None:
    got = pull(page_size=2)
    assert [d.get("id") for d in got] == ["C02FK1ABQ6L4", "F2LXK0N1P3Q4", "DMPXR2ABCD12", None]
    assert abm.queries() == [{"limit": "2"}, {"cursor": "c2", "limit": "2"}, {"cursor": "c3", "limit": "2"}]
    assert {c.headers["Authorization"] for c in abm.calls} == {"Bearer abm-at-1"} and len(abm.forms) == 1


def test_token_request_carries_a_signed_es256_client_assertion(abm: FakeAbm) -> None:
    pull()
    (form,) = abm.forms
    assert {k: v for k, v in form.items() if k != "client_assertion"} == {
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "scope": "business.api",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
    header = jwt.get_unverified_header(form["client_assertion"])
    assert header["alg"] == "ES256" and header["kid"] == SETTINGS["key_id"]
    claims = jwt.decode(form["client_assertion"], KEY.public_key(), algorithms=["ES256"],
                        audience="https://account.apple.com/auth/oauth2/v2/token")
    assert claims["iss"] == claims["sub"] == CLIENT_ID and 0 < claims["exp"] - claims["iat"] <= 180 * 86400


def test_expired_token_is_refreshed_with_a_fresh_assertion(abm: FakeAbm) -> None:
    abm.errors = [(401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})]
    assert len(pull()) == 4
    assert [c.headers["Authorization"] for c in abm.calls[:2]] == ["Bearer abm-at-1", "Bearer abm-at-2"]
    jtis = [jwt.decode(f["client_assertion"], options={"verify_signature": False})["jti"] for f in abm.forms]
    assert len(jtis) == 2 and jtis[0] != jtis[1]


def test_pre_minted_assertion_is_sent_as_is_for_school_manager(abm: FakeAbm) -> None:
    school = {"client_id": "SCHOOLAPI.1", "client_assertion": "eyJ.minted.elsewhere", "scope": "school.api"}
    conn = AppleBusinessManagerConnector("asm", AbmSettings.model_validate(school))
    (stream,) = conn.streams()
    list(stream.records(StreamState()))
    assert abm.forms[0]["client_assertion"] == "eyJ.minted.elsewhere" and abm.forms[0]["scope"] == "school.api"


def test_empty_organisation_is_no_records(abm: FakeAbm) -> None:
    abm.pages[None] = fx("devices_page3.json")
    assert pull() == [] and len(abm.calls) == 1


def test_429_then_success_waits_the_retry_after(abm: FakeAbm, recorded_sleeps: list[float]) -> None:
    abm.errors = [(429, {"Retry-After": "60"})]
    assert len(pull()) == 4
    assert recorded_sleeps == [60.0]


def test_5xx_gives_up_fails_the_run_and_marks_nothing_missing(tmp_path: Path, recorded_sleeps: list[float]) -> None:
    settings = make_settings(tmp_path)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeAbm().install(rsps)
        assert run(settings).status == "success"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeAbm().install(rsps)
        fake.errors = [(503, {})] * 10
        with pytest.raises(SyncFailed, match=r"gave up on GET \S*/v1/orgDevices\S* after 5 attempts"):
            run(settings)
    assert len(fake.calls) == 5 and len(recorded_sleeps) == 4
    counts, _, last = db(settings)
    assert last["status"] == "failed" and counts["missing_records"] == 0 and counts["source_records"] == 3


def test_bad_private_key_is_a_config_error_without_echoing_it(abm: FakeAbm) -> None:
    with pytest.raises(ConnectorError, match="EC P-256 private key") as err:
        pull(private_key="-----BEGIN PRIVATE KEY-----\nnot-a-key-SECRET\n-----END PRIVATE KEY-----")
    assert err.value.kind == "config" and "SECRET" not in str(err.value)


def test_device_without_an_id_is_quarantined(abm: FakeAbm, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    result = run(settings)
    assert result.counts["devices"]["quarantined"] == 1 and result.counts["devices"]["new"] == 3
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        (row,) = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert "no source key" in row[5]


def test_incremental_run_lists_everything_saves_no_cursor_and_marks_nothing(abm: FakeAbm, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    run(settings)
    abm.pages["c2"] = {"data": [], "links": {}}  # the iPad was released from the organisation
    abm.calls.clear()
    result = run(settings, full=False)
    assert abm.queries() == [{"limit": "100"}, {"cursor": "c2", "limit": "2"}]  # no "changed since" filter exists
    assert result.counts["_total"]["missing_marked"] == 0 and db(settings)[1] == {}


@pytest.mark.parametrize("overrides, problem", [
    ({"private_key": None}, "exactly one of"),
    ({"client_assertion": "eyJ"}, "exactly one of"),
    ({"key_id": None}, "needs key_id"),
    ({"page_size": 5000}, "less than or equal to 1000"),
])
def test_settings_are_validated(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        AbmSettings.model_validate({**SETTINGS, **overrides})


# ----------------------------------------------------------------------------------- mapping golden

def mapped(record: dict[str, Any]) -> dict[str, Any]:
    obs = load_mapping(ROOT / "mappings" / "apple_business_manager.yaml").stream("devices").map(record)
    return {"key": obs.source_key, "observed_at": obs.observed_at, **obs.fields}


def test_mapping_golden() -> None:
    mac, iphone = fx("devices_page1.json")["data"]
    ipad, _ = fx("devices_page2.json")["data"]
    assert mapped(mac) == {
        "key": "C02FK1ABQ6L4", "observed_at": "2024-05-20T14:02:11Z", "serial_number": "C02FK1ABQ6L4",
        "manufacturer": "Apple", "model": "MacBook Pro (14-inch, M3, 2023)", "kind": "laptop",
        "order_number": "4801234567", "purchase_date": "2024-05-02", "mac_addresses": ["8c85901a2b3c", "36c1d2e3f405"],
        "tags": ["abm_status=ASSIGNED", "abm_purchase_source=RESELLER:1A2B3C"]}
    phone = mapped(iphone)
    assert (phone["kind"], phone["vendor"], phone["imei"], phone["mac_addresses"], phone["tags"]) == (
        "mobile", "Apple", "356938035643809", ["f01898aabbcc"],
        ["abm_status=UNASSIGNED", "abm_purchase_source=APPLE:1234567"])
    tablet = mapped(ipad)
    assert tablet["kind"] == "tablet" and "vendor" not in tablet and "imei" not in tablet
    assert "mac_addresses" not in tablet
    assert tablet["tags"] == ["abm_status=ASSIGNED", "abm_purchase_source=MANUALLY_ADDED"]


def test_purchase_source_id_is_read_in_both_documented_spellings() -> None:
    """Apple's OrgDevice.Attributes table names `purchaseSourceId`; its Get Organization Devices example answers
    `purchaseSourceUid`. The reseller number is kept whichever the API sends (the example's spelling was lost
    before), and the Bluetooth MAC is never an identity MAC."""
    mac, _ = fx("devices_page1.json")["data"]
    attrs = mac["attributes"]
    assert "purchaseSourceUid" in attrs and "purchaseSourceId" not in attrs
    renamed = {**mac, "attributes": {**{k: v for k, v in attrs.items() if k != "purchaseSourceUid"},
                                     "purchaseSourceId": attrs["purchaseSourceUid"]}}
    assert mapped(mac)["tags"] == mapped(renamed)["tags"] == [
        "abm_status=ASSIGNED", "abm_purchase_source=RESELLER:1A2B3C"]
    assert "8c85901a2b3d" not in mapped(mac)["mac_addresses"]  # bluetoothMacAddress
