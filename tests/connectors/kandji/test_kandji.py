"""Kandji connector over `responses` HTTP mocks, alone and through the engine (run_connector on SQLite)."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from itam_sync.connectors.kandji.connector import KandjiConnector, KandjiSettings

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import RunResult, SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import BadRecord, ConnectorError, StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite, record_sleeps

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
MAPPING = ROOT / "mappings" / "kandji.yaml"
API = "https://acme.api.kandji.io"
DEVICES_URL = f"{API}/api/v1/devices"
DETAILS_RE = re.compile(rf"{re.escape(API)}/api/v1/devices/([^/?]+)/details")
SETTINGS: dict[str, Any] = {"api_url": API, "api_token": "kandji-test-token", "page_size": 2}
ANNA = "2cfeb3ac-3b5d-423e-bcff-e2676a3a32da"
MINI = "9a1d7c44-0e2b-4f5a-8c3d-2b1e0f9a8d7c"
PHONE = "f3e2d1c0-b9a8-4765-8432-10fedcba9876"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def query(request: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}


class FakeKandji:
    """Serves the device list by limit/offset (sorted when asked) and each device's details."""

    def __init__(self, rsps: responses.RequestsMock, devices: list[Any] | None = None,
                 details: dict[str, Any] | None = None) -> None:
        self.devices = load("devices.json") if devices is None else devices
        self.details = load("details.json") if details is None else details
        self.list_calls: list[dict[str, str]] = []
        self.detail_calls: list[str] = []
        self.failing_offsets: set[str] = set()  # list pages answering 503
        self.failing_details: set[str] = set()  # devices whose details answer 503
        self.slow_details: dict[str, float] = {}  # seconds a device's details take
        self.details_answered: list[str] = []  # in the order the answers were sent
        rsps.add_callback(responses.GET, DEVICES_URL, callback=self.list_page)
        rsps.add_callback(responses.GET, DETAILS_RE, callback=self.device_details)

    def list_page(self, request: Any) -> tuple[int, dict[str, str], str]:
        q = query(request)
        self.list_calls.append(q)
        if q["offset"] in self.failing_offsets:
            return 503, {}, "upstream unavailable"
        items = self.devices
        if q.get("ordering") == "-last_check_in":  # newest first, never-seen devices first (NULLS FIRST)
            items = [d for d in items if d.get("last_check_in") is None] + sorted(
                (d for d in items if d.get("last_check_in") is not None),
                key=lambda d: d["last_check_in"], reverse=True)
        offset, limit = int(q["offset"]), int(q["limit"])
        return 200, {}, json.dumps(items[offset:offset + limit])

    def device_details(self, request: Any) -> tuple[int, dict[str, str], str]:
        match = DETAILS_RE.match(request.url)
        assert match
        device_id = match[1]
        self.detail_calls.append(device_id)
        time.sleep(self.slow_details.get(device_id, 0.0))
        self.details_answered.append(device_id)
        if device_id in self.failing_details:
            return 503, {}, "upstream unavailable"
        if device_id not in self.details:
            return 404, {}, json.dumps({"detail": "Not found."})
        return 200, {}, json.dumps(self.details[device_id])


@contextlib.contextmanager
def kandji_http(fail: bool) -> Iterator[None]:
    """The conformance suite's mock: the recorded tenant, or a tenant answering 503 to everything."""
    with record_sleeps(), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        if fail:
            rsps.add(responses.GET, re.compile(rf"{re.escape(API)}/.*"), status=503)
        else:
            FakeKandji(rsps)
        yield


TestKandjiConformance = conformance_suite(KandjiConnector, SETTINGS, mock=kandji_http, mapping=MAPPING)


# ------------------------------------------------------------------------------------------ helpers


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 'kandji.db'}"),
                    connectors=[ConnectorConfig(name="kandji", type="kandji", settings={**SETTINGS, **overrides},
                                                mapping=str(MAPPING))])


def run(settings: Settings, *, full: bool) -> RunResult:
    return run_connector(settings, "kandji", full=full, registry=Registry(extra={"kandji": KandjiConnector}))


def store_counts(settings: Settings) -> dict[str, Any]:
    store = Store.open(settings.store.url)
    try:
        with store.begin() as repo:
            return repo.entities.counts()
    finally:
        store.close()


def pull(**overrides: Any) -> list[Any]:
    conn = KandjiConnector("kandji", KandjiSettings.model_validate({**SETTINGS, **overrides}))
    try:
        return list(conn.streams()[0].records(StreamState()))
    finally:
        conn.close()


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


# -------------------------------------------------------------------------------------------- tests


def test_pages_by_limit_and_offset_until_an_empty_page(rsps: responses.RequestsMock) -> None:
    fake = FakeKandji(rsps)
    records = pull()
    good = [r for r in records if not isinstance(r, BadRecord)]
    assert [r["device_id"] for r in good] == [ANNA, MINI, PHONE]
    # 4 devices in pages of 2: the second page is full, so a third (empty) page ends paging.
    assert [(c["limit"], c["offset"]) for c in fake.list_calls] == [("2", "0"), ("2", "2"), ("2", "4")]
    assert all("ordering" not in c for c in fake.list_calls)  # a full run reads in the server's order
    assert rsps.calls[0].request.headers["Authorization"] == "Bearer kandji-test-token"


def test_short_page_ends_paging_without_another_request(rsps: responses.RequestsMock) -> None:
    fake = FakeKandji(rsps, devices=load("devices.json")[:3])
    assert len(pull()) == 3
    assert [c["offset"] for c in fake.list_calls] == ["0", "2"]  # page 2 held 1 < 2: the last page


def test_empty_tenant_yields_nothing_and_the_run_succeeds(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    fake = FakeKandji(rsps, devices=[])
    result = run(settings_for(tmp_path), full=True)
    assert result.status == "success"
    assert result.counts["devices"]["seen"] == 0
    assert len(fake.list_calls) == 1 and fake.detail_calls == []


def test_details_fetched_while_streaming_and_trimmed_to_sections(rsps: responses.RequestsMock) -> None:
    fake = FakeKandji(rsps)
    conn = KandjiConnector("kandji", KandjiSettings.model_validate({**SETTINGS, "details_concurrency": 1}))
    stream = conn.streams()[0].records(StreamState())
    first = next(stream)
    # Memory stays flat: the first device arrives with its details before the second page is asked for
    # (one request at a time; with more, the list is read ahead by a bounded window: tests/sdk/test_sdk_details).
    assert len(fake.list_calls) == 1 and fake.detail_calls == [ANNA]
    assert set(first["details"]) == {"general", "mdm", "kandji_agent", "hardware_overview", "network"}
    assert first["details"]["network"]["mac_address"] == "A4:83:E7:11:22:33"
    rest = list(stream)
    conn.close()
    assert fake.detail_calls == [ANNA, MINI, PHONE]  # never for the record without a device_id
    assert isinstance(rest[-1], BadRecord) and "device_id" in rest[-1].reason


def test_fetch_details_false_makes_one_request_per_page(rsps: responses.RequestsMock) -> None:
    fake = FakeKandji(rsps)
    records = pull(fetch_details=False)
    assert fake.detail_calls == []
    assert all("details" not in r for r in records if not isinstance(r, BadRecord))


def test_all_detail_sections_kept_when_asked(rsps: responses.RequestsMock) -> None:
    FakeKandji(rsps)
    first = pull(detail_sections=None)[0]
    assert "volumes" in first["details"] and "installed_profiles" in first["details"]


def test_device_removed_between_list_and_details_keeps_its_list_record(rsps: responses.RequestsMock) -> None:
    details = load("details.json")
    del details[MINI]
    FakeKandji(rsps, details=details)
    records = {r["device_id"]: r for r in pull() if not isinstance(r, BadRecord)}
    assert records[MINI]["details"] is None
    assert records[ANNA]["details"]["network"]["mac_address"]


def test_429_then_success_waits_what_the_server_asked(rsps: responses.RequestsMock,
                                                      recorded_sleeps: list[float]) -> None:
    rsps.add(responses.GET, DEVICES_URL, status=429, headers={"Retry-After": "7"},
             json={"detail": "Request was throttled."})
    fake = FakeKandji(rsps)
    records = pull(fetch_details=False)
    assert len(records) == 4
    assert recorded_sleeps == [7.0]
    assert [c["offset"] for c in fake.list_calls] == ["0", "2", "4"]  # the throttled page was asked again


def test_429_without_a_hint_waits_for_the_hourly_window_not_fails(rsps: responses.RequestsMock,
                                                                  recorded_sleeps: list[float]) -> None:
    # Kandji documents 10,000 requests/hour per tenant and no 429 headers: a few seconds of backoff would give
    # up long before the window reopens (issue #14). The SDK's RateLimit policy probes at 1, 2, 4 ... minutes.
    for _ in range(2):
        rsps.add(responses.GET, DETAILS_RE, status=429, json={"detail": "Request was throttled."})
    fake = FakeKandji(rsps)
    assert len(pull(details_concurrency=1)) == 4  # one request at a time: the two 429s hit the same request
    assert recorded_sleeps == [60.0, 120.0]
    assert fake.detail_calls == [ANNA, MINI, PHONE]  # Anna's details were asked again after the waits


def test_5xx_given_up_fails_the_run_and_marks_nothing_missing(rsps: responses.RequestsMock, tmp_path: Path,
                                                             recorded_sleeps: list[float]) -> None:
    settings = settings_for(tmp_path)
    fake = FakeKandji(rsps)
    assert run(settings, full=True).status == "success"
    before = store_counts(settings)
    recorded_sleeps.clear()
    # Second full run: page 1 works, page 2 keeps failing. Its devices must not be marked missing.
    fake.failing_offsets.add("2")
    fake.list_calls.clear()
    with pytest.raises(SyncFailed, match="gave up"):
        run(settings, full=True)
    assert [c["offset"] for c in fake.list_calls] == ["0"] + ["2"] * 5  # max_attempts, then give up
    assert len(recorded_sleeps) == 4
    after = store_counts(settings)
    assert after["missing_records"] == 0
    assert after["source_records"] == before["source_records"]
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        assert repo.runs.list_runs(1)[0]["status"] == "failed"
    store.close()


def test_invalid_token_fails_fast_as_a_config_error(rsps: responses.RequestsMock,
                                                    recorded_sleeps: list[float]) -> None:
    # A Kandji API token is static: nothing to refresh, so a 401 is not retried and names the fix.
    rsps.add(responses.GET, DEVICES_URL, status=401, json={"detail": "Invalid token."})
    with pytest.raises(ConnectorError) as err:
        pull()
    assert err.value.kind == "config"
    assert "credentials" in str(err.value)
    assert len(rsps.calls) == 1 and recorded_sleeps == []
    assert "kandji-test-token" not in str(err.value)


def test_malformed_record_is_quarantined_not_fatal(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    FakeKandji(rsps)
    settings = settings_for(tmp_path)
    result = run(settings, full=True)
    assert result.status == "success"
    assert result.counts["devices"]["quarantined"] == 1
    assert result.counts["devices"]["new"] == 3
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        rows = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert len(rows) == 1 and "device_id" in rows[0][5]


def test_incremental_run_reads_newest_first_and_stops_at_the_saved_cursor(rsps: responses.RequestsMock,
                                                                         tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    fake = FakeKandji(rsps)
    run(settings, full=True)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        assert repo.runs.get_cursors("kandji") == {"devices": "2024-06-02T07:55:03.118Z"}
    store.close()
    # Since then: the Mac mini checked in again; the others did not.
    fake.devices[1] = {**fake.devices[1], "last_check_in": "2024-06-03T09:00:00Z", "os_version": "13.6.8"}
    fake.list_calls.clear()
    fake.detail_calls.clear()
    result = run(settings, full=False)
    assert result.status == "success"
    assert fake.list_calls[0]["ordering"] == "-last_check_in"
    # ghost (never checked in) and the Mac mini, then Anna's Mac (== cursor, re-read), then the iPhone is older:
    # stop. No third page and no details call for the iPhone.
    assert [c["offset"] for c in fake.list_calls] == ["0", "2"]
    assert sorted(fake.detail_calls) == sorted([MINI, ANNA])  # asked concurrently: in any order
    assert result.counts["devices"]["changed"] == 1
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        assert repo.runs.get_cursors("kandji") == {"devices": "2024-06-03T09:00:00Z"}
        assert repo.entities.counts()["missing_records"] == 0
    store.close()


def test_mapping_golden_record(rsps: responses.RequestsMock) -> None:
    FakeKandji(rsps)
    records = {r["device_id"]: r for r in pull() if not isinstance(r, BadRecord)}
    stream = load_mapping(MAPPING).stream("devices")
    anna = stream.map(records[ANNA])
    assert anna.source_key == ANNA
    assert anna.observed_at == "2024-06-02T07:55:03Z"
    assert anna.fields == {
        "kind": "laptop",
        "serial_number": "C02FK1ABQ6L4",
        "udid": "00008103-001A2B3C4D5E001E",
        "mac_addresses": ["a483e7112233"],
        "hostname": "lt-anna-mbp",
        "manufacturer": "Apple",
        "model": "MacBook Pro (14-inch, 2021)",
        "os_name": "macOS",
        "os_version": "14.5",
        "assigned_to": "anna.berg@example.com",
        "last_seen": "2024-06-02T07:55:03Z",
        "enrolled_at": "2023-03-14T12:30:00Z",
        "mdm_managed": True,
        "agent_version": "4.6.1",
        "health_state": "agent_installed",
        "tags": ["kandji-blueprint:Finance Macs"],
    }
    mini = stream.map(records[MINI]).fields
    assert mini["kind"] == "desktop" and mini["serial_number"] == "C07XK2BNPJH7"
    assert mini["mdm_managed"] is True and "assigned_to" not in mini and "udid" not in mini
    assert mini["enrolled_at"] == "2023-09-01T08:00:00Z"  # empty last_enrollment falls back
    phone = stream.map(records[PHONE]).fields
    assert phone["kind"] == "mobile" and phone["os_name"] == "iOS"
    assert phone["imei"] == "353958111234567"
    assert phone["mac_addresses"] == ["f01898aabbcc"]  # Wi-Fi only; the Bluetooth MAC is not a network MAC
    assert phone["health_state"] == "agent_not_installed" and "agent_version" not in phone


def test_settings_validate_url_and_page_size() -> None:
    with pytest.raises(ValueError):
        KandjiSettings.model_validate({**SETTINGS, "api_url": "acme.api.kandji.io"})
    with pytest.raises(ValueError):
        KandjiSettings.model_validate({**SETTINGS, "page_size": 301})
    with pytest.raises(ValueError):
        KandjiSettings.model_validate({**SETTINGS, "page_sise": 100})
    ok = KandjiSettings.model_validate({**SETTINGS, "api_url": "https://acme.api.eu.kandji.io/"})
    assert ok.api_url == "https://acme.api.eu.kandji.io"


# ------------------------------------------------------------------ issue #14: within the tenant's quota


@pytest.mark.parametrize("concurrency", [1, 4])
def test_full_resync_of_unchanged_devices_asks_no_details_and_reports_nothing_changed(
        rsps: responses.RequestsMock, tmp_path: Path, concurrency: int) -> None:
    settings = settings_for(tmp_path, details_cache=str(tmp_path / "kandji-details.sqlite"),
                            details_concurrency=concurrency)
    fake = FakeKandji(rsps)
    first = run(settings, full=True)
    assert first.counts["devices"]["new"] == 3 and sorted(fake.detail_calls) == sorted([ANNA, MINI, PHONE])
    fake.detail_calls.clear()
    again = run(settings, full=True)
    assert fake.detail_calls == []  # the list rows did not change: their details were remembered
    assert again.counts["devices"]["unchanged"] == 3
    assert again.counts["devices"]["changed"] == 0 and again.counts["devices"]["new"] == 0
    assert again.counts["_total"]["missing_marked"] == 0
    assert store_counts(settings)["missing_records"] == 0


def test_a_changed_list_row_asks_details_again_a_new_check_in_alone_does_not(rsps: responses.RequestsMock,
                                                                           tmp_path: Path) -> None:
    settings = settings_for(tmp_path, details_cache=str(tmp_path / "kandji-details.sqlite"))
    fake = FakeKandji(rsps)
    run(settings, full=True)
    fake.detail_calls.clear()
    fake.devices[0] = {**fake.devices[0], "last_check_in": "2024-06-03T08:00:00.000Z"}  # only checked in
    fake.devices[1] = {**fake.devices[1], "os_version": "14.6"}  # updated: its details may differ now
    fake.details[MINI] = {**fake.details[MINI], "general": {**fake.details[MINI]["general"], "os_version": "14.6"}}
    result = run(settings, full=True)
    assert fake.detail_calls == [MINI]
    assert result.counts["devices"]["changed"] == 2 and result.counts["devices"]["unchanged"] == 1
    records = {r["device_id"]: r for r in pull(details_cache=str(tmp_path / "kandji-details.sqlite"))
               if not isinstance(r, BadRecord)}
    assert records[ANNA]["details"]["network"]["mac_address"] == "A4:83:E7:11:22:33"  # remembered details
    assert records[MINI]["details"]["general"]["os_version"] == "14.6"


def test_remembered_details_are_asked_again_once_too_old(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    fake = FakeKandji(rsps)
    cache = str(tmp_path / "kandji-details.sqlite")
    pull(details_cache=cache)
    fake.detail_calls.clear()
    pull(details_cache=cache, details_max_age_hours=1e-9)
    assert sorted(fake.detail_calls) == sorted([ANNA, MINI, PHONE])


@pytest.mark.parametrize("concurrency", [1, 4])
def test_requests_stay_within_the_hourly_budget(rsps: responses.RequestsMock, recorded_sleeps: list[float],
                                                concurrency: int) -> None:
    fake = FakeKandji(rsps)
    # 3 list pages + 3 details calls at a budget of 4 an hour: the 5th and 6th requests wait for the window.
    records = pull(requests_per_hour=4, details_concurrency=concurrency)
    assert len(records) == 4 and len(fake.list_calls) + len(fake.detail_calls) == 6
    assert len(recorded_sleeps) == 2 and all(3590 < s <= 3600 for s in recorded_sleeps)


def test_a_list_page_cut_short_is_fetched_again(rsps: responses.RequestsMock, tmp_path: Path,
                                               recorded_sleeps: list[float]) -> None:
    """Issue #20 item 12, through the connector: requests raises ChunkedEncodingError (IncompleteRead) for a
    body cut short; it is retried like a reset connection, not a failed run."""
    fake = FakeKandji(rsps)
    serve = fake.list_page
    broken: list[str] = []

    def cut_once(request: Any) -> tuple[int, dict[str, str], str]:
        if query(request)["offset"] == "2" and not broken:
            broken.append("2")
            raise requests.exceptions.ChunkedEncodingError(
                "('Connection broken: IncompleteRead(311 bytes read, 900 more expected)', IncompleteRead(...))")
        return serve(request)

    rsps.remove(responses.GET, DEVICES_URL)  # the fake's own route, replaced by the one below
    rsps.add_callback(responses.GET, DEVICES_URL, callback=cut_once)
    result = run(settings_for(tmp_path), full=True)
    assert result.status == "success" and result.counts["devices"]["new"] == 3
    assert broken == ["2"] and len(recorded_sleeps) == 1
    assert [c["offset"] for c in fake.list_calls] == ["0", "2", "4"]


# ------------------------------------------------------------ issue #16: details a few at a time, in order


def test_details_requests_overlap_and_records_keep_the_list_order(rsps: responses.RequestsMock) -> None:
    fake = FakeKandji(rsps)
    fake.slow_details = {ANNA: 0.3}  # the first device's details answer last
    records = pull(details_concurrency=3, page_size=300)
    assert fake.details_answered[-1] == ANNA  # Mini's and the iPhone's details did not wait behind Anna's
    assert [r["device_id"] for r in records[:3]] == [ANNA, MINI, PHONE] and isinstance(records[3], BadRecord)
    for record in records[:3]:  # each joined to its own details
        assert record["details"]["general"]["device_id"] == record["device_id"]


def test_settings_bound_the_details_concurrency() -> None:
    assert KandjiSettings.model_validate(SETTINGS).details_concurrency == 4
    for bad in (0, 17):
        with pytest.raises(ValueError, match="details_concurrency"):
            KandjiSettings.model_validate({**SETTINGS, "details_concurrency": bad})
    description = KandjiSettings.model_fields["details_concurrency"].description or ""
    assert "10,000 requests/hour" in description


def outcome(rsps: responses.RequestsMock, tmp_path: Path, concurrency: int) -> dict[str, Any]:
    """What a first run and a second run with one device's details failing leave behind."""
    fake = FakeKandji(rsps)
    settings = settings_for(tmp_path, details_concurrency=concurrency, page_size=300)
    first = run(settings, full=True)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        quarantined = [(row[4], row[5]) for row in repo.quarantine.list_quarantine(first.run_id)]
    store.close()
    fake.failing_details.add(MINI)
    with pytest.raises(SyncFailed) as failed:
        run(settings, full=True)
    return {"first": (first.status, first.counts["devices"]), "quarantined": quarantined,
            "error": str(failed.value), "after": store_counts(settings)}


def test_a_failing_details_request_ends_the_run_as_it_does_one_at_a_time(tmp_path: Path) -> None:
    results = []
    for concurrency in (1, 4):
        with record_sleeps(), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            results.append(outcome(rsps, tmp_path / str(concurrency), concurrency))
    assert results[0] == results[1]
    assert results[0]["first"][1]["quarantined"] == 1 and results[0]["after"]["missing_records"] == 0
    assert f"gave up on GET {API}/api/v1/devices/{MINI}/details after 5 attempts" in results[0]["error"]
