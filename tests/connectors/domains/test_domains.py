"""Domains connector over `responses`: RDAP lookups through rdap.org's redirects, alone and through the engine."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from itam_sync.connectors.domains.connector import DomainsConnector, DomainsSettings

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import RunResult, SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import BadRecord, StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite, record_sleeps

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
MAPPING = ROOT / "mappings" / "domains.yaml"
RDAP = "https://rdap.org"
VERISIGN = "https://rdap.verisign.com/com/v1"
SE = "https://rdap.iis.se"
NET = "https://rdap.verisign.com/net/v1"
SETTINGS: dict[str, Any] = {"domains": ["Example.COM.", "acme.se", "old-brand.net"], "max_attempts": 3}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeRdap:
    """rdap.org answering 302 to the registry's RDAP server, which serves the recorded domain objects."""

    def __init__(self, rsps: responses.RequestsMock) -> None:
        self.registries = {"example.com": (VERISIGN, "EXAMPLE.COM", "example_com.json"),
                           "acme.se": (SE, "acme.se", "acme_se.json"),
                           "old-brand.net": (NET, "OLD-BRAND.NET", "old_brand_net.json"),
                           "broken.io": ("https://rdap.nic.io", "broken.io", "broken_io.json")}
        self.lookups: list[str] = []
        self.failing: dict[str, int] = {}  # domain -> status rdap.org answers instead of redirecting
        rsps.add_callback(responses.GET, re.compile(rf"{re.escape(RDAP)}/domain/.*"), callback=self.bootstrap)
        for base, ldh, _ in self.registries.values():
            rsps.add_callback(responses.GET, f"{base}/domain/{ldh}", callback=self.serve)

    def bootstrap(self, request: Any) -> tuple[int, dict[str, str], str]:
        name = request.url.rsplit("/", 1)[1]
        if name in self.failing:
            return self.failing[name], {}, "<html>Bad Gateway</html>"
        if name not in self.registries:
            return 404, {"Content-Type": "application/rdap+json"}, json.dumps(load("not_found.json"))
        base, ldh, _ = self.registries[name]
        return 302, {"Location": f"{base}/domain/{ldh}"}, ""

    def serve(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.lookups.append(request.url)
        (fixture,) = [f for base, ldh, f in self.registries.values() if request.url == f"{base}/domain/{ldh}"]
        return 200, {"Content-Type": "application/rdap+json"}, json.dumps(load(fixture))


@contextlib.contextmanager
def rdap_mock(fail: bool) -> Iterator[None]:
    with record_sleeps(), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        if fail:
            rsps.add(responses.GET, re.compile(r"https://rdap\.org/.*"), status=503)
        else:
            FakeRdap(rsps)
        yield


TestDomainsConformance = conformance_suite(DomainsConnector, SETTINGS, mock=rdap_mock, mapping=MAPPING)


# ------------------------------------------------------------------------------------------ helpers


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


def pull(**overrides: Any) -> list[Any]:
    conn = DomainsConnector("domains", DomainsSettings.model_validate({**SETTINGS, **overrides}))
    try:
        return list(conn.streams()[0].records(StreamState()))
    finally:
        conn.close()


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 'domains.db'}"),
                    connectors=[ConnectorConfig(name="domains", type="domains",
                                                settings={**SETTINGS, **overrides}, mapping=str(MAPPING))])


def run(settings: Settings, *, full: bool = True) -> RunResult:
    return run_connector(settings, "domains", full=full, registry=Registry(extra={"domains": DomainsConnector}))


# -------------------------------------------------------------------------------------------- tests


def test_each_domain_is_looked_up_through_the_redirect(rsps: responses.RequestsMock) -> None:
    fake = FakeRdap(rsps)
    records = pull()
    assert [r["domain"] for r in records] == ["example.com", "acme.se", "old-brand.net"]
    assert fake.lookups == [f"{VERISIGN}/domain/EXAMPLE.COM", f"{SE}/domain/acme.se", f"{NET}/domain/OLD-BRAND.NET"]
    accept = rsps.calls[0].request.headers["Accept"]
    assert "application/rdap+json" in accept


def test_idn_is_queried_as_punycode(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, f"{RDAP}/domain/xn--rksmrgs-5wao1o.se", json={**load("acme_se.json"),
                                                                           "ldhName": "xn--rksmrgs-5wao1o.se"})
    (record,) = pull(domains=["räksmörgås.se"])
    assert record["domain"] == "räksmörgås.se" and record["ldhName"] == "xn--rksmrgs-5wao1o.se"


def test_rdap_base_is_a_setting(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, f"{VERISIGN}/domain/example.com", json=load("example_com.json"))
    (record,) = pull(domains=["example.com"], rdap_base=VERISIGN + "/")
    assert record["handle"] == "2336799_DOMAIN_COM-VRSN"


def test_unknown_domain_is_quarantined_not_fatal(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    FakeRdap(rsps)
    settings = settings_for(tmp_path, domains=["example.com", "never-registered-xyz.com"])
    result = run(settings)
    assert result.status == "success"
    assert result.counts["domains"] == {**result.counts["domains"], "seen": 2, "new": 1, "quarantined": 1}
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        rows = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert [(r[4], "no RDAP record" in r[5]) for r in rows] == [("never-registered-xyz.com", True)]


def test_malformed_record_is_quarantined_by_the_mapping(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    FakeRdap(rsps)
    settings = settings_for(tmp_path, domains=["example.com", "broken.io"])
    result = run(settings)
    assert result.counts["domains"]["quarantined"] == 1 and result.counts["domains"]["new"] == 1
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        (row,) = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert row[4] == "broken.io" and "expires_on" in row[5]


def test_429_waits_for_retry_after(rsps: responses.RequestsMock, recorded_sleeps: list[float]) -> None:
    rsps.add(responses.GET, f"{RDAP}/domain/acme.se", status=429, headers={"Retry-After": "12"},
             json={"errorCode": 429, "title": "Too Many Requests"})
    FakeRdap(rsps)
    records = pull()
    assert [r["domain"] for r in records] == ["example.com", "acme.se", "old-brand.net"]
    assert recorded_sleeps == [12.0]


def test_5xx_given_up_fails_the_run_and_marks_nothing_missing(rsps: responses.RequestsMock, tmp_path: Path,
                                                             recorded_sleeps: list[float]) -> None:
    fake = FakeRdap(rsps)
    settings = settings_for(tmp_path)
    assert run(settings).counts["domains"]["new"] == 3
    fake.failing["old-brand.net"] = 502
    with pytest.raises(SyncFailed, match="old-brand.net"):
        run(settings)
    assert len(recorded_sleeps) == 2  # max_attempts=3
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        counts, last = repo.entities.counts(), repo.runs.list_runs(1)[0]
    store.close()
    assert last["status"] == "failed" and counts["missing_records"] == 0


def test_incremental_runs_look_every_domain_up_again(rsps: responses.RequestsMock, tmp_path: Path) -> None:
    fake = FakeRdap(rsps)
    settings = settings_for(tmp_path)
    run(settings)
    second = run(settings, full=False)
    assert second.counts["domains"]["unchanged"] == 3, second.counts
    assert len(fake.lookups) == 6


def test_settings_validation() -> None:
    assert DomainsSettings.model_validate({"domains": [" Example.com. ", "example.com"]}).domains == ["example.com"]
    for bad in (["localhost"], ["https://example.com/"], []):
        with pytest.raises(ValueError):
            DomainsSettings.model_validate({"domains": bad})


def test_mapping_golden(rsps: responses.RequestsMock) -> None:
    FakeRdap(rsps)
    records = {r["domain"]: r for r in pull() if not isinstance(r, BadRecord)}
    stream = load_mapping(MAPPING).stream("domains")
    assert stream.source_key(records["example.com"]) == "example.com"
    assert stream.map(records["acme.se"], "domains").fields == {
        "kind": "domain",
        "subject_names": ["acme.se"],
        "registrar": "Loopia AB",
        "expires_on": "2026-03-02",
        "purchase_date": "2009-03-02",
        "lifecycle_state": "deployed",
        "tags": ["rdap_status=active"],
    }
    com = stream.map(records["example.com"], "domains").fields
    assert com["registrar"] == "RESERVED-Internet Assigned Numbers Authority" and com["expires_on"] == "2025-08-13"
    assert com["subject_names"] == ["example.com"]
    lapsed = stream.map(records["old-brand.net"], "domains").fields
    assert lapsed["lifecycle_state"] == "retired" and "rdap_status=redemption period" in lapsed["tags"]


def test_rfc9083_example_domain_object_maps(rsps: responses.RequestsMock) -> None:
    """The domain object of RFC 9083 section 5.3 (an IDN; only a registrant entity, no registrar; EPP-style
    status values; four events) maps as a registry's answer would."""
    rsps.add(responses.GET, "https://rdap.example.net/domain/xn--fo-5ja.example", json=load("rfc9083_domain.json"),
             content_type="application/rdap+json")
    (record,) = pull(domains=["fóo.example"], rdap_base="https://rdap.example.net")
    assert record["domain"] == "fóo.example"
    assert load_mapping(MAPPING).stream("domains").map(record, "domains").fields == {
        "kind": "domain",
        "subject_names": ["fóo.example", "xn--fo-5ja.example"],
        "expires_on": "2016-12-31",
        "purchase_date": "1990-12-31",
        "lifecycle_state": "deployed",
        "tags": ["rdap_status=locked", "rdap_status=transfer prohibited"],
    }
