"""Generic webhook: change events POSTed as JSON batches, signed with HMAC-SHA256.

Each request carries one batch in merge-log order:

    POST <url>
    Content-Type: application/json
    X-Itam-Signature-256: sha256=<hex HMAC-SHA256 of the exact body bytes, keyed with the secret>
    X-Itam-Delivery: <sink name>:<first event id>-<last event id>

    {"schema": "itam-sync/change-batch/v1", "sink": "<name>", "sent_at": "...", "events": [<change event>, ...]}

A receiver verifies the signature over the raw body before parsing it, and de-duplicates by event id: a
batch whose response was lost is sent again (at-least-once delivery). Any 2xx accepts the batch; 429 and 5xx
are retried by the SDK's HttpClient (Retry-After honoured), other statuses fail the push without moving past
the batch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import Field

from itam_sync.publish.events import TYPES, ChangeEvent
from itam_sync.publish.sinks.base import EventSink, EventSinkSettings, PlannedCall, PushOutcome
from itam_sync.sdk.http import HttpClient

log = logging.getLogger(__name__)
BATCH_SCHEMA = "itam-sync/change-batch/v1"


class WebhookSettings(EventSinkSettings):
    """Settings of the `webhook` sink."""

    url: str = Field(description="where batches are POSTed (http or https)")
    secret: str = Field(min_length=1, description="HMAC-SHA256 key; a ${env:...} or ${file:...} reference")
    signature_header: str = Field(default="X-Itam-Signature-256", description="header carrying sha256=<hex>")
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers, e.g. an API key")
    types: list[str] | None = Field(default=None, description=f"event types to send (default all): {', '.join(TYPES)}")
    entity_types: list[str] | None = Field(default=None, description="asset, person, subscription (default all)")
    timeout: float = Field(default=30.0, gt=0, description="seconds to wait for the receiver")


def sign(secret: str, body: bytes) -> str:
    """The signature header value for `body`: "sha256=" + hex HMAC-SHA256 keyed with `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSink(EventSink):
    """POST change events in signed JSON batches to a URL."""

    type_name: ClassVar[str] = "webhook"
    description: ClassVar[str] = "Generic webhook: change events as HMAC-signed JSON batches"
    settings_model: ClassVar[type[WebhookSettings]] = WebhookSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "url": "https://hooks.example.com/itam", "secret": "${env:ITAM_WEBHOOK_SECRET}", "batch_size": 100}

    def __init__(self, name: str, settings: WebhookSettings) -> None:
        super().__init__(name, settings)
        self.cfg = settings
        self._http: HttpClient | None = None

    @property
    def http(self) -> HttpClient:
        if self._http is None:
            self._http = HttpClient(self.cfg.url, timeout=(5, self.cfg.timeout))
        return self._http

    def accepts_event(self, event: ChangeEvent) -> bool:
        if self.cfg.types is not None and event.type not in self.cfg.types:
            return False
        return self.cfg.entity_types is None or event.entity_type in self.cfg.entity_types

    def _body(self, events: Sequence[ChangeEvent]) -> bytes:
        payload = {"schema": BATCH_SCHEMA, "sink": self.name,
                   "sent_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "events": [e.to_dict() for e in events]}
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode()

    def _headers(self, events: Sequence[ChangeEvent], body: bytes) -> dict[str, str]:
        return {**self.cfg.headers, "Content-Type": "application/json",
                self.cfg.signature_header: sign(self.cfg.secret, body),
                "X-Itam-Delivery": f"{self.name}:{events[0].id}-{events[-1].id}"}

    def push_events(self, events: Sequence[ChangeEvent]) -> PushOutcome:
        body = self._body(events)
        self.http.request("POST", self.cfg.url, data=body, headers=self._headers(events, body))
        return PushOutcome(sent=len(events), calls=1)

    def plan_events(self, events: Sequence[ChangeEvent]) -> list[PlannedCall]:
        return [PlannedCall("POST", self.cfg.url, f"{len(events)} events, ids {events[0].id}-{events[-1].id}",
                            {"schema": BATCH_SCHEMA, "sink": self.name, "events": [e.to_dict() for e in events]})]

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
