"""Dell warranty look-ups by service tag: ship date, warranty start and end, service level.

Dell's TechDirect API reference is behind the TechDirect login; the points below were checked against public
client code built from real answers (tests/connectors/dell_warranty/fixtures/README.md):
- auth: OAuth 2.0 client credentials (client id/secret in the form) at
  `https://apigtwb2c.us.dell.com/auth/oauth/v2/token`, a bearer token valid about an hour;
- look-up: `GET https://apigtwb2c.us.dell.com/PROD/sbil/eapi/v5/asset-entitlements?servicetags=A,B,...`,
  answering a JSON list, one object per tag: `serviceTag`, `shipDate`, `productLineDescription`,
  `productLobDescription`, `invalid` (true for a tag Dell does not know) and
  `entitlements: [{startDate, endDate, serviceLevelDescription, serviceLevelCode, entitlementType}]`;
- unverified: at most 100 service tags per call (what public scripts use) and throttling (not published;
  429 and 5xx are retried by the shared HTTP layer).
Every URL is a setting, so a changed path or version is a config change, not a code change.

This connector enriches assets other sources already know: it does not list assets, it looks up the serials
it is given, `serials` and/or `serials_file` (a text file or an `itam-sync export --entity assets --format csv`,
narrowed to rows whose manufacturer contains `manufacturer`; see itam_sync/sdk/serials.py for why it does not
read the store itself). Each answer becomes an asset record keyed by the service tag, which identity joins to
the laptop MDM and procurement know by the same serial. Tags are looked up in batches of `batch_size` and the
results streamed as they come.

Incremental runs look up only serials no earlier run has (the cursor is the list of serials already looked up,
kept to the current list); full runs look every serial up again, so schedule a full run (e.g. weekly) to pick
up extended warranties. Unknown tags (`invalid: true`) are skipped with a log line, not quarantined.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import Field, model_validator

from itam_sync.sdk.auth import OAuth2ClientCredentials
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.pagination import Paginator
from itam_sync.sdk.serials import batches, load_serials

log = logging.getLogger(__name__)

MAX_BATCH = 100  # service tags per call (what public clients use; unverified)


class DellWarrantySettings(ConnectorSettings):
    """Settings of the `dell_warranty` connector."""

    client_id: str = Field(description="TechDirect API client id")
    client_secret: str = Field(description="TechDirect API client secret; a ${env:...} reference")
    base_url: str = Field(default="https://apigtwb2c.us.dell.com", description="API gateway base URL")
    token_url: str = Field(default="https://apigtwb2c.us.dell.com/auth/oauth/v2/token",
                           description="OAuth 2.0 token endpoint")
    entitlements_path: str = Field(default="/PROD/sbil/eapi/v5/asset-entitlements",
                                   description="Path of the batch entitlement look-up")
    serials: list[str] = Field(default_factory=list, description="Service tags to look up")
    serials_file: str | None = Field(
        default=None, description="File of service tags: one per line, or a CSV such as `itam-sync export "
                                  "--entity assets --format csv` output")
    manufacturer: str | None = Field(default="dell", description="In a CSV serials_file, use only rows whose "
                                                                  "manufacturer contains this (null: all rows)")
    batch_size: int = Field(default=MAX_BATCH, ge=1, le=MAX_BATCH, description="Service tags per call (max 100)")

    @model_validator(mode="after")
    def _some_serials(self) -> DellWarrantySettings:
        if not self.serials and not self.serials_file:
            raise ValueError("give the service tags to look up: serials and/or serials_file")
        return self


class DellWarranties(Stream):
    """One record per known service tag: the asset-entitlements answer, passed through."""

    name = "warranties"
    connector: DellWarrantyConnector

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        s = self.connector.settings
        serials = load_serials(s.serials, s.serials_file, s.manufacturer)
        done = set() if state.full or not state.cursor else set(state.cursor)
        todo = [t for t in serials if t not in done]
        log.info("%s: looking up %d of %d service tags", self.connector.name, len(todo), len(serials))
        for batch in batches(todo, s.batch_size):
            # One page per batch: `paginate` checks the body is a list (a malformed page fails the run).
            for rec in self.connector.http.paginate(s.entitlements_path, Paginator(),
                                                    params={"servicetags": ",".join(batch)}):
                if not isinstance(rec, dict) or not isinstance(rec.get("serviceTag"), str):
                    yield BadRecord("entitlement record without a serviceTag", raw=str(rec)[:2000])
                elif rec.get("invalid"):
                    log.info("%s: Dell does not know service tag %s; skipped", self.connector.name,
                             rec["serviceTag"])
                else:
                    yield rec
            done.update(batch)
        state.new_cursor = [t for t in serials if t in done]


class DellWarrantyConnector(Connector):
    """Dell warranty (ship date, warranty start/end, service level) by service tag; enriches known assets."""

    type_name = "dell_warranty"
    description = "Dell warranty look-ups by service tag (TechDirect asset-entitlements API)"
    settings_model = DellWarrantySettings
    example_settings: ClassVar[dict[str, Any]] = {
        "client_id": "${env:DELL_CLIENT_ID}", "client_secret": "${env:DELL_CLIENT_SECRET}",
        "serials_file": "exports/assets.csv"}
    settings: DellWarrantySettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        s = self.settings
        self.http = HttpClient(s.base_url, OAuth2ClientCredentials(s.token_url, s.client_id, s.client_secret))

    def streams(self) -> list[Stream]:
        return [DellWarranties(self)]

    def close(self) -> None:
        self.http.close()
