"""GCP connector: Compute Engine instances of the configured projects.

One stream, `instances`: `GET compute/v1/projects/{project}/aggregated/instances` per project, every zone in
one paged list (`pageToken`). Scopes that hold only a `warning` (no instances there) are skipped; zones
listed as `unreachables` fail the run, since a partial list would mark their instances missing. A project
that cannot be read fails the run too (`itam_sync.sdk.cloud.sweep`). Compute Engine has no modified-since
filter, so every run is a full sweep.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

import httplib2
from pydantic import Field, field_validator

from itam_sync.sdk.cloud import GCP_ERRORS, GoogleApis, google_pages, service_account_credentials, sweep
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorError, ConnectorSettings, Stream, StreamState

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


def _last(url: Any) -> str | None:
    return url.rstrip("/").rsplit("/", 1)[-1] if isinstance(url, str) and url else None


class Instances(Stream):
    """Compute Engine instances of every configured project, all zones."""

    name = "instances"
    connector: GcpConnector

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        yield from sweep(self.connector.settings.projects, self._project, errors=GCP_ERRORS,
                         where=lambda project: f"instances.aggregatedList of project {project}")

    def _project(self, project: str) -> Iterator[dict[str, Any] | BadRecord]:
        s = self.connector.settings
        params: dict[str, Any] = {"project": project, "maxResults": s.page_size}
        if s.filter:
            params["filter"] = s.filter
        for _, page in google_pages(self.connector.compute().instances(), "aggregatedList",
                                    lambda request: request.execute(num_retries=s.num_retries), **params):
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
        self.google = GoogleApis(self.credentials, lambda: self.transport())

    def credentials(self) -> Any:
        """The service-account key's credentials, or Application Default Credentials when no key is set."""
        s = self.settings
        return service_account_credentials(key_json=s.service_account_json, key_file=s.service_account_file,
                                           scopes=SCOPES, application_default=True)

    def transport(self) -> Any:
        """The plain HTTP layer under the token handling (tests swap in an HttpMockSequence)."""
        return httplib2.Http(timeout=int(self.settings.timeout))

    def compute(self) -> Any:
        """The Compute v1 service, built once per run from the bundled discovery document."""
        return self.google.service("compute", "v1", self.settings.api_endpoint)

    def streams(self) -> list[Stream]:
        return [Instances(self)]

    def close(self) -> None:
        self.google.close()
