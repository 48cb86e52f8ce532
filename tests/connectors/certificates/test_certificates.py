"""Certificates connector: real TLS handshakes against local servers with certificates made by `cryptography`,
and ACM through moto, alone and through the engine.

Date safety: every certificate is made at test time, relative to the system clock (the clock moto checks an
imported certificate against, and the one libfaketime moves), and every expected date is computed from the same
values, never written down: `faketime -f +400d pytest tests/connectors/certificates` passes as today does."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import socket
import ssl
import tempfile
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.endpoint
import botocore.handlers
import pytest
from botocore.awsrequest import AWSResponse
from botocore.client import BaseClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from itam_sync.connectors.certificates.connector import CertificatesConnector, CertificatesSettings, split_endpoint
from moto import mock_aws
from moto.core.botocore_stubber import MockRawResponse

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import RunResult, SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import BadRecord, ConnectorError, StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
MAPPING = ROOT / "mappings" / "certificates.yaml"
CERT_DIR = Path(tempfile.mkdtemp(prefix="itam-certs-"))
# The system clock, not itam-sync's (--clock-shift does not move moto's validity check); to the second, like
# the certificate's own validity dates.
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
EXPIRING_IN_DAYS = 14
VALID = (NOW - DAY, NOW + 365 * DAY)  # from yesterday to next year
EXPIRING = (NOW - 90 * DAY, NOW + EXPIRING_IN_DAYS * DAY)
EXPIRED = (NOW - 400 * DAY, NOW - 30 * DAY)


def make_cert(cn: str, sans: list[str], *, serial: int, issuer: tuple[x509.Name, Any] | None = None,
              ec_key: bool = False, validity: tuple[dt.datetime, dt.datetime] = VALID
              ) -> tuple[bytes, bytes, x509.Name, Any]:
    """(cert PEM, key PEM, subject, key): self-signed, or signed by `issuer` (its name and key), valid over
    `validity` (not before, not after)."""
    key: Any = ec.generate_private_key(ec.SECP256R1()) if ec_key else rsa.generate_private_key(65537, 2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Test")])
    issuer_name, issuer_key = issuer or (subject, key)
    alt: list[x509.GeneralName] = []
    for s in sans:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(s)))
        except ValueError:
            alt.append(x509.DNSName(s))
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
            .serial_number(serial).not_valid_before(validity[0])
            .not_valid_after(validity[1]).add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(issuer_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem, subject, key


SELF_CERT, SELF_KEY, _, _ = make_cert("itam-test.example.com", ["itam-test.example.com", "www.itam-test.example.com",
                                                                "127.0.0.1"], serial=0x1A2B3C4D5E6F)
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Issuing CA R3"),
                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Trust Services")])
_CA_KEY = rsa.generate_private_key(65537, 2048)
LEAF_CERT, LEAF_KEY, _, _ = make_cert("api.example.com", ["api.example.com"], serial=0xBEEF,
                                      issuer=(CA_NAME, _CA_KEY), ec_key=True, validity=EXPIRING)
# ACM refuses to import an expired certificate (so does moto): this one is only ever served at an endpoint.
OLD_CERT, OLD_KEY, _, _ = make_cert("legacy.example.com", ["legacy.example.com"], serial=0x0DD, validity=EXPIRED)


class TlsServer:
    """A TLS server on 127.0.0.1 that completes handshakes and hangs up; stops itself when closed."""

    def __init__(self, cert: bytes, key: bytes, port: int = 0) -> None:
        name = f"{abs(hash(cert))}"
        (CERT_DIR / f"{name}.pem").write_bytes(cert)
        (CERT_DIR / f"{name}.key").write_bytes(key)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(CERT_DIR / f"{name}.pem", CERT_DIR / f"{name}.key")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.sni: list[str | None] = []
        self.context.sni_callback = lambda s, server_name, c: self.sni.append(server_name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with contextlib.suppress(OSError, ssl.SSLError), \
                    self.context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)  # wait for the client to hang up
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORT = free_port()
SETTINGS: dict[str, Any] = {"endpoints": [f"127.0.0.1:{PORT}"], "acm_regions": ["eu-north-1", "us-east-1"],
                            "timeout": 5, "max_attempts": 2}


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",  # seconds per test; no test needs a real AMI
                       "AWS_CONFIG_FILE": str(tmp_path / "none"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(key, value)


def seed_acm() -> dict[str, str]:
    eu = boto3.client("acm", region_name="eu-north-1")
    us = boto3.client("acm", region_name="us-east-1")
    imported = eu.import_certificate(Certificate=SELF_CERT, PrivateKey=SELF_KEY)["CertificateArn"]
    leaf = eu.import_certificate(Certificate=LEAF_CERT, PrivateKey=LEAF_KEY)["CertificateArn"]
    requested = us.request_certificate(DomainName="shop.example.com",
                                       SubjectAlternativeNames=["www.shop.example.com"])["CertificateArn"]
    return {"imported": imported, "ec": leaf, "requested": requested}


@contextlib.contextmanager
def no_sleep(sleeps: list[float] | None = None) -> Iterator[list[float]]:
    out = [] if sleeps is None else sleeps
    original = botocore.endpoint.time
    botocore.endpoint.time = types.SimpleNamespace(sleep=out.append)
    try:
        yield out
    finally:
        botocore.endpoint.time = original


@contextlib.contextmanager
def cert_mock(fail: bool) -> Iterator[None]:
    """The conformance suite's mock: the endpoint served and ACM seeded, or nothing listening on the port."""
    with mock_aws(), no_sleep():
        seed_acm()
        if fail:
            yield
            return
        server = TlsServer(SELF_CERT, SELF_KEY, PORT)
        try:
            yield
        finally:
            server.close()


TestCertificatesConformance = conformance_suite(CertificatesConnector, SETTINGS, mock=cert_mock, mapping=MAPPING)


# ------------------------------------------------------------------------------------------ helpers


@pytest.fixture
def servers() -> Iterator[tuple[TlsServer, TlsServer]]:
    a, b = TlsServer(SELF_CERT, SELF_KEY), TlsServer(LEAF_CERT, LEAF_KEY)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def acm() -> Iterator[dict[str, str]]:
    with mock_aws(), no_sleep():
        yield seed_acm()


def pull(stream: str, **overrides: Any) -> list[Any]:
    conn = CertificatesConnector("certs", CertificatesSettings.model_validate({**SETTINGS, **overrides}))
    (s,) = [s for s in conn.streams() if s.name == stream]
    return list(s.records(StreamState()))


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 'certs.db'}"),
                    connectors=[ConnectorConfig(name="certs", type="certificates",
                                                settings={**SETTINGS, **overrides}, mapping=str(MAPPING))])


def run(settings: Settings, *, full: bool = True) -> RunResult:
    return run_connector(settings, "certs", full=full, registry=Registry(extra={"certificates": CertificatesConnector}))


@contextlib.contextmanager
def before_send(event: str, handler: Callable[..., Any]) -> Iterator[None]:
    botocore.handlers.BUILTIN_HANDLERS.insert(0, (event, handler))
    try:
        yield
    finally:
        botocore.handlers.BUILTIN_HANDLERS.remove((event, handler))


# -------------------------------------------------------------------------------------------- tests


def test_endpoint_certificates_are_read_and_parsed(servers: tuple[TlsServer, TlsServer]) -> None:
    a, b = servers
    records = pull("endpoints", endpoints=[f"127.0.0.1:{a.port}", f"localhost:{b.port}"], acm_regions=[])
    assert [r["endpoint"] for r in records] == [f"127.0.0.1:{a.port}", f"localhost:{b.port}"]
    own, leaf = records
    assert own["subjectCommonName"] == "itam-test.example.com" and own["selfSigned"] is True
    assert own["subjectAlternativeNames"] == ["itam-test.example.com", "www.itam-test.example.com", "127.0.0.1"]
    assert own["notBefore"] == VALID[0].isoformat() and own["notAfter"] == VALID[1].isoformat()
    assert own["serialNumber"] == "1a2b3c4d5e6f" and leaf["notAfter"] == EXPIRING[1].isoformat()
    assert len(own["sha256Fingerprint"]) == 64 and own["protocol"].startswith("TLS")
    assert leaf["issuerOrganization"] == "Example Trust Services" and leaf["selfSigned"] is False
    assert leaf["issuer"] == "O=Example Trust Services,CN=Example Issuing CA R3"
    # SNI carries the host name, never an IP address.
    assert a.sni == [None] and b.sni == ["localhost"]


def test_expired_and_soon_expiring_certificates_are_inventoried_with_their_dates() -> None:
    """An inventory must see what a browser refuses: the expired certificate, and the one expiring in N days."""
    old, soon = TlsServer(OLD_CERT, OLD_KEY), TlsServer(LEAF_CERT, LEAF_KEY)
    try:
        records = pull("endpoints", endpoints=[f"127.0.0.1:{old.port}", f"127.0.0.1:{soon.port}"], acm_regions=[])
    finally:
        old.close()
        soon.close()
    expired, expiring = records
    assert dt.datetime.fromisoformat(expired["notAfter"]) == EXPIRED[1] < NOW
    assert dt.datetime.fromisoformat(expiring["notAfter"]) - NOW == EXPIRING_IN_DAYS * DAY
    stream = load_mapping(MAPPING).stream("endpoints")
    assert [stream.map(r, "endpoints").fields["expires_on"] for r in records] == [
        EXPIRED[1].date().isoformat(), EXPIRING[1].date().isoformat()]


def test_acm_certificate_expiring_soon_keeps_its_expiry(acm: dict[str, str]) -> None:
    by_arn = {r["CertificateArn"]: r for r in pull("acm", endpoints=[], acm_regions=["eu-north-1"])}
    soon, own = by_arn[acm["ec"]], by_arn[acm["imported"]]
    assert dt.datetime.fromisoformat(soon["NotAfter"]) == EXPIRING[1]
    assert dt.datetime.fromisoformat(own["NotBefore"]) == VALID[0]
    stream = load_mapping(MAPPING).stream("acm")
    assert stream.map(soon, "acm").fields["expires_on"] == EXPIRING[1].date().isoformat()


def test_unreachable_endpoint_fails_the_run_and_marks_nothing_missing(servers: tuple[TlsServer, TlsServer],
                                                                     tmp_path: Path) -> None:
    a, b = servers
    settings = settings_for(tmp_path, endpoints=[f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], acm_regions=[])
    assert run(settings).counts["endpoints"]["new"] == 2
    b.close()
    with pytest.raises(SyncFailed, match=f"127.0.0.1:{b.port}"):
        run(settings)
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        counts, last = repo.entities.counts(), repo.runs.list_runs(1)[0]
    store.close()
    assert last["status"] == "failed" and counts["missing_records"] == 0


def test_acm_certificates_of_every_region(acm: dict[str, str]) -> None:
    records = pull("acm", endpoints=[])
    by_arn = {r["CertificateArn"]: r for r in records}
    assert set(by_arn) == set(acm.values())  # the EC certificate too: every key type is asked for
    assert {r["Region"] for r in records} == {"eu-north-1", "us-east-1"}
    assert by_arn[acm["requested"]]["Status"] == "PENDING_VALIDATION"
    assert by_arn[acm["imported"]]["Account"] == "123456789012"
    json.dumps(records)


def test_acm_throttling_is_retried(acm: dict[str, str]) -> None:
    throttled: list[str] = []

    def throttle_once(request: Any, **kwargs: Any) -> AWSResponse | None:
        if throttled:
            return None
        throttled.append(request.url)
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, MockRawResponse(body))

    with no_sleep() as sleeps, before_send("before-send.acm.ListCertificates", throttle_once):
        records = pull("acm", endpoints=[], acm_regions=["eu-north-1"], max_attempts=3)
    assert len(records) == 2 and len(throttled) == 1 and len(sleeps) == 1


def test_acm_access_denied_is_a_config_error(acm: dict[str, str]) -> None:
    def deny(request: Any, **kwargs: Any) -> AWSResponse:
        body = json.dumps({"__type": "AccessDeniedException", "Message": "not authorized to acm:ListCertificates"})
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, MockRawResponse(body))

    with before_send("before-send.acm.ListCertificates", deny), pytest.raises(ConnectorError) as err:
        pull("acm", endpoints=[])
    assert err.value.kind == "config"


def test_malformed_acm_entry_is_quarantined(acm: dict[str, str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    original = BaseClient._make_api_call

    def drop_arn(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        result = original(client, operation, params)
        if operation == "ListCertificates":
            for summary in result["CertificateSummaryList"]:
                if summary["CertificateArn"] == acm["requested"]:
                    del summary["CertificateArn"]
        return result

    monkeypatch.setattr(BaseClient, "_make_api_call", drop_arn)
    settings = settings_for(tmp_path, endpoints=[])
    result = run(settings)
    assert result.counts["acm"]["quarantined"] == 1 and result.counts["acm"]["new"] == 2
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        rows = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert [(r[3], "without an ARN" in r[5]) for r in rows] == [("acm", True)]


def test_incremental_runs_read_everything(acm: dict[str, str], tmp_path: Path) -> None:
    server = TlsServer(SELF_CERT, SELF_KEY, PORT)
    try:
        settings = settings_for(tmp_path)
        first = run(settings)
        second = run(settings, full=False)
    finally:
        server.close()
    assert first.counts["endpoints"]["new"] == 1 and first.counts["acm"]["new"] == 3
    assert second.counts["endpoints"]["unchanged"] == 1 and second.counts["acm"]["unchanged"] == 3


def test_settings_and_endpoint_parsing() -> None:
    assert split_endpoint("WWW.Example.com") == ("www.example.com", 443)
    assert split_endpoint("mail.example.com:465") == ("mail.example.com", 465)
    assert split_endpoint("[2001:db8::1]:8443") == ("2001:db8::1", 8443)
    model = CertificatesSettings.model_validate({"endpoints": ["a.example.com", "A.example.com:443", "[::1]:8443"]})
    assert model.endpoints == ["a.example.com:443", "[::1]:8443"]
    for bad in ({}, {"endpoints": ["host:99999"]}, {"endpoints": ["host:https"]}):
        with pytest.raises(ValueError):
            CertificatesSettings.model_validate(bad)
    assert [s.name for s in CertificatesConnector("c", CertificatesSettings.model_validate(
        {"acm_regions": ["eu-north-1"]})).streams()] == ["acm"]


def test_mapping_golden_endpoint(servers: tuple[TlsServer, TlsServer]) -> None:
    a, _ = servers
    (record,) = pull("endpoints", endpoints=[f"127.0.0.1:{a.port}"], acm_regions=[])
    stream = load_mapping(MAPPING).stream("endpoints")
    assert stream.source_key(record) == f"127.0.0.1:{a.port}"
    fields = stream.map(record, "endpoints").fields
    fingerprint = record["sha256Fingerprint"]
    assert fields == {
        "kind": "certificate",
        "subject_names": ["itam-test.example.com", "www.itam-test.example.com", "127.0.0.1"],
        "issuer": "Example Test",
        "expires_on": VALID[1].date().isoformat(),
        "lifecycle_state": "deployed",
        "tags": [f"endpoint=127.0.0.1:{a.port}", "serial=1a2b3c4d5e6f", f"sha256={fingerprint}",
                 "self_signed=true"],
    }
    assert "serial_number" not in fields  # a certificate serial never becomes a hardware serial


def test_mapping_golden_acm() -> None:
    record = {**json.loads((FIXTURES / "describe_certificate.json").read_text())["Certificate"],
              "Region": "eu-north-1", "Account": "222222222222"}
    stream = load_mapping(MAPPING).stream("acm")
    assert stream.source_key(record) == record["CertificateArn"]
    assert stream.map(record, "acm").fields == {
        "kind": "certificate",
        "subject_names": ["shop.example.com", "*.shop.example.com", "checkout.example.com"],
        "issuer": "Amazon",
        "expires_on": record["NotAfter"][:10],  # the fixture's own date: the mapping keeps the day
        "cloud_provider": "aws",
        "cloud_account": "222222222222",
        "region": "eu-north-1",
        "lifecycle_state": "deployed",
        "tags": ["serial=0e:4f:71:c1:2a:83:3d:a9:05:f4:1c:22:6b:7e:0a:91", "acm_status=ISSUED",
                 "acm_type=AMAZON_ISSUED", "in_use=true"],
    }


def test_no_record_is_a_bad_record_when_all_is_well(acm: dict[str, str]) -> None:
    assert not [r for r in pull("acm", endpoints=[]) if isinstance(r, BadRecord)]
