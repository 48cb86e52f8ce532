"""The webhook sink: signed JSON batches of change events to a local server."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import pytest
from itam_sync.connectors.sinks.webhook.sink import BATCH_SCHEMA, WebhookSettings, WebhookSink, sign
from publish_helpers import RecordingServer

from itam_sync.publish.events import SCHEMA_ID, ChangeEvent
from itam_sync.sdk.errors import HttpError


def event(i: int, type_: str = "field_changed", entity_type: str = "asset") -> ChangeEvent:
    return ChangeEvent(i, type_, "set", entity_type, 7, "serial_number:C02FK1ABQ6L4", "assigned_to",
                       "ana@example.com", "bob@example.com", "mdm", "freshness", 3, "2026-11-26T10:00:00Z", None)


@pytest.fixture
def hook() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


def sink_for(server: RecordingServer, **settings: object) -> WebhookSink:
    cfg = WebhookSettings.model_validate({"url": f"{server.url}/itam", "secret": "s3cret", **settings})
    return WebhookSink("hook", cfg)


def test_batches_are_signed_with_hmac_sha256_over_the_raw_body(hook: RecordingServer) -> None:
    outcome = sink_for(hook, headers={"X-Api-Key": "k"}).push_events([event(1), event(2)])
    assert (outcome.sent, outcome.calls) == (2, 1)
    [call] = hook.calls
    assert call.method == "POST" and call.path == "/itam"
    expected = "sha256=" + hmac.new(b"s3cret", call.body, hashlib.sha256).hexdigest()
    assert call.headers["x-itam-signature-256"] == expected == sign("s3cret", call.body)
    assert call.headers["x-itam-delivery"] == "hook:1-2"
    assert call.headers["content-type"] == "application/json"
    assert call.headers["x-api-key"] == "k"
    body = call.json
    assert body["schema"] == BATCH_SCHEMA and body["sink"] == "hook"
    assert [e["id"] for e in body["events"]] == [1, 2]
    assert body["events"][0]["schema"] == SCHEMA_ID
    assert body["events"][0]["entity"] == {"type": "asset", "id": 7, "key": "serial_number:C02FK1ABQ6L4"}


def test_5xx_and_429_are_retried_then_4xx_fails(hook: RecordingServer, recorded_sleeps: list[float]) -> None:
    hook.script += [("POST", "/itam", (502, {}, b"")), ("POST", "/itam", (429, {"Retry-After": "2"}, b""))]
    assert sink_for(hook).push_events([event(1)]).sent == 1
    assert len(hook.calls) == 3 and 2.0 in recorded_sleeps
    hook.script.append(("POST", "/itam", (400, {}, {"error": "bad signature"})))
    with pytest.raises(HttpError, match="400"):
        sink_for(hook).push_events([event(2)])


def test_filters_by_event_and_entity_type() -> None:
    cfg = WebhookSettings.model_validate({"url": "http://127.0.0.1:9/x", "secret": "s", "types": ["missing"],
                                          "entity_types": ["asset"]})
    sink = WebhookSink("hook", cfg)
    assert sink.accepts_event(event(1, "missing"))
    assert not sink.accepts_event(event(1, "field_changed"))
    assert not sink.accepts_event(event(1, "missing", "person"))


def test_plan_sends_nothing(hook: RecordingServer) -> None:
    [planned] = sink_for(hook).plan_events([event(4), event(5)])
    assert planned.method == "POST" and "ids 4-5" in planned.summary
    assert hook.calls == []
