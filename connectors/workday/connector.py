"""Workday: workers from a Report-as-a-Service (RaaS) custom report in JSON (vendor-apis.md §11).

`GET https://{host}/ccx/service/customreport2/{tenant}/{owner}/{report}?format=json` plus the report's
prompts as query parameters returns `{"Report_Entry": [{...}, ...]}` in one response (no paging). The keys
of each entry are the column aliases the report author chose, so every tenant's report differs: the
connector passes entries through untouched and mappings/workday.yaml (or your own mapping) names the
columns. Only Advanced reports with "Enable As Web Service" are reachable.

Auth, one of:
- `username` + `password`: HTTP basic as an Integration System User (ISU) whose security group may Get the
  report's data sources;
- `client_id` + `client_secret` + `refresh_token`: an API client for integrations, trading the refresh
  token for access tokens (`OAuth2RefreshToken`) at `token_url`, by default
  `https://{host}/ccx/oauth2/{tenant}/token` derived from the report URL (unverified: vendor-apis.md marks
  this path and Workday's acceptance of a bearer token on RaaS as unverified). A 401 fetches a new access
  token once.

Incremental runs: a report reads only changed workers if it defines a prompt such as "Updated from"; name it
in `incremental_prompt` and each incremental run sends the start time of the last successful run (formatted
with `incremental_prompt_format`). Without it every run reads the whole report (the engine skips unchanged
rows by hash). Full runs never send the incremental prompt, so they see every worker and can mark the
missing ones; if the report requires the prompt, give it a floor value in `params` (e.g. "1900-01-01").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from requests.auth import AuthBase

from itam_sync.sdk.auth import BasicAuth, OAuth2RefreshToken
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient

log = logging.getLogger(__name__)

CURSOR_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # how the cursor is saved; sent in `incremental_prompt_format`


class WorkdaySettings(ConnectorSettings):
    """Settings of the `workday` connector."""

    report_url: str = Field(description="RaaS URL: https://{host}/ccx/service/customreport2/{tenant}/{owner}/"
                                        "{report} (format=json is added; other query parameters are kept)")
    username: str | None = Field(default=None, description="ISU user name for HTTP basic, e.g. ISU_ITAM@acme")
    password: str | None = Field(default=None, description="ISU password; a ${env:...} reference")
    client_id: str | None = Field(default=None, description="API client id (refresh-token auth)")
    client_secret: str | None = Field(default=None, description="API client secret; a ${env:...} reference")
    refresh_token: str | None = Field(default=None, description="Non-expiring refresh token of the API client")
    token_url: str | None = Field(default=None,
                                  description="Token endpoint; default https://{host}/ccx/oauth2/{tenant}/token")
    client_auth: Literal["basic", "body"] = Field(
        default="basic", description="How client id/secret reach the token endpoint (HTTP basic or form fields)")
    params: dict[str, str] = Field(default_factory=dict, description="Report prompts, sent as query parameters")
    incremental_prompt: str | None = Field(
        default=None, description="Prompt the report filters changed workers by (e.g. Updated_From)")
    incremental_prompt_format: str = Field(
        default="%Y-%m-%d", description="strftime format of that prompt's value (UTC); unverified default")
    stream: str = Field(default="workers", description="Stream name; the mapping's streams key")
    timeout_s: float = Field(default=300, gt=0, description="Read timeout in seconds (large reports are slow)")

    @field_validator("report_url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip()
        parts = urlsplit(v)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError("must be the report's absolute URL, https://{host}/ccx/service/customreport2/...")
        fmt = dict(parse_qsl(parts.query)).get("format")
        if fmt not in (None, "json"):
            raise ValueError(f"the connector reads JSON; remove format={fmt} from the URL")
        return v

    @model_validator(mode="after")
    def _one_auth(self) -> WorkdaySettings:
        basic, oauth = bool(self.username), bool(self.refresh_token or self.client_id)
        if basic == oauth:
            raise ValueError("set exactly one of username + password, client_id + client_secret + refresh_token")
        if basic and not self.password:
            raise ValueError("username needs password")
        if oauth and not (self.client_id and self.client_secret and self.refresh_token):
            raise ValueError("refresh-token auth needs client_id, client_secret and refresh_token")
        if oauth and not self.token_url and "/customreport2/" not in urlsplit(self.report_url).path:
            raise ValueError("cannot derive token_url from report_url; set token_url")
        return self

    def default_token_url(self) -> str:
        parts = urlsplit(self.report_url)
        tenant = parts.path.split("/customreport2/", 1)[1].split("/")[0]
        return f"{parts.scheme}://{parts.netloc}/ccx/oauth2/{tenant}/token"


class WorkdayReport(Stream):
    """Every `Report_Entry` of the report, passed through as the report author named its columns."""

    name = "workers"
    connector: WorkdayConnector

    def __init__(self, connector: WorkdayConnector) -> None:
        super().__init__(connector)
        self.name = connector.settings.stream  # type: ignore[misc]

    def params(self, state: StreamState) -> dict[str, str]:
        s = self.connector.settings
        params = {**dict(parse_qsl(urlsplit(s.report_url).query)), **s.params, "format": "json"}
        if s.incremental_prompt and state.cursor and not state.full:
            since = datetime.strptime(str(state.cursor), CURSOR_FORMAT).replace(tzinfo=UTC)
            params[s.incremental_prompt] = since.strftime(s.incremental_prompt_format)
        return params

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        s = self.connector.settings
        started = datetime.now(UTC).strftime(CURSOR_FORMAT)  # before the read: changes during it are re-read
        url = urlunsplit(urlsplit(s.report_url)._replace(query=""))
        body = self.connector.http.request_json("GET", url, params=self.params(state))
        entries = body.get("Report_Entry") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            # Reading this as "no workers" would mark everyone missing on a full run: fail instead.
            raise HttpError("malformed Workday report: no `Report_Entry` list in the response (is the report "
                            "enabled as a web service, and the URL the JSON one?)", url=url)
        for entry in entries:
            if not isinstance(entry, dict):
                yield BadRecord("Report_Entry item is not a JSON object", raw=str(entry)[:2000])
                continue
            yield entry
        state.new_cursor = started


class WorkdayConnector(Connector):
    """Workday workers (-> people) from a RaaS custom report in JSON; ISU basic auth or OAuth refresh token."""

    type_name = "workday"
    description = "Workday: workers from a Report-as-a-Service custom report (JSON), mapped per tenant"
    settings_model = WorkdaySettings
    example_settings: ClassVar[dict[str, Any]] = {
        "report_url": "https://wd5-services1.myworkday.com/ccx/service/customreport2/acme/ISU_ITAM/ITAM_Workers",
        "username": "ISU_ITAM@acme", "password": "${env:WORKDAY_ISU_PASSWORD}"}
    settings: WorkdaySettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        s = self.settings
        parts = urlsplit(s.report_url)
        self.http = HttpClient(f"{parts.scheme}://{parts.netloc}", self._auth(), timeout=(10, s.timeout_s))

    def _auth(self) -> AuthBase:
        s = self.settings
        if s.username:
            return BasicAuth(s.username, str(s.password))
        return OAuth2RefreshToken(s.token_url or s.default_token_url(), str(s.client_id), s.client_secret,
                                  str(s.refresh_token), auth_style=s.client_auth)

    def streams(self) -> list[Stream]:
        return [WorkdayReport(self)]

    def close(self) -> None:
        self.http.close()
