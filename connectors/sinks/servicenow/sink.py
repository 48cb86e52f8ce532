"""ServiceNow CMDB: golden assets as configuration items through the Identification and Reconciliation API.

Why IRE and not the Table API: `POST /api/now/identifyreconcile?sysparm_data_source=<source>` lets the CMDB
apply its own identification rules (serial number, name, ...) and reconciliation rules (which data source may
update which attribute), so itam-sync is one authorised source among others rather than a writer that
overrides Discovery. It only inserts or updates CIs: nothing is ever deleted or retired by this sink.

One request per batch:

    POST /api/now/identifyreconcile?sysparm_data_source=ItamSync
    {"items": [{"className": "cmdb_ci_computer", "internal_id": "asset-17", "values": {"serial_number": ...}}]}

    -> {"result": {"items": [{"className": ..., "operation": "INSERT|UPDATE|NO_CHANGE|...", "sysId": ...,
                              "inputIndices": [0], "errorCount": 0, "errors": [{"error": ..., "message": ...}]}],
                   "relations": [], "additionalCommittedItems": [], ...}}

`assigned_to` is a reference to sys_user, so the holder's e-mail (or user name / employee number) is resolved
to a sys_id with the Table API, paged with sysparm_limit/sysparm_offset:

    GET /api/now/table/sys_user?sysparm_query=emailIN<a>,<b>^ORuser_nameIN...^ORemployee_numberIN...
        &sysparm_fields=sys_id,email,user_name,employee_number&sysparm_limit=100&sysparm_offset=0
    -> {"result": [{"sys_id": ..., "email": ..., "user_name": ..., "employee_number": ...}, ...]}

Holders not found are left out of the CI's values (the CMDB keeps what it has).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from requests.auth import AuthBase

from itam_sync.model.canonical import ASSET_FIELDS
from itam_sync.publish.sinks.base import GoldenRecord, PlannedCall, PushOutcome, RecordSink, SinkSettings
from itam_sync.sdk.auth import BasicAuth, OAuth2ClientCredentials
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient
from itam_sync.sdk.pagination import OffsetPaginator

log = logging.getLogger(__name__)

DEFAULT_CLASSES = {"laptop": "cmdb_ci_computer", "desktop": "cmdb_ci_computer", "server": "cmdb_ci_server"}
# canonical asset field -> CI column. List fields send their first value. Reference columns other than
# assigned_to (manufacturer, location, department, model_id) need sys_ids and are left out by default.
DEFAULT_FIELDS = {
    "serial_number": "serial_number",
    "hostname": "name",
    "fqdn": "fqdn",
    "model": "model_number",
    "os_name": "os",
    "os_version": "os_version",
    "asset_tag": "asset_tag",
    "purchase_date": "purchase_date",
    "warranty_end": "warranty_expiration",
    "mac_addresses": "mac_address",
    "ip_addresses": "ip_address",
    "assigned_to": "assigned_to",
}
UPDATED = {"UPDATE", "UPDATE_WITH_UPGRADE", "UPDATE_WITH_DOWNGRADE", "UPDATE_WITH_SWITCH"}
USER_LOOKUP_CHUNK = 50  # holders per sys_user query (keeps the encoded query short)


class ServiceNowSettings(SinkSettings):
    """Settings of the `servicenow` sink."""

    base_url: str = Field(description="instance URL, e.g. https://example.service-now.com")
    auth: Literal["basic", "oauth"] = Field(default="basic", description="basic (user + password) or oauth")
    username: str | None = Field(default=None, description="integration user (basic auth)")
    password: str | None = Field(default=None, description="its password; a ${env:...} reference")
    client_id: str | None = Field(default=None, description="OAuth client id (client credentials grant)")
    client_secret: str | None = Field(default=None, description="OAuth client secret; a ${env:...} reference")
    token_url: str | None = Field(default=None, description="OAuth token URL (default <base_url>/oauth_token.do)")
    data_source: str = Field(default="ItamSync", description="sysparm_data_source: a discovery_source choice value")
    classes: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CLASSES),
                                    description="asset kind -> CI class (kinds not listed are skipped)")
    default_class: str | None = Field(default=None, description="CI class for kinds not in `classes`")
    fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_FIELDS),
                                   description="canonical asset field -> CI column")
    resolve_users: bool = Field(default=True, description="assigned_to e-mail -> sys_user sys_id (Table API)")
    user_page_size: int = Field(default=100, ge=1, le=10_000, description="sysparm_limit of user lookups")
    api_version: str | None = Field(default=None, description="e.g. v1 for /api/now/v1/identifyreconcile")

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(ASSET_FIELDS))
        if unknown:
            raise ValueError(f"unknown asset field(s) {', '.join(unknown)}; fields: {', '.join(ASSET_FIELDS)}")
        return v

    @model_validator(mode="after")
    def _check_auth(self) -> ServiceNowSettings:
        if self.auth == "basic" and not (self.username and self.password):
            raise ValueError("auth basic needs username and password")
        if self.auth == "oauth" and not (self.client_id and self.client_secret):
            raise ValueError("auth oauth needs client_id and client_secret")
        return self


class ServiceNowSink(RecordSink):
    """Golden assets -> CMDB CIs via `POST /api/now/identifyreconcile`."""

    type_name: ClassVar[str] = "servicenow"
    description: ClassVar[str] = "ServiceNow CMDB: assets as CIs through the Identification and Reconciliation API"
    settings_model: ClassVar[type[ServiceNowSettings]] = ServiceNowSettings
    entity_types: ClassVar[tuple[str, ...]] = ("asset",)
    example_settings: ClassVar[dict[str, Any]] = {
        "base_url": "https://example.service-now.com", "auth": "basic", "username": "itam_sync",
        "password": "${env:SERVICENOW_PASSWORD}", "data_source": "ItamSync"}

    def __init__(self, name: str, settings: ServiceNowSettings) -> None:
        super().__init__(name, settings)
        self.cfg = settings
        self._http: HttpClient | None = None
        self._users: dict[str, str | None] = {}  # lower-cased holder reference -> sys_id (None: not found)

    @property
    def http(self) -> HttpClient:
        if self._http is None:
            self._http = HttpClient(self.cfg.base_url, self._auth())
        return self._http

    def _auth(self) -> AuthBase:
        c = self.cfg
        if c.auth == "oauth":
            return OAuth2ClientCredentials(c.token_url or f"{c.base_url.rstrip('/')}/oauth_token.do",
                                           c.client_id or "", c.client_secret)
        return BasicAuth(c.username or "", c.password or "")

    @property
    def path(self) -> str:
        return f"/api/now/{self.cfg.api_version}/identifyreconcile" if self.cfg.api_version \
            else "/api/now/identifyreconcile"

    def _class_of(self, record: GoldenRecord) -> str | None:
        return self.cfg.classes.get(str(record.get("kind", ""))) or self.cfg.default_class

    def accepts(self, record: GoldenRecord) -> str | None:
        if self._class_of(record) is None:
            return f"kind {record.get('kind')!r} has no CI class (set `classes` or `default_class`)"
        if not (record.get("serial_number") or record.get("hostname")):
            return "no serial number or host name for the CMDB to identify it by"
        return None

    # -- payload --------------------------------------------------------------------------------------------
    def _values(self, record: GoldenRecord, planning: bool = False) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field, column in self.cfg.fields.items():
            v = record.get(field)
            if v is None:
                continue
            if isinstance(v, list):
                v = v[0]
            if field == "assigned_to":
                if not self.cfg.resolve_users:
                    continue
                sys_id = self._users.get(str(v).strip().lower())
                if planning:
                    sys_id = sys_id or f"<sys_id of sys_user {v}>"
                if sys_id is None:
                    continue  # unknown in the CMDB: leave the CI's holder as it is
                v = sys_id
            values[column] = v
        if "name" not in values and record.get("serial_number"):
            values["name"] = record.get("serial_number")
        return values

    def _items(self, records: Sequence[GoldenRecord], planning: bool = False) -> list[dict[str, Any]]:
        return [{"className": self._class_of(r), "internal_id": f"asset-{r.entity_id}",
                 "values": self._values(r, planning)} for r in records]

    def _holders(self, records: Sequence[GoldenRecord]) -> list[str]:
        if not self.cfg.resolve_users or "assigned_to" not in self.cfg.fields:
            return []
        return sorted({str(r.get("assigned_to")).strip().lower() for r in records if r.get("assigned_to")})

    # -- pushing --------------------------------------------------------------------------------------------
    def _resolve_users(self, holders: list[str], outcome: PushOutcome) -> None:
        todo = [h for h in holders if h not in self._users]
        paginator = OffsetPaginator(limit=self.cfg.user_page_size, limit_param="sysparm_limit",
                                    offset_param="sysparm_offset")

        def count(_response: Any, _body: Any) -> None:
            outcome.calls += 1

        for i in range(0, len(todo), USER_LOOKUP_CHUNK):
            chunk = todo[i:i + USER_LOOKUP_CHUNK]
            joined = ",".join(chunk)
            params = {"sysparm_query": f"emailIN{joined}^ORuser_nameIN{joined}^ORemployee_numberIN{joined}",
                      "sysparm_fields": "sys_id,email,user_name,employee_number"}
            for row in self.http.paginate("/api/now/table/sys_user", paginator, params, records_path="result",
                                          on_page=count):
                for key in ("email", "user_name", "employee_number"):
                    ref = str(row.get(key) or "").strip().lower()
                    if ref and row.get("sys_id"):
                        self._users.setdefault(ref, row["sys_id"])
            for h in chunk:
                self._users.setdefault(h, None)

    def push_records(self, records: Sequence[GoldenRecord]) -> PushOutcome:
        outcome = PushOutcome()
        self._resolve_users(self._holders(records), outcome)
        body = self.http.request_json("POST", self.path, params={"sysparm_data_source": self.cfg.data_source},
                                      json={"items": self._items(records)})
        outcome.calls += 1
        self._read_result(body, records, outcome)
        return outcome

    def _read_result(self, body: Any, records: Sequence[GoldenRecord], outcome: PushOutcome) -> None:
        result = body.get("result") if isinstance(body, dict) else None
        if isinstance(result, str):  # not in the reference (an object there); tolerated if a JSON string comes
            try:
                result = json.loads(result)
            except ValueError:
                result = None
        items = result.get("items") if isinstance(result, dict) else None
        if not isinstance(items, list):
            raise HttpError(f"unexpected identifyreconcile response (no result.items): {str(body)[:200]}")
        seen: set[int] = set()
        for pos, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            indices = item.get("inputIndices") or [pos]
            idx = indices[0] if isinstance(indices[0], int) else pos
            if not 0 <= idx < len(records):
                continue
            seen.add(idx)
            eid = records[idx].entity_id
            op = str(item.get("operation") or "")
            errors = item.get("errors") or []
            if item.get("errorCount") or errors:
                msg = "; ".join(f"{e.get('error')}: {e.get('message')}" for e in errors if isinstance(e, dict))
                outcome.failed.append((eid, f"CMDB refused the CI ({op or 'no operation'}): {msg or 'error'}"))
            elif op == "INSERT":
                outcome.created += 1
            elif op in UPDATED:
                outcome.updated += 1
            elif op == "NO_CHANGE":
                outcome.unchanged += 1
            else:
                outcome.failed.append((eid, f"CMDB operation {op or '(none)'} for the CI"))
        for idx, record in enumerate(records):
            if idx not in seen:
                outcome.failed.append((record.entity_id, "the CMDB returned no result for this CI"))

    def plan_records(self, records: Sequence[GoldenRecord]) -> list[PlannedCall]:
        calls = []
        holders = self._holders(records)
        if holders:
            calls.append(PlannedCall("GET", self.http.url("/api/now/table/sys_user"),
                                     f"look up {len(holders)} holder(s) by e-mail / user name / employee number"))
        calls.append(PlannedCall("POST", self.http.url(f"{self.path}?sysparm_data_source={self.cfg.data_source}"),
                                 f"{len(records)} CI(s): " + ", ".join(r.label() for r in records[:5])
                                 + (" ..." if len(records) > 5 else ""),
                                 {"items": self._items(records, planning=True)}))
        return calls

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
