"""The BambooHR connector over `responses`: the custom report, throttling, failures, cursor, mapping."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from itam_sync.connectors.bamboohr.connector import BambooHRConnector, BambooHRSettings
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
BASE = "https://api.bamboohr.com/api/gateway.php/acme"
REPORT_URL = f"{BASE}/v1/reports/custom"
SETTINGS: dict[str, Any] = {"company_domain": "acme", "api_key": "bamboo-KEY-123"}


def fx(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeBamboo:
    """Serves the custom report; `errors` is a queue of (status, headers) served first; `fail`: always 500."""

    def __init__(self, report: Any = None, fail: bool = False) -> None:
        self.report = fx("report.json") if report is None else report
        self.fail = fail
        self.errors: list[tuple[int, dict[str, str]]] = []
        self.calls: list[requests.PreparedRequest] = []

    def install(self, rsps: responses.RequestsMock) -> FakeBamboo:
        rsps.add_callback(responses.POST, REPORT_URL, callback=self.serve)
        return self

    def serve(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.calls.append(request)
        if self.fail:
            return 500, {}, "<html>Internal Server Error</html>"
        if self.errors:
            status, headers = self.errors.pop(0)
            return status, headers, ""
        return 200, {"Content-Type": "application/json"}, json.dumps(self.report)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(c.body or b"{}") for c in self.calls]

    def queries(self) -> list[dict[str, str]]:
        return [{k: v[0] for k, v in parse_qs(urlsplit(str(c.url)).query).items()} for c in self.calls]


def bamboo_mock(fail: bool) -> contextlib.AbstractContextManager[Any]:
    @contextlib.contextmanager
    def serve() -> Iterator[FakeBamboo]:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps, record_sleeps():
            yield FakeBamboo(fail=fail).install(rsps)
    return serve()


TestBambooHRConformance = conformance_suite(BambooHRConnector, SETTINGS, mock=bamboo_mock)


@pytest.fixture
def bamboo() -> Iterator[FakeBamboo]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeBamboo().install(rsps)


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp / 'bamboo.db'}"),
                    connectors=[ConnectorConfig(name="hr", type="bamboohr", settings={**SETTINGS, **overrides},
                                                mapping=str(ROOT / "mappings" / "bamboohr.yaml"))])


def run(settings: Settings, full: bool = True) -> Any:
    return run_connector(settings, "hr", full=full, registry=Registry(extra={"bamboohr": BambooHRConnector}))


def pull(state: StreamState | None = None, **overrides: Any) -> list[Any]:
    conn = BambooHRConnector("hr", BambooHRSettings.model_validate({**SETTINGS, **overrides}))
    (stream,) = conn.streams()
    return list(stream.records(state or StreamState()))


def counts(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        out = repo.entities.counts(), repo.runs.list_runs(1)[0]
    store.close()
    return out


# -------------------------------------------------------------------------------------------- tests

def test_report_request_auth_and_all_employees_in_one_response(bamboo: FakeBamboo) -> None:
    got = pull()
    assert [e["id"] for e in got] == ["123", "87", "311", "412", None]  # Active and Inactive alike
    (call,) = bamboo.calls
    assert call.headers["Authorization"] == "Basic " + base64.b64encode(b"bamboo-KEY-123:x").decode()
    assert call.headers["Content-Type"] == "application/json" and call.headers["Accept"] == "application/json"
    assert bamboo.queries() == [{"format": "JSON", "onlyCurrent": "true"}]
    body = bamboo.bodies()[0]
    assert "filters" not in body  # a full read
    assert body["fields"][:3] == ["id", "employeeNumber", "workEmail"] and "lastChanged" in body["fields"]


def test_custom_fields_always_keep_id_and_last_changed(bamboo: FakeBamboo) -> None:
    pull(fields=["workEmail", "status"], base_url="https://api.bamboohr.com/api/gateway.php/{company_domain}/")
    assert bamboo.bodies()[0]["fields"] == ["workEmail", "status", "id", "lastChanged"]


def test_empty_report_is_no_records_and_a_full_run_on_it_is_guarded(bamboo: FakeBamboo, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert run(settings).status == "success"
    bamboo.report = {"title": "itam-sync employees", "fields": [], "employees": []}
    assert pull() == []
    result = run(settings)
    assert result.status == "guarded"  # an empty HR report never marks every person missing
    assert counts(settings)[0]["missing_records"] == 0


def test_report_without_an_employees_list_fails_instead_of_reading_as_empty(bamboo: FakeBamboo) -> None:
    bamboo.report = {"title": "itam-sync employees", "fields": []}
    with pytest.raises(ConnectorError, match="no `employees` list"):
        pull()


def test_non_object_entry_is_a_bad_record(bamboo: FakeBamboo) -> None:
    bamboo.report = {"employees": ["oops", fx("report.json")["employees"][0]]}
    bad, good = pull()
    assert isinstance(bad, BadRecord) and "not a JSON object" in bad.reason
    assert good["id"] == "123"


def test_429_and_503_throttling_wait_the_retry_after(bamboo: FakeBamboo, recorded_sleeps: list[float]) -> None:
    bamboo.errors = [(429, {"Retry-After": "12"}), (503, {"Retry-After": "30"})]
    assert len(pull()) == 5
    assert recorded_sleeps == [12.0, 30.0] and len(bamboo.calls) == 3


def test_5xx_gives_up_fails_the_run_and_marks_nothing_missing(tmp_path: Path, recorded_sleeps: list[float]) -> None:
    settings = make_settings(tmp_path)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeBamboo().install(rsps)
        assert run(settings).status == "success"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeBamboo().install(rsps)
        fake.errors = [(502, {})] * 10
        with pytest.raises(SyncFailed, match=r"gave up on POST \S*/v1/reports/custom\S* after 5 attempts"):
            run(settings)
    assert len(fake.calls) == 5 and len(recorded_sleeps) == 4
    db_counts, last = counts(settings)
    assert last["status"] == "failed" and db_counts["missing_records"] == 0
    assert db_counts["source_records"] == 4


def test_revoked_api_key_401_fails_at_once_as_config_error(bamboo: FakeBamboo) -> None:
    # A static API key has nothing to refresh: one call, no retry, a config error naming the credentials.
    bamboo.errors = [(401, {})]
    with pytest.raises(ConnectorError, match="authentication failed") as err:
        pull()
    assert err.value.kind == "config" and len(bamboo.calls) == 1
    assert "bamboo-KEY-123" not in str(err.value)


def test_malformed_employee_is_quarantined_and_the_rest_synced(bamboo: FakeBamboo, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    result = run(settings)
    assert result.status == "success"
    assert result.counts["employees"]["quarantined"] == 1 and result.counts["employees"]["new"] == 4
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        (row,) = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert row[2:4] == ("hr", "employees") and "no source key" in row[5]


def test_incremental_run_filters_on_the_saved_last_changed(bamboo: FakeBamboo, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    run(settings)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        assert repo.runs.get_cursors("hr") == {"employees": "2024-06-01T07:30:00+00:00"}
    store.close()
    bamboo.calls.clear()
    bamboo.report = fx("report_changed.json")
    result = run(settings, full=False)
    assert result.status == "success" and result.counts["employees"]["changed"] == 1
    assert bamboo.bodies()[0]["filters"] == {"lastChanged": {"includeNull": "no",
                                                             "value": "2024-06-01T07:30:00+00:00"}}
    assert result.counts["_total"]["missing_marked"] == 0  # an incremental run never marks missing
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        assert repo.runs.get_cursors("hr") == {"employees": "2024-06-03T11:00:00+00:00"}
    store.close()


def test_terminated_in_hr_marks_the_golden_person_terminated(bamboo: FakeBamboo, tmp_path: Path) -> None:
    from tests_helpers import golden_by_key

    settings = make_settings(tmp_path)
    run(settings)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        olle = golden_by_key(repo, "person", "employee_id:E10311")
    store.close()
    assert olle["status"][0] == "terminated" and olle["end_date"][0] == "2024-05-31"


@pytest.mark.parametrize("overrides, problem", [
    ({"company_domain": "acme.bamboohr.com"}, "pattern"),
    ({"fields": [f"f{i}" for i in range(401)]}, "at most 400"),
    ({"apikey": "x"}, "Extra inputs"),
])
def test_settings_are_validated(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        BambooHRSettings.model_validate({**SETTINGS, **overrides})


# ----------------------------------------------------------------------------------- mapping golden

def mapped(record: dict[str, Any]) -> dict[str, Any]:
    obs = load_mapping(ROOT / "mappings" / "bamboohr.yaml").stream("employees").map(record)
    return {"key": obs.source_key, "observed_at": obs.observed_at, **obs.fields}


def test_mapping_golden() -> None:
    anna, lars, olle, maja, _ = fx("report.json")["employees"]
    assert mapped(anna) == {
        "key": "123", "observed_at": "2024-05-30T08:12:44Z", "employee_id": "E10442",
        "email": "anna.berg@example.com", "display_name": "Anna Berg", "department": "Finance",
        "title": "Controller", "manager": "lars.ek@example.com", "location": "Stockholm HQ", "status": "active",
        "start_date": "2021-03-01"}
    assert mapped(lars)["display_name"] == "Lars Ek" and "manager" not in mapped(lars)
    assert (mapped(olle)["status"], mapped(olle)["end_date"]) == ("terminated", "2024-05-31")
    assert "employee_id" not in mapped(maja) and "email" not in mapped(maja)
