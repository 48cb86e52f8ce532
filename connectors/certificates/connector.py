"""Certificates connector: TLS certificates served at configured endpoints and held in AWS Certificate Manager.

- `endpoints`: one TLS handshake per configured `host[:port]` (SNI = the host name); the leaf certificate the server
  presents is parsed with `cryptography` (subject, issuer, SANs, validity, serial, SHA-256 fingerprint). The chain
  is not verified: an expired or self-signed certificate is exactly what an inventory must see. Source key: the
  endpoint, so a renewed certificate updates the same asset. Needs the core install only.
- `acm`: `acm.list_certificates` (every key type) and `acm.describe_certificate` per certificate in each configured
  region, through boto3 (the `aws` extra). Source key: the certificate ARN.
An endpoint that cannot be reached, or a region that cannot be read, fails the run (so nothing is marked missing
on a partial pull). Neither source has a change feed: every run reads everything again.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from pydantic import Field, field_validator, model_validator

from itam_sync.sdk import cloud  # its AWS names import boto3 on first use: only when ACM is read
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorError, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.extras import install_hint, installed

# ListCertificates returns only RSA_1024/RSA_2048 certificates unless key types are named.
ACM_KEY_TYPES = ["RSA_1024", "RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1", "EC_secp521r1"]


class CertificatesSettings(ConnectorSettings):
    """Endpoints need network reach only; ACM needs acm:ListCertificates and acm:DescribeCertificate."""

    endpoints: list[str] = Field(default_factory=list,
                                 description="TLS endpoints as host[:port] (port 443 by default), e.g. "
                                             "www.example.com, mail.example.com:465, [2001:db8::1]:8443")
    acm_regions: list[str] = Field(default_factory=list, description="AWS regions whose ACM certificates to read")
    timeout: float = Field(default=10.0, gt=0, description="Seconds for one TLS connect + handshake")
    aws_profile: str | None = Field(default=None, description="Named AWS profile; default: boto3's default chain")
    aws_endpoint_url: str | None = Field(default=None, description="Send ACM calls to this URL (tests, VPC "
                                                                   "endpoints); default: regional endpoints")
    retry_mode: Literal["standard", "adaptive", "legacy"] = Field(default="standard",
                                                                  description="botocore retry mode for ACM")
    max_attempts: int = Field(default=10, ge=1, le=30, description="Total attempts per ACM call")

    @field_validator("endpoints")
    @classmethod
    def _parse(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for e in v:
            host, port = split_endpoint(e)
            key = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            if key not in out:
                out.append(key)
        return out

    @model_validator(mode="after")
    def _something(self) -> CertificatesSettings:
        if not (self.endpoints or self.acm_regions):
            raise ValueError("configure endpoints and/or acm_regions")
        if self.acm_regions and not installed("boto3"):
            raise ValueError(f"acm_regions {install_hint('aws')} (endpoints work without it)")
        return self


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """'host', 'host:port', '[v6]:port' -> (host lower-cased, port)."""
    e = endpoint.strip()
    if e.startswith("["):
        host, _, rest = e[1:].partition("]")
        port = rest.removeprefix(":") or "443"
    elif e.count(":") == 1:
        host, port = e.split(":")
    else:
        host, port = e, "443"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a host[:port] endpoint: {endpoint!r}")
    return host.lower().rstrip("."), int(port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _names(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def describe(der: bytes) -> dict[str, Any]:
    """The fields of a DER certificate that matter for an inventory, JSON-ready."""
    cert = x509.load_der_x509_certificate(der)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [*ext.get_values_for_type(x509.DNSName), *map(str, ext.get_values_for_type(x509.IPAddress))]
    except x509.ExtensionNotFound:
        sans = []
    return {
        "subject": cert.subject.rfc4514_string(),
        "subjectCommonName": _names(cert.subject, NameOID.COMMON_NAME),
        "subjectAlternativeNames": sans,
        "issuer": cert.issuer.rfc4514_string(),
        "issuerCommonName": _names(cert.issuer, NameOID.COMMON_NAME),
        "issuerOrganization": _names(cert.issuer, NameOID.ORGANIZATION_NAME),
        "notBefore": cert.not_valid_before_utc.isoformat(),
        "notAfter": cert.not_valid_after_utc.isoformat(),
        "serialNumber": format(cert.serial_number, "x"),
        "sha256Fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
        "selfSigned": cert.issuer == cert.subject,
    }


class Endpoints(Stream):
    """The leaf certificate presented at each configured endpoint."""

    name = "endpoints"
    connector: CertificatesConnector

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        timeout = self.connector.settings.timeout
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # inventory, not trust: expired and self-signed must be seen
        for endpoint in self.connector.settings.endpoints:
            host, port = split_endpoint(endpoint)
            try:
                with socket.create_connection((host, port), timeout=timeout) as sock, \
                        context.wrap_socket(sock, server_hostname=None if _is_ip(host) else host) as tls:
                    der = tls.getpeercert(binary_form=True)
                    protocol = tls.version()
            except (OSError, ssl.SSLError) as exc:
                raise ConnectorError(f"TLS endpoint {endpoint}: {type(exc).__name__}: {exc}; the run stops so "
                                     "nothing is marked missing", kind="system") from exc
            if not der:
                yield BadRecord(f"{endpoint}: the server presented no certificate", source_key=endpoint)
                continue
            try:
                fields = describe(der)
            except ValueError as exc:
                yield BadRecord(f"{endpoint}: unreadable certificate: {exc}", der.hex()[:2000], source_key=endpoint)
                continue
            yield {"endpoint": endpoint, "host": host, "port": port, "protocol": protocol, **fields}


class Acm(Stream):
    """ACM certificates of every configured region."""

    name = "acm"
    connector: CertificatesConnector

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        yield from cloud.sweep(self.connector.settings.acm_regions, self._region, errors=cloud.AWS_ERRORS,
                         where=lambda region: f"ACM in region {region}")

    def _region(self, region: str) -> Iterator[dict[str, Any] | BadRecord]:
        aws = self.connector.aws
        acm = aws.client(aws.base, "acm", region)
        for page in acm.get_paginator("list_certificates").paginate(Includes={"keyTypes": ACM_KEY_TYPES}):
            for summary in page.get("CertificateSummaryList", []):
                arn = summary.get("CertificateArn")
                if not arn:
                    yield BadRecord(f"ACM {region}: certificate without an ARN", json.dumps(cloud.jsonable(summary)))
                    continue
                cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
                yield {**cloud.jsonable(cert), "Region": region, "Account": arn.split(":")[4]}


class CertificatesConnector(Connector):
    """TLS certificates from endpoints (standard library `ssl`, no HTTP; parsed with `cryptography`) and from ACM
    through boto3 (signing, regional endpoints, paginators, throttling retries) set up by `cloud.AwsSessions`."""

    type_name = "certificates"
    description = "TLS certificates from host:port endpoints and AWS Certificate Manager"
    settings_model = CertificatesSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "endpoints": ["www.example.com", "vpn.example.com:8443"],
        "acm_regions": ["eu-north-1", "us-east-1"],
    }
    settings: CertificatesSettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        s = self.settings
        if s.acm_regions:  # boto3 only then: endpoints need no extra
            self.aws = cloud.AwsSessions(cloud.AwsOptions(profile=s.aws_profile, endpoint_url=s.aws_endpoint_url,
                                                          retry_mode=s.retry_mode, max_attempts=s.max_attempts))

    def streams(self) -> list[Stream]:
        s = self.settings
        return [*([Endpoints(self)] if s.endpoints else []), *([Acm(self)] if s.acm_regions else [])]
