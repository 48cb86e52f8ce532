"""Lenovo warranty look-ups by serial: ship date, warranty start and end, service level.

Lenovo publishes no reference for this API (granted to partners and larger customers on request); the points
below were checked against public client code (tests/connectors/lenovo_warranty/fixtures/README.md):
- auth: an API key in the `ClientID` request header;
- look-up: `GET https://supportapi.lenovo.com/v2.5/warranty?Serial=<serial>` (public clients also POST the
  form `Serial=<serial>`) answering one JSON object: `Serial`, `Product`, `InWarranty`, `Purchased`, `Shipped`,
  `Country` and `Warranty: [{ID, Name, Description, Type, Start, End}]`;
- unverified: an unknown serial answers with `ErrorCode`/`ErrorMessage` set; several serials comma-separated
  answer a list (public clients send repeated form values), so `batch_size` defaults to 1 (both answer shapes
  are read); throttling is not published (429 and 5xx are retried by the shared HTTP layer).
Every URL and the parameter name are settings, so a changed path or version is a config change.

Like `dell_warranty`, this connector enriches assets other sources already know: it looks up the serials it is
given (`serials`, `serials_file`: a text file or an `itam-sync export --entity assets --format csv`, narrowed to
rows whose manufacturer contains `manufacturer`), one asset record per serial, joined by serial number.
Incremental runs look up only serials no earlier run has (the cursor is the list already looked up, kept to the
current list); full runs look everything up again. Unknown serials are skipped with a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import Field, model_validator

from itam_sync.sdk.auth import HeaderAuth
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.serials import batches, load_serials

log = logging.getLogger(__name__)


class LenovoWarrantySettings(ConnectorSettings):
    """Settings of the `lenovo_warranty` connector."""

    client_id: str = Field(description="Lenovo support API key, sent as the ClientID header; a ${env:...} reference")
    base_url: str = Field(default="https://supportapi.lenovo.com", description="API base URL")
    warranty_path: str = Field(default="/v2.5/warranty", description="Path of the warranty look-up")
    serial_param: str = Field(default="Serial", description="Query parameter carrying the serial(s)")
    serials: list[str] = Field(default_factory=list, description="Serial numbers to look up")
    serials_file: str | None = Field(
        default=None, description="File of serials: one per line, or a CSV such as `itam-sync export --entity "
                                  "assets --format csv` output")
    manufacturer: str | None = Field(default="lenovo", description="In a CSV serials_file, use only rows whose "
                                                                    "manufacturer contains this (null: all rows)")
    batch_size: int = Field(default=1, ge=1, le=100,
                            description="Serials per call, comma-separated (1 unless your API accepts lists)")

    @model_validator(mode="after")
    def _some_serials(self) -> LenovoWarrantySettings:
        if not self.serials and not self.serials_file:
            raise ValueError("give the serials to look up: serials and/or serials_file")
        return self


class LenovoWarranties(Stream):
    """One record per known serial: the warranty answer, passed through."""

    name = "warranties"
    connector: LenovoWarrantyConnector

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        s = self.connector.settings
        serials = load_serials(s.serials, s.serials_file, s.manufacturer)
        done = set() if state.full or not state.cursor else set(state.cursor)
        todo = [t for t in serials if t not in done]
        log.info("%s: looking up %d of %d serials", self.connector.name, len(todo), len(serials))
        for batch in batches(todo, s.batch_size):
            body = self.connector.http.get_json(s.warranty_path, params={s.serial_param: ",".join(batch)})
            if not isinstance(body, dict | list):
                raise HttpError(f"malformed warranty answer for {len(batch)} serial(s): expected a JSON object or "
                                f"list, got {type(body).__name__}", url=f"{s.base_url}{s.warranty_path}")
            for rec in body if isinstance(body, list) else [body]:
                if isinstance(rec, dict) and (rec.get("ErrorCode") or rec.get("ErrorMessage")):
                    log.info("%s: Lenovo has no warranty for %s (%s); skipped", self.connector.name,
                             rec.get("Serial") or ",".join(batch), rec.get("ErrorMessage") or rec.get("ErrorCode"))
                elif not isinstance(rec, dict) or not isinstance(rec.get("Serial"), str) or not rec["Serial"]:
                    yield BadRecord("warranty record without a Serial", raw=str(rec)[:2000])
                else:
                    yield rec
            done.update(batch)
        state.new_cursor = [t for t in serials if t in done]


class LenovoWarrantyConnector(Connector):
    """Lenovo warranty (ship date, warranty start/end, service level) by serial; enriches known assets."""

    type_name = "lenovo_warranty"
    description = "Lenovo warranty look-ups by serial (Lenovo support API v2.5)"
    settings_model = LenovoWarrantySettings
    example_settings: ClassVar[dict[str, Any]] = {"client_id": "${env:LENOVO_CLIENT_ID}",
                                                  "serials_file": "exports/assets.csv"}
    settings: LenovoWarrantySettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        s = self.settings
        self.http = HttpClient(s.base_url, HeaderAuth("ClientID", s.client_id))

    def streams(self) -> list[Stream]:
        return [LenovoWarranties(self)]

    def close(self) -> None:
        self.http.close()
