"""Domains connector: registration data of a configured list of domains, looked up through RDAP.

One stream, `domains`: `GET {rdap_base}/domain/{name}` per configured domain (RFC 9082/9083 JSON). The default
base, https://rdap.org, redirects each query to the registry's own RDAP server (found through IANA's bootstrap
registry), which `requests` follows. The mapping reads the registrar (the entity with role `registrar`, its
vCard `fn`), the expiry (the event `expiration`) and the status list. A domain the registry does not know
(404) is quarantined with a reason; every other failure fails the run. The list is small and RDAP has no
change feed, so every run looks every domain up again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import Field, field_validator

from itam_sync.sdk.connector import BadRecord, Connector, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.errors import HttpError
from itam_sync.sdk.http import HttpClient

log = logging.getLogger(__name__)


class DomainsSettings(ConnectorSettings):
    """No credentials: RDAP is public. Registries rate-limit anonymous clients (429 + Retry-After)."""

    domains: list[str] = Field(min_length=1, description="Registered domains to track, e.g. example.com")
    rdap_base: str = Field(default="https://rdap.org",
                           description="RDAP service to query: a bootstrap redirector (rdap.org) or one "
                                       "registry's server, e.g. https://rdap.verisign.com/com/v1")
    timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for one RDAP response")
    max_attempts: int = Field(default=5, ge=1, le=10, description="Attempts per lookup (429/5xx retried)")

    @field_validator("domains")
    @classmethod
    def _normalise(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for d in v:
            name = d.strip().lower().rstrip(".")
            if not name or "." not in name or "/" in name or " " in name:
                raise ValueError(f"not a domain name: {d!r}")
            if name not in out:
                out.append(name)
        return out

    @field_validator("rdap_base")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("rdap_base must be a URL starting with https://")
        return v.rstrip("/")


def ascii_name(name: str) -> str | None:
    """The A-label form RDAP servers index (IDNs as punycode), or None when it cannot be encoded."""
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return None


class Domains(Stream):
    """One RDAP domain object per configured domain, plus `domain` (the configured name, the source key)."""

    name = "domains"
    connector: DomainsConnector

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        http = self.connector.http
        for domain in self.connector.settings.domains:
            query = ascii_name(domain)
            if query is None:
                yield BadRecord(f"{domain}: not a valid internationalised domain name", domain, source_key=domain)
                continue
            try:
                body = http.get_json(f"domain/{query}")
            except HttpError as exc:
                if exc.status == 404:
                    yield BadRecord(f"{domain}: no RDAP record (not registered, or its registry has no RDAP "
                                    "service)", domain, source_key=domain)
                    continue
                raise
            if not isinstance(body, dict):
                yield BadRecord(f"{domain}: RDAP answer is not an object", str(body)[:2000], source_key=domain)
                continue
            yield {**body, "domain": domain}


class DomainsConnector(Connector):
    """Domains and their renewal dates from RDAP, through the shared `HttpClient` (retries, 429 waits)."""

    type_name = "domains"
    description = "Registered domains: registrar, expiry and status from RDAP"
    settings_model = DomainsSettings
    example_settings: ClassVar[dict[str, Any]] = {"domains": ["example.com", "example.org"]}
    settings: DomainsSettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        s = self.settings
        self.http = HttpClient(s.rdap_base, timeout=(10, s.timeout), max_attempts=s.max_attempts,
                               extra_headers={"Accept": "application/rdap+json, application/json"})

    def streams(self) -> list[Stream]:
        return [Domains(self)]

    def close(self) -> None:
        self.http.close()
