"""The Dell warranty connector over `responses`: batches, token refresh, throttling, cursor, mapping."""

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
from itam_sync.connectors.dell_warranty.connector import DellWarrantyConnector, DellWarrantySettings
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
BASE = "https://apigtwb2c.us.dell.com"
TOKEN_URL = f"{BASE}/auth/oauth/v2/token"
LOOKUP = f"{BASE}/PROD/sbil/eapi/v5/asset-entitlements"
TAGS = ["7QK2LM3", "8RL3MN4", "NOTADELL", "5ZZ9AB1"]
SETTINGS: dict[str, Any] = {"client_id": "dell-client", "client_secret": "dell-SECRET", "serials": TAGS}


def fx(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeDell:
    """Answers each requested tag from the fixtures (unknown tags: `invalid: true`); issues numbered tokens."""

    def __init__(self, fail: bool = False) -> None:
        self.known = {r["serviceTag"]: r for r in fx("entitlements_batch1.json") + fx("entitlements_batch2.json")
                      if r.get("serviceTag")}
        self.broken = fx("entitlements_batch2.json")[1]  # served for tag BROKEN1: no serviceTag in it
        self.fail = fail
        self.errors: list[tuple[int, dict[str, str]]] = []
        self.calls: list[requests.PreparedRequest] = []
        self.tokens: list[dict[str, str]] = []

    def install(self, rsps: responses.RequestsMock) -> FakeDell:
        rsps.add_callback(responses.GET, LOOKUP, callback=self.serve)
        rsps.add_callback(responses.POST, TOKEN_URL, callback=self.token)
        return self

    def token(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.tokens.append({k: v[0] for k, v in parse_qs(str(request.body)).items()})
        return 200, {}, json.dumps({"access_token": f"dell-at-{len(self.tokens)}", "token_type": "Bearer",
                                    "expires_in": 3600, "scope": "oob"})

    def serve(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.calls.append(request)
        if self.fail:
            return 500, {}, json.dumps({"error": "internal"})
        if self.errors:
            status, headers = self.errors.pop(0)
            return status, headers, json.dumps({"error": "throttled"})
        out = []
        for tag in self.requested()[-1]:
            if tag == "BROKEN1":
                out.append(self.broken)
            else:
                out.append(self.known.get(tag) or {"id": None, "serviceTag": tag, "invalid": True,
                                                   "entitlements": []})
        return 200, {"Content-Type": "application/json"}, json.dumps(out)

    def requested(self) -> list[list[str]]:
        out = []
        for c in self.calls:
            q = parse_qs(urlsplit(str(c.url)).query)
            out.append(q["servicetags"][0].split(",") if "servicetags" in q else [])
        return out


def dell_mock(fail: bool) -> contextlib.AbstractContextManager[Any]:
    @contextlib.contextmanager
    def serve() -> Iterator[FakeDell]:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps, record_sleeps():
            yield FakeDell(fail=fail).install(rsps)
    return serve()


TestDellWarrantyConformance = conformance_suite(DellWarrantyConnector, SETTINGS, mock=dell_mock)


@pytest.fixture
def dell() -> Iterator[FakeDell]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeDell().install(rsps)


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp / 'dell.db'}"),
                    connectors=[ConnectorConfig(name="dell", type="dell_warranty", settings={**SETTINGS, **overrides},
                                                mapping=str(ROOT / "mappings" / "dell_warranty.yaml"))])


def run(settings: Settings, full: bool = True) -> Any:
    return run_connector(settings, "dell", full=full, registry=Registry(extra={"dell_warranty": DellWarrantyConnector}))


def pull(state: StreamState | None = None, **overrides: Any) -> list[Any]:
    conn = DellWarrantyConnector("dell", DellWarrantySettings.model_validate({**SETTINGS, **overrides}))
    (stream,) = conn.streams()
    return list(stream.records(state or StreamState()))


def db(settings: Settings) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        out = repo.entities.counts(), repo.runs.get_cursors("dell"), repo.runs.list_runs(1)[0]
    store.close()
    return out


# -------------------------------------------------------------------------------------------- tests

def test_lookup_sends_tags_with_a_bearer_token_and_skips_unknown_tags(dell: FakeDell) -> None:
    got = pull()
    assert [r["serviceTag"] for r in got] == ["7QK2LM3", "8RL3MN4", "5ZZ9AB1"]  # NOTADELL is invalid: skipped
    assert dell.requested() == [TAGS]
    assert dell.calls[0].headers["Authorization"] == "Bearer dell-at-1"
    assert dell.tokens == [{"grant_type": "client_credentials", "client_id": "dell-client",
                            "client_secret": "dell-SECRET"}]


def test_tags_go_in_batches_of_at_most_100_and_stream_as_they_come(dell: FakeDell) -> None:
    tags = ["7QK2LM3", *(f"T{i:06d}" for i in range(228)), "8RL3MN4"]
    (stream,) = DellWarrantyConnector("dell", DellWarrantySettings.model_validate(
        {**SETTINGS, "serials": tags})).streams()
    records = stream.records(StreamState())
    assert next(records)["serviceTag"] == "7QK2LM3"
    assert len(dell.calls) == 1  # the first batch's records come before the next batch is asked for
    assert [r["serviceTag"] for r in records] == ["8RL3MN4"]
    assert [len(b) for b in dell.requested()] == [100, 100, 30]
    dell.calls.clear()
    pull(serials=tags[:7], batch_size=3)
    assert dell.requested() == [tags[0:3], tags[3:6], tags[6:7]]


def test_serials_file_from_an_asset_export_keeps_dell_rows_only(dell: FakeDell, tmp_path: Path) -> None:
    export = tmp_path / "assets.csv"
    export.write_text("id,status,kind,serial_number,manufacturer,model\n"
                      "1,live,laptop,7QK2LM3,Dell Inc.,Latitude 7440\n"
                      "2,live,laptop,C02FK1ABQ6L4,Apple,MacBook Pro\n"
                      "3,live,desktop,8rl3mn4,DELL,OptiPlex 7010\n"
                      "4,live,laptop,,Dell Inc.,Latitude\n"
                      "5,live,laptop,To Be Filled By O.E.M.,Dell Inc.,Latitude\n")
    pull(serials=[], serials_file=str(export))
    assert dell.requested() == [["7QK2LM3", "8RL3MN4"]]
    text = tmp_path / "tags.txt"
    text.write_text("# tags from the Q2 order\n7QK2LM3\n\n 5zz9ab1 \n7QK2LM3\n")
    pull(serials=["8RL3MN4"], serials_file=str(text))
    assert dell.requested()[1] == ["8RL3MN4", "7QK2LM3", "5ZZ9AB1"]


def test_serials_file_problems_are_config_errors(dell: FakeDell, tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="cannot read serials_file") as err:
        pull(serials_file=str(tmp_path / "nope.txt"))
    assert err.value.kind == "config"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,hostname\n1,pc-1\n")
    with pytest.raises(ConnectorError, match="no serial column"):
        pull(serials_file=str(bad))


def test_no_serials_means_no_calls_and_an_empty_answer_is_no_records(dell: FakeDell, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing yet\n")
    assert pull(serials=[], serials_file=str(empty)) == [] and dell.calls == []
    dell.known.clear()
    assert pull(serials=["AAAAAA1"]) == []


def test_429_then_success_waits_the_retry_after(dell: FakeDell, recorded_sleeps: list[float]) -> None:
    dell.errors = [(429, {"Retry-After": "15"})]
    assert len(pull()) == 3
    assert recorded_sleeps == [15.0] and len(dell.calls) == 2


def test_5xx_gives_up_fails_the_run_and_marks_nothing_missing(tmp_path: Path, recorded_sleeps: list[float]) -> None:
    settings = make_settings(tmp_path)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeDell().install(rsps)
        assert run(settings).status == "success"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeDell().install(rsps)
        fake.errors = [(503, {})] * 10
        with pytest.raises(SyncFailed, match=r"gave up on GET \S*asset-entitlements\S* after 5 attempts"):
            run(settings)
    assert len(fake.calls) == 5 and len(recorded_sleeps) == 4
    counts, _, last = db(settings)
    assert last["status"] == "failed" and counts["missing_records"] == 0 and counts["source_records"] == 3


def test_expired_token_is_refreshed_on_401(dell: FakeDell) -> None:
    dell.errors = [(401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})]
    assert len(pull()) == 3
    assert [c.headers["Authorization"] for c in dell.calls] == ["Bearer dell-at-1", "Bearer dell-at-2"]
    assert len(dell.tokens) == 2


def test_record_without_a_service_tag_is_quarantined(dell: FakeDell, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, serials=[*TAGS, "BROKEN1"])
    result = run(settings)
    assert result.status == "success"
    assert result.counts["warranties"]["quarantined"] == 1 and result.counts["warranties"]["new"] == 3
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        (row,) = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert "without a serviceTag" in row[5]


def test_incremental_run_looks_up_only_new_serials_and_full_run_all(dell: FakeDell, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    run(settings)
    assert db(settings)[1] == {"warranties": TAGS}
    dell.calls.clear()
    settings = make_settings(tmp_path, serials=["8RL3MN4", "5ZZ9AB1", "9TX4PQ5"])  # one new, one dropped
    result = run(settings, full=False)
    assert dell.requested() == [["9TX4PQ5"]]
    assert result.counts["_total"]["missing_marked"] == 0
    assert db(settings)[1] == {"warranties": ["8RL3MN4", "5ZZ9AB1", "9TX4PQ5"]}  # kept to the current list
    assert run(settings, full=False).counts["warranties"]["seen"] == 0 and dell.requested()[1:] == []
    dell.calls.clear()
    run(settings, full=True)
    assert dell.requested() == [["8RL3MN4", "5ZZ9AB1", "9TX4PQ5"]]


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="serials and/or serials_file"):
        DellWarrantySettings.model_validate({**SETTINGS, "serials": []})
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        DellWarrantySettings.model_validate({**SETTINGS, "batch_size": 101})


def test_secrets_stay_out_of_reprs() -> None:
    conn = DellWarrantyConnector("dell", DellWarrantySettings.model_validate(SETTINGS))
    assert "SECRET" not in repr(conn.http)


# ----------------------------------------------------------------------------------- mapping golden

def mapped(record: dict[str, Any]) -> dict[str, Any]:
    obs = load_mapping(ROOT / "mappings" / "dell_warranty.yaml").stream("warranties").map(record)
    return {"key": obs.source_key, "observed_at": obs.observed_at, **obs.fields}


def test_mapping_golden() -> None:
    latitude, optiplex, _ = fx("entitlements_batch1.json")
    assert mapped(latitude) == {
        "key": "7QK2LM3", "observed_at": None, "serial_number": "7QK2LM3", "manufacturer": "Dell",
        "model": "LATITUDE 7440", "kind": "laptop", "ship_date": "2024-05-03", "warranty_start": "2024-05-03",
        "warranty_end": "2027-05-06", "service_level": "ProSupport Plus: Next Business Day Onsite"}
    assert mapped(optiplex)["kind"] == "desktop" and mapped(optiplex)["warranty_end"] == "2026-11-21"
    precision = mapped(fx("entitlements_batch2.json")[0])  # no entitlements at all: no warranty fields
    assert "warranty_end" not in precision and "kind" not in precision and precision["ship_date"] == "2024-05-21"
