"""GCP connector: Compute Engine instances of the configured projects.

One stream, `instances`: `GET compute/v1/projects/{project}/aggregated/instances` per project, every zone in
one paged list (`pageToken`). Scopes that hold only a `warning` (no instances there) are skipped; zones
listed as `unreachables` fail the run, since a partial list would mark their instances missing. Compute
Engine has no modified-since filter, so every run is a full sweep.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any, ClassVar

import google.auth
import httplib2
from google.auth.exceptions import GoogleAuthError
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from pydantic import Field, field_validator

from itam_sync.sdk.connector import BadRecord, Connector, ConnectorError, ConnectorSettings, Stream, StreamState

log = logging.getLogger(__name__)

SCOPES = ["https://www.googleapis.com/auth/compute.readonly"]


class GcpSettings(ConnectorSettings):
    """A service account with roles/compute.viewer on each project (or on a folder above them)."""

    projects: list[str] = Field(min_length=1, description="Project ids to read")
    service_account_json: str | None = Field(default=None,
                                             description="Service-account key JSON (use ${file:...} or "
                                                         "${env:...}); default: service_account_file or ADC")
    service_account_file: str | None = Field(default=None,
                                             description="Path to a service-account key file; default: "
                                                         "Application Default Credentials")
    api_endpoint: str | None = Field(default=None,
                                     description="Compute API base URL including /compute/v1/, e.g. a Private "
                                                 "Service Connect endpoint; default "
                                                 "https://compute.googleapis.com/compute/v1/")
    filter: str | None = Field(default=None, description="AIP-160 filter, e.g. status = RUNNING")
    page_size: int = Field(default=500, ge=1, le=500, description="maxResults per page")
    num_retries: int = Field(default=5, ge=0, le=20,
                             description="Retries per page on 429, 403 rateLimitExceeded and 5xx "
                                         "(exponential backoff)")
    timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for one API response")

    @field_validator("projects")
    @classmethod
    def _strip(cls, v: list[str]) -> list[str]:
        return [p.strip() for p in v if p.strip()]


def _fail(exc: Exception, where: str) -> ConnectorError:
    status = int(getattr(getattr(exc, "resp", None), "status", 0) or 0)
    config = isinstance(exc, GoogleAuthError) or status in (400, 401, 403, 404)
    return ConnectorError(f"GCP {where}: {exc}; the run stops so nothing is marked missing",
                          kind="config" if config else "system")


def _last(url: Any) -> str | None:
    return url.rstrip("/").rsplit("/", 1)[-1] if isinstance(url, str) and url else None


class Instances(Stream):
    """Compute Engine instances of every configured project, all zones."""

    name = "instances"
    connector: GcpConnector

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        for project in self.connector.settings.projects:
            yield from self._project(project)

    def _project(self, project: str) -> Iterator[dict[str, Any] | BadRecord]:
        s = self.connector.settings
        instances = self.connector.compute().instances()
        params: dict[str, Any] = {"project": project, "maxResults": s.page_size}
        if s.filter:
            params["filter"] = s.filter
        request = instances.aggregatedList(**params)
        while request is not None:
            try:
                page = request.execute(num_retries=s.num_retries)
            except (HttpError, GoogleAuthError, httplib2.HttpLib2Error, OSError) as exc:
                raise _fail(exc, f"instances.aggregatedList of project {project}") from exc
            if page.get("unreachables"):
                raise ConnectorError(f"GCP project {project}: unreachable scopes {page['unreachables']}; the run "
                                     "stops so their instances are not marked missing", kind="system")
            for scope, item in (page.get("items") or {}).items():
                for inst in (item or {}).get("instances") or []:
                    if not isinstance(inst, dict) or not inst.get("id"):
                        yield BadRecord(f"project {project} {scope}: instance without an id", json.dumps(inst)[:2000])
                        continue
                    zone = _last(inst.get("zone"))
                    yield {**inst, "projectId": project, "zoneName": zone,
                           "regionName": zone.rsplit("-", 1)[0] if zone and "-" in zone else None,
                           "machineTypeName": _last(inst.get("machineType"))}
            request = instances.aggregatedList_next(request, page)


class GcpConnector(Connector):
    """Compute Engine instances across projects.

    google-api-python-client is the natural client: it builds the request from the Compute discovery
    document bundled with the package (`static_discovery=True`, so no network call to build it), pages with
    `aggregatedList_next` and retries 429/5xx and rate-limit 403s (`execute(num_retries=...)`); google-auth
    signs the service-account JWT, caches the token and refreshes it on a 401 (`AuthorizedHttp`).
    """

    type_name = "gcp"
    description = "GCP Compute Engine instances across projects (instances.aggregatedList)"
    settings_model = GcpSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "projects": ["fin-prod", "platform-shared"],
        "service_account_json": "${file:/etc/itam/gcp-compute-viewer.json}",
    }
    settings: GcpSettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        self._service: Any = None
        self.http: AuthorizedHttp | None = None

    def credentials(self) -> Any:
        s = self.settings
        try:
            if s.service_account_json:
                return service_account.Credentials.from_service_account_info(json.loads(s.service_account_json),
                                                                             scopes=SCOPES)
            if s.service_account_file:
                return service_account.Credentials.from_service_account_file(s.service_account_file, scopes=SCOPES)
            creds, _ = google.auth.default(scopes=SCOPES)
            return creds
        except (ValueError, OSError, GoogleAuthError) as exc:
            raise ConnectorError(f"GCP credentials: {type(exc).__name__}: {exc}", kind="config") from None

    def transport(self) -> Any:
        """The plain HTTP layer under the token handling (tests swap in an HttpMockSequence)."""
        return httplib2.Http(timeout=int(self.settings.timeout))

    def compute(self) -> Any:
        """The Compute v1 service, built once per run from the bundled discovery document."""
        if self._service is None:
            self.http = AuthorizedHttp(self.credentials(), http=self.transport())
            options = {"api_endpoint": self.settings.api_endpoint} if self.settings.api_endpoint else None
            self._service = build("compute", "v1", http=self.http, static_discovery=True, cache_discovery=False,
                                  client_options=options)
        return self._service

    def streams(self) -> list[Stream]:
        return [Instances(self)]

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None
