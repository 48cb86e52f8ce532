"""Kandji (now branded Iru) MDM: the devices list, each device joined with its details (MACs, UDID, IMEI).

Plain `requests` through the engine's `HttpClient`: a bearer API token on the tenant's API URL. The list
(`GET /api/v1/devices`) is a bare JSON array paged by limit/offset (at most 300 per page). MAC addresses
live only in `GET /api/v1/devices/{id}/details`, one call per device, so details are fetched while the list
streams (never by collecting ids first), `details_concurrency` at a time and joined in list order by the
SDK's `join_details`, and can be switched off with `fetch_details: false`.

The tenant's quota is 10,000 requests an hour, shared by every token, with no documented 429 headers. The
client keeps this connector under `requests_per_hour` and waits out a hint-less 429 for the hourly window
(`RateLimit`, in the SDK). Details are asked again only for devices whose list row changed (ignoring
`last_check_in`, which moves on every check-in) or whose remembered details are older than
`details_max_age_hours` (`details_cache`, a small SQLite file): an unchanged device comes out exactly as last
run, so the engine skips it by hash.

Kandji has no modified-since filter. Incremental runs read the list newest check-in first
(`ordering=-last_check_in`) and stop at the first device that last checked in before the saved cursor,
so only devices that checked in since the last run cost a details call. Console-side edits of a device that
has not checked in since are picked up by its next check-in or by the next full run; schedule a full run
(e.g. nightly) as well, which is also what marks removed devices missing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar, cast
from urllib.parse import quote

from pydantic import Field, field_validator

from itam_sync.sdk.auth import BearerAuth
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.detail_cache import DetailCache, fingerprint
from itam_sync.sdk.details import join_details
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.http_stream import HttpStream
from itam_sync.sdk.pagination import OffsetPaginator, Paginator
from itam_sync.sdk.ratelimit import RateLimit

log = logging.getLogger(__name__)

MAX_PAGE = 300  # the API's hard cap on `limit`
QUOTA = 10_000  # requests per hour per tenant, all tokens together (API docs, "Rate Limit")
VOLATILE = ("last_check_in",)  # list fields that move without the details changing
DEFAULT_SECTIONS = ["general", "mdm", "kandji_agent", "hardware_overview", "network", "cellular"]


class KandjiSettings(ConnectorSettings):
    """Settings of a Kandji connector."""

    api_url: str = Field(description="Tenant API URL from Settings > Access, e.g. https://acme.api.kandji.io "
                                     "(US) or https://acme.api.eu.kandji.io (EU)")
    api_token: str = Field(description="API token with the Device list (and Device details) permissions; "
                                       "give a ${env:...} or ${file:...} reference")
    page_size: int = Field(default=MAX_PAGE, ge=1, le=MAX_PAGE,
                           description="Devices per list page (`limit`, at most 300)")
    fetch_details: bool = Field(default=True,
                                description="Fetch each device's details (MACs, UDID, IMEI): one extra "
                                            "request per device, counted against 10,000 requests/hour")
    detail_sections: list[str] | None = Field(
        default=DEFAULT_SECTIONS,
        description="Sections of the details response kept on the record (null keeps all of them)")
    timeout_s: float = Field(default=60, gt=0, description="Read timeout of one request, in seconds")
    requests_per_hour: int | None = Field(default=5_000, ge=1, le=QUOTA,
                                          description="Most requests this connector sends in any hour (the "
                                                      "tenant's 10,000/hour is shared by every token, so leave "
                                                      "room); null: no pacing (test servers)")
    details_cache: str | None = Field(default=None,
                                      description="SQLite file remembering each device's details between runs, "
                                                  "so unchanged devices cost no details request")
    details_max_age_hours: float = Field(default=24, gt=0,
                                         description="Ask a device's details again after this long even if its "
                                                     "list row did not change")
    details_concurrency: int = Field(default=4, ge=1, le=16,
                                     description="Details requests in flight at once (1: one after the other). "
                                                 "Speeds up a first run only: the tenant's quota (10,000 "
                                                 "requests/hour, shared by every token) and requests_per_hour "
                                                 "still cap the total; Kandji documents no concurrency limit")

    @field_validator("api_url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be the tenant API URL, e.g. https://acme.api.kandji.io")
        return v


def _moment(value: Any) -> datetime | None:
    """An ISO-8601 time as an aware datetime, or None (compared as times: "…03Z" and "…03.118Z" differ)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


class KandjiDevices(HttpStream):
    """Every device in the tenant, each with a `details` member (the kept sections of its details)."""

    name = "devices"
    read_ahead_pages = 0  # an incremental run reads newest first and stops at the cursor
    path = "/api/v1/devices"
    records_path = None  # the list endpoint returns a bare array
    cursor_field = "last_check_in"
    connector: KandjiConnector

    def make_paginator(self) -> Paginator:
        return OffsetPaginator(limit=self.connector.config.page_size)

    def params(self, state: StreamState) -> dict[str, Any]:
        if state.cursor and not state.full:
            return {"ordering": "-last_check_in"}  # newest first, so the run can stop at the watermark
        return {}

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        config = self.connector.config
        if not config.fetch_details:
            yield from self._listed(state)
            return
        cache = DetailCache(config.details_cache, max_age_s=config.details_max_age_hours * 3600)
        try:
            for device, details in join_details(
                    self._listed(state), self.details, concurrency=config.details_concurrency, cache=cache,
                    key=lambda row: None if isinstance(row, BadRecord) else row["device_id"],
                    fingerprint=lambda row: fingerprint(cast(dict, row), VOLATILE, config.detail_sections)):
                yield device if isinstance(device, BadRecord) else {**device, "details": details}
        finally:
            cache.close()
            log.info("%s: details asked for %d devices, remembered for %d", self.connector.name,
                     cache.misses, cache.hits)

    def _listed(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        """The list rows, a device without an id as a BadRecord; an incremental run stops at the watermark."""
        watermark = _moment(state.cursor) if state.cursor and not state.full else None
        for device in self.fetch(state):
            device_id = device.get("device_id") if isinstance(device, dict) else None
            if not isinstance(device_id, str) or not device_id.strip():
                yield BadRecord("device without a device_id", json.dumps(device, default=str)[:2000])
                continue
            if watermark is not None:
                checked_in = _moment(device.get("last_check_in"))
                if checked_in is not None and checked_in < watermark:
                    log.info("%s: reached devices last seen before %s; incremental run done",
                             self.connector.name, state.cursor)
                    return
            yield device

    def details(self, device_id: str) -> dict[str, Any] | None:
        """The kept sections of one device's details; None when the device vanished since the list call."""
        try:
            body = self.connector.http.get_json(f"/api/v1/devices/{quote(device_id, safe='')}/details")
        except HttpError as exc:
            if exc.status == 404:  # removed between the list call and this one
                log.warning("%s: device %s has no details (404); keeping the list record",
                            self.connector.name, device_id)
                return None
            raise
        if not isinstance(body, dict):
            log.warning("%s: details of device %s are not an object; ignored", self.connector.name, device_id)
            return None
        sections = self.connector.config.detail_sections
        return body if sections is None else {k: v for k, v in body.items() if k in sections}


class KandjiConnector(Connector):
    """Kandji MDM devices over its REST API (bearer token, limit/offset paging, per-device details)."""

    type_name = "kandji"
    description = "Kandji / Iru MDM: devices with serial, model, OS, last check-in, user, agent state, MACs"
    settings_model = KandjiSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "api_url": "https://acme.api.kandji.io",
        "api_token": "${env:KANDJI_API_TOKEN}",
        "fetch_details": True,
    }

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        self.config: KandjiSettings = settings  # type: ignore[assignment]
        quota = RateLimit(per_hour=QUOTA, budget_per_hour=self.config.requests_per_hour,
                          wait_without_headers="window")
        self.http = HttpClient(self.config.api_url, BearerAuth(self.config.api_token),
                               timeout=(5, self.config.timeout_s), rate_limit=quota,
                               max_connections=self.config.details_concurrency + 1)  # + the list's

    def streams(self) -> list[Stream]:
        return [KandjiDevices(self)]

    def close(self) -> None:
        self.http.close()
