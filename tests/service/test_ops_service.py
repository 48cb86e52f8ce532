"""`serve` in-process: vendor webhooks (Okta, Jamf Pro, Microsoft Graph), operator runs, health and metrics.

The HTTP app is driven with FastAPI's TestClient, and over real HTTP on a free port where the client's
address matters (no API token configured: loopback only).
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from itam_sync.service.server import Service
from itam_sync.settings import ConfigError
from tests.service.support import demo_service, set_secrets, wait_for

SERVICE = {
    "debounce_s": 0.5, "jitter_s": 0, "grace_period_s": 5, "lease_ttl_s": 10,
    "api_tokens": ["${env:ITAM_TEST_API_TOKEN}"],
    "webhooks": {
        "okta-users": {"kind": "okta", "secret": "${env:ITAM_TEST_OKTA_HOOK}"},
        "mdm": {"kind": "jamf", "header": "X-Jamf-Secret", "secret": "${env:ITAM_TEST_JAMF_HOOK}"},
        "procurement": {"kind": "jamf", "username": "jamf", "secret": "${env:ITAM_TEST_JAMF_PW}"},
        "edr": {"kind": "graph", "secret": "${env:ITAM_TEST_GRAPH_STATE}"},
    },
}
OKTA_EVENT = {"eventType": "com.okta.event_hook", "eventTypeVersion": "1.0", "cloudEventsVersion": "0.1",
              "data": {"events": [{"uuid": "e1", "eventType": "user.lifecycle.deactivate",
                                   "target": [{"id": "00u1", "type": "User"}]}]}}
JAMF_EVENT = {"webhook": {"id": 7, "name": "inventory", "webhookEvent": "ComputerInventoryCompleted"},
              "event": {"serialNumber": "C02FK1ABQ6L4", "udid": "x"}}


def _graph(state: str) -> dict[str, Any]:
    return {"value": [{"subscriptionId": "s1", "clientState": state, "changeType": "updated",
                       "resource": "devices/abc", "tenantId": "t"}]}


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    set_secrets(monkeypatch)


@pytest.fixture
def svc(demo, secrets) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    s = demo_service(demo, SERVICE)
    s.start(http=False)
    yield s
    s.shutdown(grace_s=5)


def _runs(demo, connector: str | None = None) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    args = ["runs", "--json", "--limit", "100"] + (["--connector", connector] if connector else [])
    return list(json.loads(demo.cli(*args).output))


def test_okta_verification_then_a_burst_of_events_makes_one_run(demo, svc: Service) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(svc.app)
    r = client.get("/hooks/okta-users", headers={"x-okta-verification-challenge": "abc123"})
    assert r.status_code == 200 and r.json() == {"verification": "abc123"}
    assert client.post("/hooks/okta-users", json=OKTA_EVENT).status_code == 401
    assert client.post("/hooks/okta-users", json=OKTA_EVENT, headers={"Authorization": "wrong"}).status_code == 401
    answers = [client.post("/hooks/okta-users", json=OKTA_EVENT, headers={"Authorization": "okta-secret"})
               for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["run"] for a in answers] == ["queued"] + ["debounced"] * 4
    assert client.post("/hooks/okta-users", json={"nope": 1},
                       headers={"Authorization": "okta-secret"}).status_code == 400
    wait_for(lambda: _runs(demo, "okta-users"))
    time.sleep(1.0)  # nothing else comes of the burst
    runs = _runs(demo, "okta-users")
    assert [(r["mode"], r["status"]) for r in runs] == [("incremental", "success")]
    merged = [r for r in _runs(demo) if r["connector"] == "(merge)"]
    assert len(merged) == 1  # the event's run was merged into golden records
    metrics = client.get("/metrics").text
    assert 'itam_sync_events_total{connector="okta-users",result="queued",source="okta"} 1.0' in metrics
    assert 'itam_sync_events_total{connector="okta-users",result="debounced",source="okta"} 4.0' in metrics
    assert 'itam_sync_events_total{connector="okta-users",result="rejected",source="okta"} 3.0' in metrics


def test_jamf_header_and_basic_auth(demo, svc: Service) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(svc.app)
    assert client.post("/hooks/mdm", json=JAMF_EVENT, headers={"X-Jamf-Secret": "nope"}).status_code == 401
    assert client.post("/hooks/mdm", json=JAMF_EVENT, headers={"X-Jamf-Secret": "jamf-secret"}).status_code == 200
    basic = "Basic " + base64.b64encode(b"jamf:jamf-pw").decode()
    wrong = "Basic " + base64.b64encode(b"jamf:guess").decode()
    assert client.post("/hooks/procurement", json=JAMF_EVENT, headers={"Authorization": wrong}).status_code == 401
    assert client.post("/hooks/procurement", json=JAMF_EVENT, headers={"Authorization": basic}).status_code == 200
    wait_for(lambda: len(_runs(demo, "mdm")) == 1 and len(_runs(demo, "procurement")) == 1)


def test_graph_validation_handshake_and_client_state(demo, svc: Service) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(svc.app)
    r = client.post("/hooks/edr?validationToken=Validation%3A%20Testing%20client%20application")
    assert r.status_code == 200 and r.text == "Validation: Testing client application"
    assert r.headers["content-type"].startswith("text/plain")
    assert client.post("/hooks/edr", json=_graph("forged")).status_code == 403
    r = client.post("/hooks/edr", json=_graph("graph-state"))
    assert r.status_code == 202 and r.json() == {"accepted": 1, "run": "queued"}
    wait_for(lambda: [x["status"] for x in _runs(demo, "edr")] == ["success"])
    assert client.post("/hooks/unknown", json=_graph("graph-state")).status_code == 404


def test_operator_runs_need_a_token(demo, svc: Service) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(svc.app)
    r = client.post("/runs", json={"connector": "hr", "full": True})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.post("/runs", json={"connector": "hr"}, headers={"Authorization": "Bearer x"}).status_code == 401
    auth = {"Authorization": "Bearer op-token"}
    assert client.post("/runs", json={"connector": "nope"}, headers=auth).status_code == 404
    r = client.post("/runs", json={"connector": "hr", "full": True}, headers=auth)
    assert r.status_code == 202 and r.json() == {"queued": ["hr"], "mode": "full"}
    wait_for(lambda: [(x["mode"], x["status"]) for x in _runs(demo, "hr")] == [("full", "success")])
    r = client.post("/runs", json={"full": False}, headers=auth)  # every enabled connector
    assert sorted(r.json()["queued"]) == ["edr", "hr", "mdm", "okta-users", "procurement"]
    wait_for(lambda: len([x for x in _runs(demo) if x["connector"] != "(merge)"]) == 6)


def test_health_and_metrics_after_a_run(demo, svc: Service) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(svc.app)
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["store"] == "ok"
    svc.request_run("mdm", full=True)
    wait_for(lambda: [x["status"] for x in _runs(demo, "mdm")] == ["success"])
    wait_for(lambda: "itam_sync_merged_entities_total 6.0" in client.get("/metrics").text)
    text = client.get("/metrics").text
    assert 'itam_sync_runs_total{connector="mdm",mode="full",status="success"} 1.0' in text
    assert 'itam_sync_records_pulled_total{connector="mdm"} 6.0' in text
    assert 'itam_sync_records_changed_total{connector="mdm"} 6.0' in text
    assert 'itam_sync_run_duration_seconds_count{connector="mdm",mode="full"} 1.0' in text
    assert 'itam_sync_last_success_timestamp_seconds{connector="mdm"}' in text
    assert 'itam_sync_run_in_progress{connector="mdm"} 0.0' in text


def test_without_tokens_runs_are_accepted_from_loopback_only(demo, secrets) -> None:  # type: ignore[no-untyped-def]
    svc = demo_service(demo, {**SERVICE, "api_tokens": []})
    svc.port = 0
    svc.start()
    try:
        base = f"http://127.0.0.1:{svc.port}"
        r = httpx.post(f"{base}/runs", json={"connector": "edr"})
        assert r.status_code == 202, r.text
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        client = TestClient(svc.app)  # not from 127.0.0.1
        r = client.post("/runs", json={"connector": "edr"})
        assert r.status_code == 403 and "only accepted from 127.0.0.1" in r.json()["error"]
        wait_for(lambda: [x["status"] for x in _runs(demo, "edr")] == ["success"])
    finally:
        svc.shutdown(grace_s=5)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=2)


def test_bad_service_config_fails_at_start(demo, secrets) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="service.webhooks.nope: no connector named 'nope'"):
        demo_service(demo, {"webhooks": {"nope": {"kind": "okta", "secret": "${env:ITAM_TEST_OKTA_HOOK}"}}})
    with pytest.raises(ConfigError, match="connector type 'csv' has no known event notifications"):
        demo_service(demo, {"webhooks": {"hr": {"secret": "${env:ITAM_TEST_OKTA_HOOK}"}}})
    with pytest.raises(ConfigError, match="must be a secret reference"):
        demo_service(demo, {"api_tokens": ["plain-text-token"]})


def test_a_taken_port_is_one_clear_error(demo, secrets) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        svc = demo_service(demo, SERVICE)
        svc.port = s.getsockname()[1]
        from itam_sync.service.server import ServiceError

        with pytest.raises(ServiceError, match="cannot listen on 127.0.0.1:.*set service.port or --port"):
            svc.start()
        svc.shutdown(grace_s=1)


def test_schedules_run_each_connector_and_catch_up_at_start(demo, secrets) -> None:  # type: ignore[no-untyped-def]
    cfg = yaml.safe_load(demo.config.read_text())
    for c in cfg["connectors"]:
        c["schedule"] = "every 1s"
    cfg["connectors"][3]["full_schedule"] = "every 3s"  # mdm
    demo.config.write_text(yaml.safe_dump(cfg))
    svc = demo_service(demo, {**SERVICE, "jitter_s": 0}, schedules=True)
    svc.start(http=False)
    try:
        time.sleep(4.5)
    finally:
        svc.shutdown(grace_s=5)
    runs = [r for r in _runs(demo) if r["connector"] != "(merge)"]
    by = {n: [r for r in runs if r["connector"] == n] for n in ("hr", "okta-users", "procurement", "mdm", "edr")}
    for name, rs in by.items():
        assert 3 <= len(rs) <= 7, (name, len(rs))
        assert {r["status"] for r in rs} == {"success"}
    assert any(r["mode"] == "full" for r in by["mdm"])
    status = json.loads(demo.cli("status", "--json").output)
    assert {c["connector"]: c["last_run"]["status"] for c in status["connectors"]} == dict.fromkeys(by, "success")


def test_sinks_and_reminders_run_on_their_schedules(demo, secrets, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """`serve` also pushes each sink and sends the reminder digest on their schedules (issue 8's modules do
    the work; here they are stand-ins that record the calls)."""
    import itam_sync.publish.reminders
    import itam_sync.publish.sinks.push

    calls: list[str] = []

    class Pushed:
        status = "success"

    monkeypatch.setattr(itam_sync.publish.sinks.push, "push_sink",
                        lambda settings, name, store: calls.append(name) or Pushed)
    monkeypatch.setattr(itam_sync.publish.reminders, "run_reminders", lambda settings, store: calls.append("reminders"))
    cfg = yaml.safe_load(demo.config.read_text())
    sink = {"base_url": "https://example.service-now.com", "username": "itam",  # valid settings: serve checks them
            "password": "${env:ITAM_TEST_API_TOKEN}"}
    cfg["sinks"] = [{"name": "cmdb", "type": "servicenow", "schedule": "every 1s", "settings": sink},
                    {"name": "off", "type": "servicenow", "enabled": False, "schedule": "every 1s", "settings": sink}]
    cfg["reminders"] = {"schedule": "every 1s", "delivery": {"slack_webhook": "${env:ITAM_TEST_API_TOKEN}"},
                        "rules": [{"name": "warranty", "type": "warranty_ending", "days": 30}]}
    demo.config.write_text(yaml.safe_dump(cfg))
    svc = demo_service(demo, SERVICE)
    assert set(svc.scheduler.tasks) == {"sink:cmdb", "reminders"}
    svc.start(http=False)
    try:
        time.sleep(2.6)
    finally:
        svc.shutdown(grace_s=5)
    assert 2 <= calls.count("cmdb") <= 4 and 2 <= calls.count("reminders") <= 4
    assert "off" not in calls
    text = svc.metrics.render().decode()
    assert 'itam_sync_runs_total{connector="sink:cmdb",mode="push",status="success"}' in text
