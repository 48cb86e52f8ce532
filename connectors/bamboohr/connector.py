"""BambooHR: every employee, Active and Inactive, from one custom report (vendor-apis.md §10).

Why a custom report (`POST /v1/reports/custom?format=JSON`) and not the employee directory: the directory
lists only Active employees (a terminated person would silently vanish and, on a full run, be marked missing
instead of terminated), returns 403 when the company turned directory sharing off, and its fields are
company-configured. The custom report returns Active and Inactive employees with exactly the fields asked
for, in one response (no paging). Unknown or forbidden fields are silently dropped by BambooHR, so a field
the API key may not read just never appears.

Auth: HTTP basic with the API key as the username and "x" as the password. The key is static: a revoked key
is a 401 that fails the run as a configuration error (there is nothing to refresh).

Incremental runs filter the report on `lastChanged` (`filters.lastChanged.value` = the largest `lastChanged`
the last run saw); full runs send no filter. BambooHR throttles with 503 (some endpoints 429) and
`Retry-After`; the shared HTTP layer honours both. The custom-report endpoint is marked deprecated in favour
of datasets; its body shape and the `lastChanged` filter are as vendor-apis.md §10 describes them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import Field, field_validator

from itam_sync.sdk.auth import BasicAuth
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.bamboohr.com/api/gateway.php/{company_domain}"
# Field aliases of the report (vendor-apis.md §10; several names are unverified: confirm with /v1/meta/fields).
DEFAULT_FIELDS = ("id", "employeeNumber", "workEmail", "firstName", "lastName", "displayName", "department",
                  "jobTitle", "supervisorEmail", "supervisorEId", "location", "status", "hireDate",
                  "terminationDate", "lastChanged")
REQUIRED_FIELDS = ("id", "lastChanged")  # the source key and the incremental cursor


class BambooHRSettings(ConnectorSettings):
    """Settings of the `bamboohr` connector."""

    api_key: str = Field(description="BambooHR API key (acts with its user's access); a ${env:...} reference")
    company_domain: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$",
                                description="Company subdomain: `acme` for https://acme.bamboohr.com")
    base_url: str | None = Field(default=None, description=f"API base URL; default {DEFAULT_BASE_URL}")
    fields: list[str] = Field(default_factory=lambda: list(DEFAULT_FIELDS),
                              description="Field aliases the report requests (id and lastChanged are always added)")
    only_current: bool = Field(default=True,
                               description="`onlyCurrent`: current values of effective-dated fields, not future ones")
    timeout_s: float = Field(default=120, gt=0, description="Read timeout of the report request, in seconds")

    @field_validator("fields")
    @classmethod
    def _required(cls, v: list[str]) -> list[str]:
        if len(v) > 400:
            raise ValueError("a custom report takes at most 400 fields")
        return [*v, *(f for f in REQUIRED_FIELDS if f not in v)]

    def api_base(self) -> str:
        return (self.base_url or DEFAULT_BASE_URL).format(company_domain=self.company_domain).rstrip("/")


class BambooHREmployees(Stream):
    """POST /v1/reports/custom?format=JSON: `{"fields": [...], "employees": [{...}, ...]}`."""

    name = "employees"
    cursor_field = "lastChanged"
    connector: BambooHRConnector

    def body(self, state: StreamState) -> dict[str, Any]:
        body: dict[str, Any] = {"title": "itam-sync employees", "fields": self.connector.settings.fields}
        if state.cursor and not state.full:
            body["filters"] = {"lastChanged": {"includeNull": "no", "value": str(state.cursor)}}
        return body

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        s = self.connector.settings
        params = {"format": "JSON", "onlyCurrent": "true" if s.only_current else "false"}
        body = self.connector.http.request_json("POST", "/v1/reports/custom", params=params, json=self.body(state))
        employees = body.get("employees") if isinstance(body, dict) else None
        if not isinstance(employees, list):
            # Reading this as "no employees" would mark everyone missing on a full run: fail instead.
            raise HttpError("malformed custom report from BambooHR: no `employees` list in the response",
                            url=f"{s.api_base()}/v1/reports/custom")
        for employee in employees:
            if not isinstance(employee, dict):
                yield BadRecord("employee entry is not a JSON object", raw=str(employee)[:2000])
                continue
            yield employee


class BambooHRConnector(Connector):
    """BambooHR employees (-> people) from a custom report; API key as basic auth."""

    type_name = "bamboohr"
    description = "BambooHR: employees (id, work e-mail, department, title, manager, location, status, dates)"
    settings_model = BambooHRSettings
    example_settings: ClassVar[dict[str, Any]] = {"company_domain": "acme", "api_key": "${env:BAMBOOHR_API_KEY}"}
    settings: BambooHRSettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        s = self.settings
        self.http = HttpClient(s.api_base(), BasicAuth(s.api_key, "x"), timeout=(10, s.timeout_s))

    def streams(self) -> list[Stream]:
        return [BambooHREmployees(self)]

    def close(self) -> None:
        self.http.close()
