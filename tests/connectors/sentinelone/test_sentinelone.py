"""SentinelOne connector over `responses` HTTP mocks, alone and through the engine (run_connector)."""

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
import responses
from itam_sync.connectors.sentinelone.connector import SentinelOneConnector, SentinelOneSettings

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import RunResult, SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import ConnectorError, StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite, record_sleeps

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
MAPPING = ROOT / "mappings" / "sentinelone.yaml"
CONSOLE = "https://acme.sentinelone.net"
AGENTS_URL = f"{CONSOLE}/web/api/v2.1/agents"
SETTINGS: dict[str, Any] = {"base_url": CONSOLE, "api_token": "s1-test-token", "page_size": 2}
W11 = "1802939383764720122"
MBP = "1802939383764720555"
OLD_W11 = "1612873562219875001"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


class FakeConsole:
    """Serves /agents by opaque cursor and `limit`, honouring `updatedAt__gt` and `isDecommissioned`.

    Like the console, it leaves decommissioned agents out unless `isDecommissioned` asks for them ("Include
    active, decommissioned or both. Example: "True,False"", GET /web/api/v2.1/agents parameter)."""

    def __init__(self, rsps: responses.RequestsMock, agents: list[Any] | None = None) -> None:
        self.agents = load("agents.json") if agents is None else agents
        self.calls: list[dict[str, str]] = []
        self.failing_cursors: set[str] = set()  # pages answering 500
        rsps.add_callback(responses.GET, AGENTS_URL, callback=self.page)

    def page(self, request: Any) -> tuple[int, dict[str, str], str]:
        if request.headers.get("Authorization") != "ApiToken s1-test-token":
            error = {"code": 4010010, "detail": None, "title": "Authentication Failed"}
            return 401, {}, json.dumps({"errors": [error]})
        q = query(request.url)
        self.calls.append(q)
        if q.get("cursor") in self.failing_cursors:
            return 500, {}, json.dumps({"errors": [{"code": 5000010, "title": "Server Error"}]})
        wanted = {v.strip().lower() == "true" for v in q.get("isDecommissioned", "false").split(",")}
        agents = [a for a in self.agents if bool(a.get("isDecommissioned")) in wanted]
        if "updatedAt__gt" in q:
            agents = [a for a in agents if a["updatedAt"] > q["updatedAt__gt"]]
        start = int(base64.b64decode(q["cursor"]).decode().split(":")[1]) if "cursor" in q else 0
        end = start + int(q["limit"])
        cursor = base64.b64encode(f"agent_pos:{end}".encode()).decode() if end < len(agents) else None
        body = {"data": agents[start:end], "pagination": {"nextCursor": cursor, "totalItems": len(agents)}}
        return 200, {}, json.dumps(body)


@contextlib.contextmanager
def console_http(fail: bool) -> Iterator[None]:
    """The conformance suite's mock: the recorded console, or one answering 503 to everything."""
    with record_sleeps(), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        if fail:
            rsps.add(responses.GET, re.compile(rf"{re.escape(CONSOLE)}/.*"), status=503)
        else:
            FakeConsole(rsps)
        yield


TestSentinelOneConformance = conformance_suite(SentinelOneConnector, SETTINGS, mock=console_http, mapping=MAPPING)


# ------------------------------------------------------------------------------------------ helpers


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 's1.db'}"),
                    connectors=[ConnectorConfig(name="s1", type="sentinelone", settings={**SETTINGS, **overrides},
                                                mapping=str(MAPPING))])


def run(settings: Settings, *, full: bool) -> RunResult:
    return run_connector(settings, "s1", full=full, registry=Registry(extra={"sentinelone": SentinelOneConnector}))


def pull(**overrides: Any) -> list[Any]:
    conn = SentinelOneConnector("s1", SentinelOneSettings.model_validate({**SETTINGS, **overrides}))
    try:
        return list(conn.streams()[0].records(StreamState()))
    finally:
        conn.close()


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


# -------------------------------------------------------------------------------------------- tests


def test_follows_next_cursor_until_null(rsps: responses.RequestsMock) -> None:
    fake = FakeConsole(rsps)
    records = pull()
    assert [r["id"] for r in records] == [a["id"] for a in fake.agents]
    assert [c.get("cursor") for c in fake.calls] == [None, "YWdlbnRfcG9zOjI=", "YWdlbnRfcG9zOjQ="]
    assert all(c["limit"] == "2" and "updatedAt__gt" not in c for c in fake.calls)
    assert rsps.calls[0].request.headers["Authorization"] == "ApiToken s1-test-token"


def test_filters_and_console_url_forms(rsps: responses.RequestsMock) -> None:
    fake = FakeConsole(rsps)
    pull(base_url=f"{CONSOLE}/web/api/v2.1/", account_ids=["433241117337583618"], site_ids=["1", "2"])
    assert fake.calls[0]["accountIds"] == "433241117337583618" and fake.calls[0]["siteIds"] == "1,2"
    assert rsps.calls[0].request.url.startswith(AGENTS_URL + "?")  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        SentinelOneSettings.model_validate({**SETTINGS, "page_size": 1001})


def test_empty_console(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    rsps.add(responses.GET, AGENTS_URL, json=load("page_empty.json"))
    result = run(settings_for(tmp_path), full=True)
    assert result.status == "success" and result.counts["agents"]["seen"] == 0
    assert len(rsps.calls) == 1


def test_empty_page_with_a_cursor_ends_paging(rsps: responses.RequestsMock) -> None:
    first = {"data": load("agents.json")[:2], "pagination": {"nextCursor": "c2", "totalItems": 5}}
    empty = {"data": [], "pagination": {"nextCursor": "c3", "totalItems": 5}}
    rsps.add(responses.GET, AGENTS_URL, json=first)
    rsps.add(responses.GET, AGENTS_URL, json=empty)
    rsps.add(responses.GET, AGENTS_URL, json=first)  # never asked for
    assert len(pull()) == 2
    assert len(rsps.calls) == 2


def test_429_then_success_waits_what_the_server_asked(rsps: responses.RequestsMock,
                                                      recorded_sleeps: list[float]) -> None:
    rsps.add(responses.GET, AGENTS_URL, status=429, headers={"Retry-After": "12"},
             json={"errors": [{"code": 4290010, "title": "Too Many Requests"}]})
    fake = FakeConsole(rsps)
    assert len(pull()) == 5
    assert recorded_sleeps == [12.0]
    assert len(fake.calls) == 3


def test_5xx_given_up_fails_the_run_and_marks_nothing_missing(rsps: responses.RequestsMock, tmp_path: Path,
                                                             recorded_sleeps: list[float]) -> None:
    settings = settings_for(tmp_path)
    fake = FakeConsole(rsps)
    assert run(settings, full=True).status == "success"
    recorded_sleeps.clear()
    # The second page now fails every time: a partial pull must not mark agents of pages 2-3 missing.
    fake.failing_cursors.add("YWdlbnRfcG9zOjI=")
    fake.calls.clear()
    with pytest.raises(SyncFailed, match="gave up"):
        run(settings, full=True)
    assert [c.get("cursor") for c in fake.calls] == [None] + ["YWdlbnRfcG9zOjI="] * 5
    assert len(recorded_sleeps) == 4
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        counts = repo.entities.counts()
        assert repo.runs.list_runs(1)[0]["status"] == "failed"
    store.close()
    assert counts["missing_records"] == 0 and counts["source_records"] == 4


def test_rejected_token_fails_fast_as_a_config_error(rsps: responses.RequestsMock,
                                                     recorded_sleeps: list[float]) -> None:
    # API tokens are static: a 401 (expired or revoked) is not retried and tells the operator what to fix.
    FakeConsole(rsps)
    with pytest.raises(ConnectorError) as err:
        pull(api_token="expired-token")
    assert err.value.kind == "config" and "credentials" in str(err.value)
    assert len(rsps.calls) == 1 and recorded_sleeps == []
    assert "expired-token" not in str(err.value)


def test_malformed_agent_is_quarantined(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    FakeConsole(rsps)
    settings = settings_for(tmp_path)
    result = run(settings, full=True)
    assert result.status == "success"
    assert result.counts["agents"]["quarantined"] == 1 and result.counts["agents"]["new"] == 4
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        rows = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert rows[0][4] == "1744001122334455999" and "last_seen" in rows[0][5]


def test_incremental_run_sends_updated_at_gt_the_saved_cursor(rsps: responses.RequestsMock,
                                                              tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    fake = FakeConsole(rsps)
    run(settings, full=True)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        assert repo.runs.get_cursors("s1") == {"agents": "2024-06-02T08:04:02.100000Z"}
    store.close()
    fake.agents[1] = {**fake.agents[1], "infected": False, "activeThreats": 0, "networkStatus": "connected",
                      "updatedAt": "2024-06-02T09:15:00.000000Z"}
    fake.calls.clear()
    result = run(settings, full=False)
    assert fake.calls[0]["updatedAt__gt"] == "2024-06-02T08:04:02.100000Z"
    assert result.counts["agents"]["seen"] == 1 and result.counts["agents"]["changed"] == 1
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        assert repo.runs.get_cursors("s1") == {"agents": "2024-06-02T09:15:00.000000Z"}
        assert repo.entities.counts()["missing_records"] == 0
    store.close()


def test_mapping_golden_records() -> None:
    agents = {a["id"]: a for a in load("agents.json")}
    stream = load_mapping(MAPPING).stream("agents")
    w11 = stream.map(agents[W11])
    assert w11.source_key == W11 and w11.observed_at == "2024-06-02T08:04:01Z"
    assert w11.fields == {
        "kind": "laptop",
        "serial_number": "5CG1234XYZ",
        "mac_addresses": ["a4b1c2d3e4f5", "f42679123456"],
        "hostname": "lt-anna-w11",
        "model": "HP EliteBook 840 G8",
        "os_name": "Windows",
        "os_version": "22631",
        "ip_addresses": ["198.51.100.24", "10.20.4.17"],
        "last_seen": "2024-06-02T08:04:01Z",
        "agent_version": "24.1.2.6",
        "threat_state": "clean",
        "containment_state": "normal",
        "health_state": "active",
        "edr_protected": True,
    }
    mbp = stream.map(agents[MBP]).fields
    assert mbp["threat_state"] == "infected" and mbp["containment_state"] == "contained"
    assert mbp["mac_addresses"] == ["a483e7112233", "0242ac110002"]  # identity decides the docker MAC never joins
    assert mbp["os_name"] == "macOS" and mbp["os_version"] == "14.5 (23F79)"
    old = stream.map(agents[OLD_W11]).fields
    assert old["edr_protected"] is False and old["health_state"] == "decommissioned"
    assert old["serial_number"] == "5CG1234XYZ"  # joins the same asset as the new agent
    server = stream.map(agents["1744001122334455667"]).fields
    assert server["kind"] == "server" and "serial_number" not in server and server["hostname"] == "db-prod-02"
    assert server["ip_addresses"] == ["10.50.0.12", "172.17.0.1"]


def test_decommissioned_agents_are_asked_for_and_kept_not_marked_missing(rsps: responses.RequestsMock,
                                                                         tmp_path: Path) -> None:
    """Issue #14: the console leaves decommissioned agents out by default; the connector asks for both, so an
    agent decommissioned since the last run reads as `health_state: decommissioned`, not as missing."""
    agents = load("agents.json")
    old = next(a for a in agents if a["id"] == OLD_W11)
    fake = FakeConsole(rsps, agents=[{**old, "isDecommissioned": False, "isActive": True}]
                       + [a for a in agents if a["id"] != OLD_W11])
    settings = settings_for(tmp_path)
    first = run(settings, full=True)
    assert first.status == "success"
    fake.agents = agents  # since then the old agent was decommissioned in the console
    fake.calls.clear()
    result = run(settings, full=True)
    assert {c["isDecommissioned"] for c in fake.calls} == {"true,false"}
    assert result.counts["_total"]["missing_marked"] == 0
    assert result.counts["agents"]["changed"] == 1
    store = Store.open(settings.store.url)
    try:
        with store.begin() as repo:
            assert repo.entities.counts()["missing_records"] == 0
    finally:
        store.close()
    [record] = [r for r in pull() if r["id"] == OLD_W11]
    fields = load_mapping(MAPPING).stream("agents").map(record).fields
    assert fields["health_state"] == "decommissioned" and fields["edr_protected"] is False


def test_include_decommissioned_false_reads_active_agents_only(rsps: responses.RequestsMock) -> None:
    fake = FakeConsole(rsps)
    ids = [r["id"] for r in pull(include_decommissioned=False)]
    assert OLD_W11 not in ids and {c.get("isDecommissioned") for c in fake.calls} == {None}
