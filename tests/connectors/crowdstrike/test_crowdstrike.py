"""CrowdStrike Falcon connector over `responses` HTTP mocks, alone and through the engine (run_connector)."""

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
import responses
from itam_sync.connectors.crowdstrike.connector import CrowdStrikeConnector, CrowdStrikeSettings

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import RunResult, SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import BadRecord, ConnectorError, StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite, record_sleeps

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
MAPPING = ROOT / "mappings" / "crowdstrike.yaml"
BASE = "https://api.eu-1.crowdstrike.com"
TOKEN_URL = f"{BASE}/oauth2/token"
SCROLL_URL = f"{BASE}/devices/queries/devices-scroll/v1"
ENTITIES_URL = f"{BASE}/devices/entities/devices/v2"
SETTINGS: dict[str, Any] = {"cloud": "eu-1", "client_id": "falcon-client", "client_secret": "falcon-secret",
                            "page_size": 2, "batch_size": 2}
ANNA = "3f6c1e0b9a2d4e8f8c7b6a5d4e3f2a1b"
EC2 = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


class FakeFalcon:
    """A Falcon cloud: token endpoint, scroll query (opaque offset tokens, FQL filter) and entities POST."""

    def __init__(self, rsps: responses.RequestsMock, hosts: list[Any] | None = None) -> None:
        self.hosts = load("hosts.json")["resources"] if hosts is None else hosts
        self.tokens_issued = 0
        self.revoked: set[str] = set()
        self.log: list[str] = []  # "token", "scroll:<offset>", "entities:<n ids>" in call order
        self.scroll_params: list[dict[str, str]] = []
        self.entity_batches: list[list[str]] = []
        self.token_forms: list[dict[str, str]] = []
        self.entities_status = 200  # set to a 5xx to make every details request fail
        self._scrolls: dict[str, int] = {}  # offset token -> position
        rsps.add_callback(responses.POST, TOKEN_URL, callback=self.token)
        rsps.add_callback(responses.GET, SCROLL_URL, callback=self.scroll)
        rsps.add_callback(responses.POST, ENTITIES_URL, callback=self.entities)

    def token(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.log.append("token")
        self.token_forms.append({k: v[0] for k, v in parse_qs(request.body).items()})
        self.tokens_issued += 1
        body = {**load("token.json"), "access_token": f"cs-token-{self.tokens_issued}"}
        return 201, {}, json.dumps(body)

    def _authorised(self, request: Any) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer cs-token-") and auth.removeprefix("Bearer ") not in self.revoked

    def _selected(self, fql: str | None) -> list[Any]:
        hosts = self.hosts
        if fql and (m := re.search(r"modified_timestamp:>='([^']+)'", fql)):
            hosts = [h for h in hosts if h.get("modified_timestamp", "") >= m[1]]
        return hosts

    def scroll(self, request: Any) -> tuple[int, dict[str, str], str]:
        if not self._authorised(request):
            return 401, {}, json.dumps({"errors": [{"code": 401, "message": "access denied, invalid bearer token"}]})
        q = query(request.url)
        self.scroll_params.append(q)
        self.log.append(f"scroll:{q.get('offset', '')}")
        ids = [h.get("device_id") for h in self._selected(q.get("filter"))]
        start = self._scrolls[q["offset"]] if "offset" in q else 0
        end = start + int(q["limit"])
        token = f"scroll-{len(self._scrolls) + 1}-x"  # opaque, new on every call (even past the end)
        self._scrolls[token] = end
        page = ids[start:end]
        body = {"meta": {"query_time": 0.01, "pagination": {"offset": token, "expires_at": 1717315500000000000,
                                                            "total": len(ids)},
                         "trace_id": "b1c2"}, "resources": page, "errors": []}
        return 200, {}, json.dumps(body)

    def entities(self, request: Any) -> tuple[int, dict[str, str], str]:
        if not self._authorised(request):
            return 401, {}, json.dumps({"errors": [{"code": 401, "message": "access denied"}]})
        ids = json.loads(request.body)["ids"]
        self.entity_batches.append(ids)
        self.log.append(f"entities:{len(ids)}")
        if self.entities_status != 200:
            return self.entities_status, {}, "<html>Bad Gateway</html>"
        by_id = {h.get("device_id"): h for h in self.hosts}
        body = {"meta": {"query_time": 0.02, "trace_id": "c3d4"}, "resources": [by_id[i] for i in ids if i in by_id],
                "errors": []}
        return 200, {}, json.dumps(body)


@contextlib.contextmanager
def falcon_http(fail: bool) -> Iterator[None]:
    """The conformance suite's mock: the recorded cloud, or one answering 503 to everything."""
    with record_sleeps(), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        if fail:
            for method in (responses.GET, responses.POST):
                rsps.add(method, re.compile(rf"{re.escape(BASE)}/.*"), status=503)
        else:
            FakeFalcon(rsps)
        yield


TestCrowdStrikeConformance = conformance_suite(CrowdStrikeConnector, SETTINGS, mock=falcon_http, mapping=MAPPING)


# ------------------------------------------------------------------------------------------ helpers


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 'falcon.db'}"),
                    connectors=[ConnectorConfig(name="falcon", type="crowdstrike",
                                                settings={**SETTINGS, **overrides}, mapping=str(MAPPING))])


def run(settings: Settings, *, full: bool) -> RunResult:
    return run_connector(settings, "falcon", full=full,
                         registry=Registry(extra={"crowdstrike": CrowdStrikeConnector}))


def connector(**overrides: Any) -> CrowdStrikeConnector:
    return CrowdStrikeConnector("falcon", CrowdStrikeSettings.model_validate({**SETTINGS, **overrides}))


def pull(**overrides: Any) -> list[Any]:
    conn = connector(**overrides)
    try:
        return list(conn.streams()[0].records(StreamState()))
    finally:
        conn.close()


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


# -------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize(("cloud", "base"), [
    ("us-1", "https://api.crowdstrike.com"),
    ("us-2", "https://api.us-2.crowdstrike.com"),
    ("eu-1", "https://api.eu-1.crowdstrike.com"),
    ("gov", "https://api.laggar.gcw.crowdstrike.com"),
])
def test_cloud_selects_base_and_token_url(cloud: str, base: str) -> None:
    conn = connector(cloud=cloud)
    assert conn.http.base_url == base
    assert conn.http.auth.token_url == f"{base}/oauth2/token"  # type: ignore[union-attr]
    conn.close()


def test_base_url_and_token_url_override_the_cloud() -> None:
    conn = connector(base_url="https://api.us-gov-2.crowdstrike.mil/", token_url="https://sts.test/oauth2/token")
    assert conn.http.base_url == "https://api.us-gov-2.crowdstrike.mil"
    assert conn.http.auth.token_url == "https://sts.test/oauth2/token"  # type: ignore[union-attr]
    conn.close()
    with pytest.raises(ValueError):
        CrowdStrikeSettings.model_validate({**SETTINGS, "cloud": "eu-2"})
    with pytest.raises(ValueError):
        CrowdStrikeSettings.model_validate({**SETTINGS, "base_url": "api.crowdstrike.com"})


def test_pages_ids_and_fetches_details_in_batches_as_pages_arrive(rsps: responses.RequestsMock) -> None:
    fake = FakeFalcon(rsps)
    records = pull()
    assert [r["device_id"] for r in records] == [h["device_id"] for h in fake.hosts]
    # 6 ids, pages of 2: each page's details are fetched before the next page (the offset token expires
    # in ~2 minutes), and the empty page after the last one ends the scroll.
    assert fake.log == ["token", "scroll:", "entities:2", "scroll:scroll-1-x", "entities:2", "scroll:scroll-2-x",
                        "entities:2", "scroll:scroll-3-x"]
    assert all(p["limit"] == "2" and "filter" not in p for p in fake.scroll_params)
    form = fake.token_forms[0]
    assert form == {"grant_type": "client_credentials", "client_id": "falcon-client", "client_secret": "falcon-secret"}


def test_batches_span_scroll_pages(rsps: responses.RequestsMock) -> None:
    fake = FakeFalcon(rsps)
    assert len(pull(batch_size=4)) == 6
    assert [len(b) for b in fake.entity_batches] == [4, 2]


def test_member_cid_is_sent_with_the_token_request(rsps: responses.RequestsMock) -> None:
    fake = FakeFalcon(rsps)
    pull(member_cid="abcdef0123456789abcdef0123456789")
    assert fake.token_forms[0]["member_cid"] == "abcdef0123456789abcdef0123456789"


def test_empty_tenant_makes_no_details_call(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    fake = FakeFalcon(rsps, hosts=[])
    result = run(settings_for(tmp_path), full=True)
    assert result.status == "success" and result.counts["hosts"]["seen"] == 0
    assert fake.log == ["token", "scroll:"]


def test_429_waits_until_the_retry_after_epoch(rsps: responses.RequestsMock,
                                               recorded_sleeps: list[float]) -> None:
    retry_at = int(time.time()) + 30
    rsps.add(responses.POST, ENTITIES_URL, status=429, json={"errors": [{"code": 429, "message": "API rate limit"}]},
             headers={"X-RateLimit-Limit": "6000", "X-RateLimit-Remaining": "0",
                      "X-RateLimit-RetryAfter": str(retry_at)})
    fake = FakeFalcon(rsps)
    assert len(pull()) == 6
    assert len(recorded_sleeps) == 1 and 27.0 <= recorded_sleeps[0] <= 30.0
    assert len(fake.entity_batches) == 3  # the throttled batch was sent again


def test_5xx_given_up_fails_the_run_and_marks_nothing_missing(rsps: responses.RequestsMock, tmp_path: Path,
                                                             recorded_sleeps: list[float]) -> None:
    settings = settings_for(tmp_path)
    fake = FakeFalcon(rsps)
    assert run(settings, full=True).status == "success"
    recorded_sleeps.clear()
    fake.log.clear()
    fake.entities_status = 502
    with pytest.raises(SyncFailed, match="gave up on POST"):
        run(settings, full=True)
    assert fake.log == ["token", "scroll:"] + ["entities:2"] * 5  # 5 attempts, then the run fails
    assert len(recorded_sleeps) == 4
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        counts = repo.entities.counts()
        assert repo.runs.list_runs(1)[0]["status"] == "failed"
    store.close()
    assert counts["missing_records"] == 0 and counts["source_records"] == 5


def test_revoked_token_is_refreshed_once_and_the_request_retried(rsps: responses.RequestsMock) -> None:
    fake = FakeFalcon(rsps)
    fake.revoked.add("cs-token-1")  # issued, then revoked before its expiry
    assert len(pull()) == 6
    assert fake.tokens_issued == 2
    assert fake.log[:3] == ["token", "token", "scroll:"]
    scrolls = [c for c in rsps.calls if (c.request.url or "").startswith(SCROLL_URL)]
    assert scrolls[0].request.headers["Authorization"] == "Bearer cs-token-1"
    assert scrolls[1].request.headers["Authorization"] == "Bearer cs-token-2"


def test_expired_token_is_replaced_before_use(rsps: responses.RequestsMock) -> None:
    fake = FakeFalcon(rsps)
    now = [1000.0]
    conn = connector()
    conn.http.auth._clock = lambda: now[0]  # type: ignore[union-attr]
    stream = conn.streams()[0].records(StreamState())
    next(stream)
    now[0] += 1800  # past expires_in (1799 s)
    rest = list(stream)
    conn.close()
    assert len(rest) == 5 and fake.tokens_issued == 2


def test_refused_credentials_fail_as_config_without_leaking_the_secret(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, TOKEN_URL, status=403,
             json={"errors": [{"code": 403, "message": "access denied, authorization failed"}]})
    with pytest.raises(ConnectorError) as err:
        pull()
    assert err.value.kind == "config"
    assert "falcon-secret" not in str(err.value)


def test_malformed_host_is_quarantined(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    FakeFalcon(rsps)
    settings = settings_for(tmp_path)
    result = run(settings, full=True)
    assert result.status == "success"
    assert result.counts["hosts"]["quarantined"] == 1 and result.counts["hosts"]["new"] == 5
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        rows = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert rows[0][4] == "0f1e2d3c4b5a69788796a5b4c3d2e1f0" and "last_seen" in rows[0][5]


def test_non_object_host_becomes_a_bad_record(rsps: responses.RequestsMock) -> None:
    hosts = load("hosts.json")["resources"][:1]
    FakeFalcon(rsps, hosts=hosts)
    rsps.replace(responses.POST, ENTITIES_URL, json={"resources": [hosts[0], "garbage"], "errors": []})
    records = pull()
    assert records[0]["device_id"] == ANNA and isinstance(records[1], BadRecord)


def test_page_without_resources_fails_rather_than_reading_as_empty(rsps: responses.RequestsMock) -> None:
    FakeFalcon(rsps)
    rsps.replace(responses.POST, ENTITIES_URL, json={"errors": [{"code": 500, "message": "oops"}]})
    with pytest.raises(ConnectorError, match="no `resources` list"):
        pull()


def test_incremental_run_filters_on_the_saved_modified_timestamp(rsps: responses.RequestsMock,
                                                                 tmp_path: Path) -> None:
    settings = settings_for(tmp_path, filter="platform_name:'Windows'")
    fake = FakeFalcon(rsps)
    run(settings, full=True)
    assert fake.scroll_params[0]["filter"] == "platform_name:'Windows'"
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        assert repo.runs.get_cursors("falcon") == {"hosts": "2024-06-02T08:03:10Z"}
    store.close()
    fake.hosts[2] = {**fake.hosts[2], "modified_timestamp": "2024-06-03T01:00:00Z", "status": "normal"}
    fake.scroll_params.clear()
    result = run(settings, full=False)
    assert result.status == "success"
    assert fake.scroll_params[0]["filter"] == "platform_name:'Windows'+modified_timestamp:>='2024-06-02T08:03:10Z'"
    # Anna's laptop (== cursor, unchanged) and the re-enabled VM come back; nothing else is read.
    assert result.counts["hosts"]["seen"] == 2 and result.counts["hosts"]["changed"] == 1
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        assert repo.runs.get_cursors("falcon") == {"hosts": "2024-06-03T01:00:00Z"}
        assert repo.entities.counts()["missing_records"] == 0
    store.close()


def test_mapping_golden_records() -> None:
    hosts = {h["device_id"]: h for h in load("hosts.json")["resources"]}
    stream = load_mapping(MAPPING).stream("hosts")
    anna = stream.map(hosts[ANNA])
    assert anna.source_key == ANNA and anna.observed_at == "2024-06-02T08:02:55Z"
    assert anna.fields == {
        "kind": "laptop",
        "serial_number": "5CG1234XYZ",
        "mac_addresses": ["a4b1c2d3e4f5"],
        "hostname": "lt-anna-w11",
        "fqdn": "lt-anna-w11.corp.example.com",
        "manufacturer": "HP",
        "model": "HP EliteBook 840 G8",
        "os_name": "Windows",
        "os_version": "Windows 11 Enterprise (build 22631)",
        "ip_addresses": ["10.20.4.17", "198.51.100.24"],
        "last_seen": "2024-06-02T08:02:55Z",
        "agent_version": "7.15.18513.0",
        "containment_state": "normal",
        "health_state": "ok",
        "tags": ["FalconGroupingTags/finance"],
        "edr_protected": True,
    }
    ec2 = stream.map(hosts[EC2]).fields
    assert ec2["kind"] == "cloud_instance"
    assert (ec2["instance_id"], ec2["cloud_account"], ec2["cloud_provider"], ec2["region"]) == (
        "i-0a1b2c3d4e5f67890", "123456789012", "aws", "eu-west-1a")
    assert ec2["hostname"] == "ip-10-0-3-17" and ec2["fqdn"] == "ip-10-0-3-17.eu-west-1.compute.internal"
    vm = stream.map(hosts["1a2b3c4d5e6f708192a3b4c5d6e7f801"]).fields
    assert vm["kind"] == "vm" and vm["containment_state"] == "contained" and "tags" not in vm
    assert vm["serial_number"] == "VMWARE-421A2B3C4D5E6F70-8192A3B4C5D6E7F8"
    lab = stream.map(hosts["5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a"]).fields
    assert "serial_number" not in lab and lab["kind"] == "desktop"  # junk serial dropped
    assert lab["health_state"] == "reduced_functionality_mode"
    mac = stream.map(hosts["7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29"]).fields
    assert mac["os_name"] == "macOS" and "fqdn" not in mac and "kind" not in mac


def test_rejected_fql_fails_the_run_as_config_naming_the_filter(rsps: responses.RequestsMock,
                                                                tmp_path: Path) -> None:
    rsps.add(responses.GET, SCROLL_URL, status=400,
             json={"errors": [{"code": 400, "message": "Invalid filter"}], "resources": []})
    FakeFalcon(rsps)
    with pytest.raises(SyncFailed, match="filter=platform_name") as err:
        run(settings_for(tmp_path, filter="platform_name:'Beos'"), full=True)
    assert isinstance(err.value.__cause__, ConnectorError) and err.value.__cause__.kind == "config"
