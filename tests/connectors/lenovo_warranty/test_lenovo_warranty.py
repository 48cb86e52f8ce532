"""The Lenovo warranty connector over `responses`: look-ups, batches, throttling, failures, cursor, mapping."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from itam_sync.connectors.lenovo_warranty.connector import LenovoWarrantyConnector, LenovoWarrantySettings
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
URL = "https://supportapi.lenovo.com/v2.5/warranty"
SERIALS = ["PF5XYZ12", "PF4ABCDE", "UNKNOWN1"]
SETTINGS: dict[str, Any] = {"client_id": "lenovo-KEY-SECRET", "serials": SERIALS}


def fx(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeLenovo:
    """One serial -> one object, several (comma-separated) -> a list; unknown serials -> an error object."""

    def __init__(self, fail: bool = False) -> None:
        records = fx("warranties.json")
        self.known = {r["Serial"]: r for r in records if r.get("Serial")}
        self.known["BROKEN1"] = records[3]
        self.fail = fail
        self.errors: list[tuple[int, dict[str, str]]] = []
        self.calls: list[requests.PreparedRequest] = []
        self.body_override: Any = None

    def install(self, rsps: responses.RequestsMock) -> FakeLenovo:
        rsps.add_callback(responses.GET, URL, callback=self.serve)
        return self

    def serve(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.calls.append(request)
        if self.fail:
            return 500, {}, "Internal Server Error"
        if self.errors:
            status, headers = self.errors.pop(0)
            return status, headers, json.dumps({"Message": "error"})
        if self.body_override is not None:
            return 200, {}, json.dumps(self.body_override)
        serials = self.requested()[-1]
        answers = [self.known.get(s) or {"Serial": s, "ErrorCode": 101, "ErrorMessage": "Invalid serial number"}
                   for s in serials]
        return 200, {"Content-Type": "application/json"}, json.dumps(answers[0] if len(answers) == 1 else answers)

    def requested(self) -> list[list[str]]:
        return [parse_qs(urlsplit(str(c.url)).query)["Serial"][0].split(",") for c in self.calls]


def lenovo_mock(fail: bool) -> contextlib.AbstractContextManager[Any]:
    @contextlib.contextmanager
    def serve() -> Iterator[FakeLenovo]:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps, record_sleeps():
            yield FakeLenovo(fail=fail).install(rsps)
    return serve()


TestLenovoWarrantyConformance = conformance_suite(LenovoWarrantyConnector, SETTINGS, mock=lenovo_mock)


@pytest.fixture
def lenovo() -> Iterator[FakeLenovo]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeLenovo().install(rsps)


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp / 'lenovo.db'}"),
                    connectors=[ConnectorConfig(name="lenovo", type="lenovo_warranty",
                                                settings={**SETTINGS, **overrides},
                                                mapping=str(ROOT / "mappings" / "lenovo_warranty.yaml"))])


def run(settings: Settings, full: bool = True) -> Any:
    return run_connector(settings, "lenovo", full=full,
                         registry=Registry(extra={"lenovo_warranty": LenovoWarrantyConnector}))


def pull(state: StreamState | None = None, **overrides: Any) -> list[Any]:
    conn = LenovoWarrantyConnector("lenovo", LenovoWarrantySettings.model_validate({**SETTINGS, **overrides}))
    (stream,) = conn.streams()
    return list(stream.records(state or StreamState()))


def db(settings: Settings) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        out = repo.entities.counts(), repo.runs.get_cursors("lenovo"), repo.runs.list_runs(1)[0]
    store.close()
    return out


# -------------------------------------------------------------------------------------------- tests

def test_one_call_per_serial_with_the_client_id_header_and_unknown_serials_skipped(lenovo: FakeLenovo) -> None:
    got = pull()
    assert [r["Serial"] for r in got] == ["PF5XYZ12", "PF4ABCDE"]
    assert lenovo.requested() == [["PF5XYZ12"], ["PF4ABCDE"], ["UNKNOWN1"]]
    assert {c.headers["ClientID"] for c in lenovo.calls} == {"lenovo-KEY-SECRET"}


def test_batches_send_comma_separated_serials_and_read_list_answers(lenovo: FakeLenovo) -> None:
    got = pull(serials=[*SERIALS, "PF9NEW01", "BROKEN1"], batch_size=2)
    assert lenovo.requested() == [["PF5XYZ12", "PF4ABCDE"], ["UNKNOWN1", "PF9NEW01"], ["BROKEN1"]]
    assert [r["Serial"] for r in got if not isinstance(r, BadRecord)] == ["PF5XYZ12", "PF4ABCDE"]
    assert isinstance(got[-1], BadRecord) and "without a Serial" in got[-1].reason


def test_serials_file_export_keeps_lenovo_rows(lenovo: FakeLenovo, tmp_path: Path) -> None:
    export = tmp_path / "assets.csv"
    export.write_text("id,status,serial_number,manufacturer\n1,live,pf5xyz12,LENOVO\n2,live,7QK2LM3,Dell Inc.\n")
    pull(serials=[], serials_file=str(export))
    assert lenovo.requested() == [["PF5XYZ12"]]


def test_empty_list_answer_is_no_records_and_a_scalar_answer_fails(lenovo: FakeLenovo) -> None:
    lenovo.body_override = []
    assert pull() == []
    lenovo.body_override = "Service unavailable"
    with pytest.raises(ConnectorError, match="malformed warranty answer"):
        pull()


def test_429_then_success_waits_the_retry_after(lenovo: FakeLenovo, recorded_sleeps: list[float]) -> None:
    lenovo.errors = [(429, {"Retry-After": "5"})]
    assert len(pull()) == 2
    assert recorded_sleeps == [5.0] and len(lenovo.calls) == 4


def test_5xx_gives_up_fails_the_run_and_marks_nothing_missing(tmp_path: Path, recorded_sleeps: list[float]) -> None:
    settings = make_settings(tmp_path)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeLenovo().install(rsps)
        assert run(settings).status == "success"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeLenovo().install(rsps)
        fake.errors = [(500, {})] * 10
        with pytest.raises(SyncFailed, match=r"gave up on GET \S*/v2.5/warranty\S* after 5 attempts"):
            run(settings)
    assert len(fake.calls) == 5 and len(recorded_sleeps) == 4
    counts, _, last = db(settings)
    assert last["status"] == "failed" and counts["missing_records"] == 0 and counts["source_records"] == 2


def test_rejected_api_key_401_fails_at_once_as_config_error(lenovo: FakeLenovo) -> None:
    # A static API key has nothing to refresh: one call, no retry, a config error naming the credentials.
    lenovo.errors = [(401, {})]
    with pytest.raises(ConnectorError, match="authentication failed") as err:
        pull()
    assert err.value.kind == "config" and len(lenovo.calls) == 1
    assert "lenovo-KEY-SECRET" not in str(err.value)


def test_record_without_serial_is_quarantined(lenovo: FakeLenovo, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, serials=[*SERIALS, "BROKEN1"])
    result = run(settings)
    assert result.counts["warranties"]["quarantined"] == 1 and result.counts["warranties"]["new"] == 2


def test_incremental_run_looks_up_only_new_serials(lenovo: FakeLenovo, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    run(settings)
    assert db(settings)[1] == {"warranties": SERIALS}
    lenovo.calls.clear()
    settings = make_settings(tmp_path, serials=[*SERIALS, "PF9NEW01"])
    assert run(settings, full=False).counts["_total"]["missing_marked"] == 0
    assert lenovo.requested() == [["PF9NEW01"]]
    assert db(settings)[1] == {"warranties": [*SERIALS, "PF9NEW01"]}


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="serials and/or serials_file"):
        LenovoWarrantySettings.model_validate({"client_id": "k"})


# ----------------------------------------------------------------------------------- mapping golden

def mapped(record: dict[str, Any]) -> dict[str, Any]:
    obs = load_mapping(ROOT / "mappings" / "lenovo_warranty.yaml").stream("warranties").map(record)
    return {"key": obs.source_key, "observed_at": obs.observed_at, **obs.fields}


def test_mapping_golden() -> None:
    x1, t14, _, _ = fx("warranties.json")
    assert mapped(x1) == {
        "key": "PF5XYZ12", "observed_at": None, "serial_number": "PF5XYZ12", "manufacturer": "Lenovo",
        "model": "20XW00K1MX - ThinkPad X1 Carbon Gen 12", "ship_date": "2024-05-28",
        "warranty_start": "2024-05-28", "warranty_end": "2027-05-27", "service_level": "3Y Premier Support"}
    assert (mapped(t14)["warranty_end"], mapped(t14)["service_level"]) == ("2024-02-19", "Depot/Carry-in")
