"""The Workday RaaS connector over `responses`: auth (ISU basic, refresh token), throttling, cursor, mapping."""

from __future__ import annotations

import base64
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
from itam_sync.connectors.workday.connector import WorkdayConnector, WorkdaySettings
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
HOST = "https://wd5-services1.myworkday.com"
REPORT = f"{HOST}/ccx/service/customreport2/acme/ISU_ITAM/ITAM_Workers"
TOKEN_URL = f"{HOST}/ccx/oauth2/acme/token"
SETTINGS: dict[str, Any] = {"report_url": REPORT, "username": "ISU_ITAM@acme", "password": "pw-SECRET"}
OAUTH: dict[str, Any] = {"report_url": REPORT, "client_id": "wd-client", "client_secret": "cs-SECRET",
                         "refresh_token": "rt-SECRET"}


def fx(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeWorkday:
    """Serves the report (one response, no paging); `errors` are (status, headers) served first."""

    def __init__(self, fail: bool = False) -> None:
        self.body: Any = fx("report.json")
        self.fail = fail
        self.errors: list[tuple[int, dict[str, str]]] = []
        self.calls: list[requests.PreparedRequest] = []
        self.tokens: list[dict[str, str]] = []

    def install(self, rsps: responses.RequestsMock) -> FakeWorkday:
        rsps.add_callback(responses.GET, re.compile(re.escape(REPORT) + r"(\?.*)?$"), callback=self.serve)
        rsps.add_callback(responses.POST, TOKEN_URL, callback=self.token)
        return self

    def serve(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.calls.append(request)
        if self.fail:
            return 500, {}, "<html>Internal error</html>"
        if self.errors:
            status, headers = self.errors.pop(0)
            return status, headers, ""
        return 200, {"Content-Type": "application/json"}, json.dumps(self.body)

    def token(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        form = {k: v[0] for k, v in parse_qs(str(request.body)).items()}
        form["_auth"] = request.headers.get("Authorization", "")
        self.tokens.append(form)
        return 200, {}, json.dumps({"access_token": f"wd-at-{len(self.tokens)}", "token_type": "Bearer",
                                    "expires_in": 3600})

    def queries(self) -> list[dict[str, str]]:
        return [{k: v[0] for k, v in parse_qs(urlsplit(str(c.url)).query).items()} for c in self.calls]


def workday_mock(fail: bool) -> contextlib.AbstractContextManager[Any]:
    @contextlib.contextmanager
    def serve() -> Iterator[FakeWorkday]:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps, record_sleeps():
            yield FakeWorkday(fail=fail).install(rsps)
    return serve()


TestWorkdayConformance = conformance_suite(
    WorkdayConnector, {**SETTINGS, "incremental_prompt": "Updated_From"}, mock=workday_mock)


@pytest.fixture
def workday() -> Iterator[FakeWorkday]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeWorkday().install(rsps)


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp / 'workday.db'}"),
                    connectors=[ConnectorConfig(name="workday", type="workday", settings={**SETTINGS, **overrides},
                                                mapping=str(ROOT / "mappings" / "workday.yaml"))])


def run(settings: Settings, full: bool = True) -> Any:
    return run_connector(settings, "workday", full=full, registry=Registry(extra={"workday": WorkdayConnector}))


def pull(settings: dict[str, Any] | None = None, state: StreamState | None = None) -> list[Any]:
    conn = WorkdayConnector("workday", WorkdaySettings.model_validate(settings or SETTINGS))
    (stream,) = conn.streams()
    return list(stream.records(state or StreamState()))


# -------------------------------------------------------------------------------------------- tests

def test_report_read_with_isu_basic_auth_json_format_and_prompts(workday: FakeWorkday) -> None:
    got = pull({**SETTINGS, "report_url": REPORT + "?Include_Contractors=1", "params": {"Company": "ACME_SE"}})
    assert len(got) == 6
    (call,) = workday.calls
    assert call.headers["Authorization"] == "Basic " + base64.b64encode(b"ISU_ITAM@acme:pw-SECRET").decode()
    assert workday.queries() == [{"Include_Contractors": "1", "Company": "ACME_SE", "format": "json"}]
    assert urlsplit(str(call.url)).path == "/ccx/service/customreport2/acme/ISU_ITAM/ITAM_Workers"


def test_empty_report_is_no_records(workday: FakeWorkday) -> None:
    workday.body = {"Report_Entry": []}
    assert pull() == []


def test_body_without_report_entry_fails_instead_of_reading_as_empty(workday: FakeWorkday) -> None:
    workday.body = {"Report_Data": []}
    with pytest.raises(ConnectorError, match="no `Report_Entry` list"):
        pull()


def test_non_object_entry_is_a_bad_record(workday: FakeWorkday) -> None:
    workday.body = {"Report_Entry": [["E1"], {"Employee_ID": "E2"}]}
    bad, good = pull()
    assert isinstance(bad, BadRecord) and good == {"Employee_ID": "E2"}


def test_429_then_success_waits_the_retry_after(workday: FakeWorkday, recorded_sleeps: list[float]) -> None:
    workday.errors = [(429, {"Retry-After": "20"})]
    assert len(pull()) == 6
    assert recorded_sleeps == [20.0] and len(workday.calls) == 2


def test_5xx_gives_up_fails_the_run_and_marks_nothing_missing(tmp_path: Path, recorded_sleeps: list[float]) -> None:
    settings = make_settings(tmp_path)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeWorkday().install(rsps)
        assert run(settings).status == "success"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeWorkday().install(rsps)
        fake.errors = [(504, {})] * 10
        with pytest.raises(SyncFailed, match=r"gave up on GET \S*ITAM_Workers\S* after 5 attempts"):
            run(settings)
    assert len(fake.calls) == 5 and len(recorded_sleeps) == 4
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        counts, last = repo.entities.counts(), repo.runs.list_runs(1)[0]
    store.close()
    assert last["status"] == "failed" and counts["missing_records"] == 0 and counts["source_records"] == 4


def test_refresh_token_auth_derives_token_url_and_refreshes_on_401(workday: FakeWorkday) -> None:
    workday.errors = [(401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})]
    assert len(pull(OAUTH)) == 6
    assert [c.headers["Authorization"] for c in workday.calls] == ["Bearer wd-at-1", "Bearer wd-at-2"]
    basic = "Basic " + base64.b64encode(b"wd-client:cs-SECRET").decode()
    assert workday.tokens == [{"grant_type": "refresh_token", "refresh_token": "rt-SECRET", "_auth": basic}] * 2


def test_refresh_token_auth_with_client_fields_in_the_body(workday: FakeWorkday) -> None:
    pull({**OAUTH, "client_auth": "body"})
    assert workday.tokens == [{"grant_type": "refresh_token", "refresh_token": "rt-SECRET",
                               "client_id": "wd-client", "client_secret": "cs-SECRET", "_auth": ""}]


def test_malformed_workers_are_quarantined_and_the_rest_synced(workday: FakeWorkday, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    result = run(settings)
    assert result.status == "success"
    assert result.counts["workers"]["quarantined"] == 2 and result.counts["workers"]["new"] == 4
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        reasons = sorted(r[5] for r in repo.quarantine.list_quarantine(result.run_id))
    store.close()
    assert "no source key" in reasons[1] and "Hire_Date" in reasons[0]


def test_incremental_run_sends_the_last_run_start_in_the_prompt(workday: FakeWorkday, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, incremental_prompt="Updated_From",
                             incremental_prompt_format="%Y-%m-%dT%H:%M:%S.000Z", params={"Company": "ACME"})
    run(settings)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        cursor = repo.runs.get_cursors("workday")["workers"]
    store.close()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", cursor)
    assert "Updated_From" not in workday.queries()[0]  # the full run reads every worker
    workday.body = {"Report_Entry": [fx("report.json")["Report_Entry"][0]]}
    result = run(settings, full=False)
    assert result.status == "success" and result.counts["workers"]["unchanged"] == 1
    assert workday.queries()[1] == {"Company": "ACME", "format": "json",
                                    "Updated_From": cursor.replace("Z", ".000Z")}


def test_incremental_without_prompt_reads_everything_and_marks_nothing(workday: FakeWorkday, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    run(settings)
    workday.body = {"Report_Entry": fx("report.json")["Report_Entry"][:1]}
    result = run(settings, full=False)
    assert workday.queries()[1] == {"format": "json"}
    assert result.counts["_total"]["missing_marked"] == 0


@pytest.mark.parametrize("overrides, problem", [
    ({"username": None}, "set exactly one of"),
    ({"client_id": "c", "client_secret": "s", "refresh_token": "r"}, "set exactly one of"),
    ({"password": None}, "username needs password"),
    ({"report_url": REPORT + "?format=csv"}, "reads JSON"),
    ({"report_url": "wd5-services1.myworkday.com/ccx"}, "absolute URL"),
])
def test_settings_are_validated(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        WorkdaySettings.model_validate({**SETTINGS, **overrides})


def test_oauth_settings_need_all_three_and_a_derivable_token_url() -> None:
    with pytest.raises(ValidationError, match="needs client_id, client_secret and refresh_token"):
        WorkdaySettings.model_validate({**OAUTH, "client_secret": None})
    with pytest.raises(ValidationError, match="set token_url"):
        WorkdaySettings.model_validate({**OAUTH, "report_url": f"{HOST}/reports/x"})
    s = WorkdaySettings.model_validate({**OAUTH, "report_url": f"{HOST}/reports/x", "token_url": TOKEN_URL})
    assert s.token_url == TOKEN_URL


def test_secrets_stay_out_of_the_connector_repr() -> None:
    conn = WorkdayConnector("workday", WorkdaySettings.model_validate(OAUTH))
    assert "SECRET" not in repr(conn.http)


# ----------------------------------------------------------------------------------- mapping golden

def mapped(record: dict[str, Any]) -> dict[str, Any]:
    obs = load_mapping(ROOT / "mappings" / "workday.yaml").stream("workers").map(record)
    return {"key": obs.source_key, "observed_at": obs.observed_at, **obs.fields}


def test_mapping_golden() -> None:
    anna, lars, olle, kim, _, _ = fx("report.json")["Report_Entry"]
    assert mapped(anna) == {
        "key": "E10442", "observed_at": "2024-05-30T15:12:44Z", "employee_id": "E10442",
        "email": "anna.berg@example.com", "display_name": "Anna Berg", "status": "active",
        "start_date": "2021-03-01", "manager": "E10087", "department": "Finance (Lars Ek)", "title": "Controller",
        "location": "Stockholm HQ"}
    assert mapped(lars)["department"] == "Finance"  # an explicit Department column wins over the org
    assert (mapped(olle)["status"], mapped(olle)["end_date"], mapped(olle)["manager"]) == (
        "terminated", "2024-05-31", "lars.ek@example.com")
    assert "email" not in mapped(kim) and mapped(kim)["status"] == "active"
