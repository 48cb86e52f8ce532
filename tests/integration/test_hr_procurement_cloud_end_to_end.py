"""End to end (issue 5's "done when"): HR, a procurement CSV, the three clouds and an MDM sync into ONE SQLite
store through the real engine, then a single merge.

- HR: BambooHR's custom report over `responses` (connector `hr`).
- Procurement: the `procurement` connector on a folder holding one finance CSV export (connector `purchasing`).
- MDM: Intune over `responses` with msal's OIDC discovery and token requests faked (connector `intune`).
- Clouds: AWS on moto (two accounts by assumed role, two regions), Azure on `responses` (token + ARM through
  azure-core's RequestsTransport), GCP on googleapiclient's HttpMockSequence; the Azure and GCP payloads are the
  connector tests' fixtures (tests/connectors/azure|gcp/fixtures), the transports are copied from
  tests/connectors/aws/test_cloud_end_to_end.py.

Each connector runs with merge=False and `merge_pending` merges once, as `itam-sync run` does. The test shows a
laptop's purchase cost and warranty from procurement, its holder from the MDM, the holder's department and
employment status from HR; a terminated employee; and every cloud instance as a cloud_instance asset with its
account and region.
"""

from __future__ import annotations

import json
import re
import shutil
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.endpoint
import googleapiclient.http
import pytest
import responses
from azure.core.pipeline.transport import HttpTransport
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from googleapiclient.http import HttpMockSequence
from itam_sync.connectors.aws.connector import AwsConnector
from itam_sync.connectors.azure.connector import AzureConnector
from itam_sync.connectors.bamboohr.connector import BambooHRConnector
from itam_sync.connectors.gcp.connector import GcpConnector
from itam_sync.connectors.intune.connector import IntuneConnector
from itam_sync.connectors.procurement.connector import ProcurementConnector
from moto import mock_aws
from tests_helpers import golden_by_key  # type: ignore[import-not-found]

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import merge_pending, run_connector
from itam_sync.settings import (
    ConnectorConfig,
    EntityPrecedence,
    FieldRuleConfig,
    PrecedenceConfig,
    Settings,
    StoreConfig,
)
from itam_sync.store import Store

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
FX = Path(__file__).parent / "fixtures" / "hr_cloud_e2e"
AZ = ROOT / "tests" / "connectors" / "azure" / "fixtures"
GC = ROOT / "tests" / "connectors" / "gcp" / "fixtures"

# HR
BAMBOO_REPORT_URL = "https://api.bamboohr.com/api/gateway.php/acme/v1/reports/custom"
# Intune (its own Entra tenant, distinct from the Azure one so the two token mocks never collide)
INTUNE_TENANT = "11111111-2222-3333-4444-555555555555"
INTUNE_LOGIN = f"https://login.microsoftonline.com/{INTUNE_TENANT}"
# Azure
AZ_TENANT = "7d3c1b2a-0f4e-4d5c-9b8a-6e5f4d3c2b1a"
AZ_LOGIN = f"https://login.microsoftonline.com/{AZ_TENANT}"
FIN = "3f2a6c1e-8b7d-4e5f-9a0b-1c2d3e4f5a6b"
SBX = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
# AWS
ACCT_A, ACCT_B = "111111111111", "222222222222"
AWS_REGIONS = ("eu-north-1", "us-east-1")
# GCP
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
SA_JSON = json.dumps({"type": "service_account", "project_id": "fin-prod", "private_key_id": "k1", "private_key": _KEY,
                      "client_email": "itam@fin-prod.iam.gserviceaccount.com", "client_id": "1",
                      "token_uri": "https://oauth2.googleapis.com/token"})

REGISTRY = Registry(extra={"bamboohr": BambooHRConnector, "procurement": ProcurementConnector,
                           "intune": IntuneConnector, "aws": AwsConnector, "azure": AzureConnector,
                           "gcp": GcpConnector})
ORDER = ["hr", "purchasing", "intune", "aws-org", "azure-tenant", "gcp-projects"]


def az(name: str) -> Any:
    return json.loads((AZ / name).read_text())


def azure_arm(request: Any) -> tuple[int, dict[str, str], str]:
    """ARM: subscriptions (two pages), VMs per subscription (FIN paged), and the instance-view status lists."""
    url = urlsplit(request.url)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    parts = url.path.strip("/").split("/")
    if parts == ["subscriptions"]:
        return 200, {}, json.dumps(az("subscriptions_page2.json" if "$skiptoken" in query
                                      else "subscriptions_page1.json"))
    sub = parts[1].lower()
    if query.get("statusOnly") == "true":
        return 200, {}, json.dumps(az("vms_fin_status.json" if sub == FIN else "vms_sandbox_status.json"))
    if sub == FIN:
        return 200, {}, json.dumps(az("vms_fin_page2.json" if "$skiptoken" in query else "vms_fin_page1.json"))
    return 200, {}, json.dumps(az("vms_sandbox.json"))


class MockSequence(HttpMockSequence):
    def close(self) -> None:
        pass


def gcp_transport(self: GcpConnector) -> MockSequence:
    ok = {"status": "200", "content-type": "application/json"}
    return MockSequence([(ok, json.dumps({"access_token": "gce-token", "expires_in": 3599, "token_type": "Bearer"}))]
                        + [(ok, (GC / f).read_text()) for f in ("aggregated_fin_page1.json",
                                                                 "aggregated_fin_page2.json",
                                                                 "aggregated_platform.json")])


def intune_graph(request: Any) -> tuple[int, dict[str, str], str]:
    assert request.headers.get("Authorization") == "Bearer intune-token"
    return 200, {"Content-Type": "application/json"}, (FX / "intune_managed_devices.json").read_text()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
          recorded_sleeps: list[float]) -> Iterator[dict[tuple[str, str], list[str]]]:
    """Every remote API mocked in one place (one RequestsMock: nested ones would hide each other's routes).

    Yields the AWS instance ids launched per (account, region)."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none"),
                       "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
                       "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=lambda s: None))
    monkeypatch.setattr(HttpTransport, "sleep", lambda self, s: None)
    monkeypatch.setattr(googleapiclient.http, "time", types.SimpleNamespace(sleep=lambda s: None))
    monkeypatch.setattr(GcpConnector, "transport", gcp_transport)
    with mock_aws(), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        # BambooHR
        rsps.post(BAMBOO_REPORT_URL, body=(FX / "bamboohr_report.json").read_text(),
                  content_type="application/json")
        # Intune: msal discovery + client-credentials token, then Graph managedDevices (one page)
        rsps.get(f"{INTUNE_LOGIN}/v2.0/.well-known/openid-configuration",
                 json={"token_endpoint": f"{INTUNE_LOGIN}/oauth2/v2.0/token", "issuer": f"{INTUNE_LOGIN}/v2.0",
                       "authorization_endpoint": f"{INTUNE_LOGIN}/oauth2/v2.0/authorize"})
        rsps.post(f"{INTUNE_LOGIN}/oauth2/v2.0/token",
                  json={"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                        "access_token": "intune-token"})
        rsps.add_callback(responses.GET, re.compile(
            r"https://graph\.microsoft\.com/(v1\.0|beta)/deviceManagement/managedDevices(\?.*)?$"),
            callback=intune_graph)
        # Azure
        rsps.get(f"{AZ_LOGIN}/v2.0/.well-known/openid-configuration", json=az("openid_configuration.json"))
        rsps.post(f"{AZ_LOGIN}/oauth2/v2.0/token", json=az("token.json"))
        rsps.add_callback(responses.GET, re.compile(r"https://management\.azure\.com/.*"), callback=azure_arm)
        # AWS: two instances in each region of each account
        launched: dict[tuple[str, str], list[str]] = {}
        for account in (ACCT_A, ACCT_B):
            creds = boto3.client("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/seed",
                                                    RoleSessionName="seed")["Credentials"]
            session = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                                    aws_secret_access_key=creds["SecretAccessKey"],
                                    aws_session_token=creds["SessionToken"])
            for region in AWS_REGIONS:
                out = session.client("ec2", region_name=region).run_instances(
                    ImageId="ami-12345678", MinCount=2, MaxCount=2, InstanceType="t3.small")
                launched[(account, region)] = [i["InstanceId"] for i in out["Instances"]]
        yield launched


def make_settings(tmp_path: Path) -> Settings:
    drop = tmp_path / "procurement-drop"
    drop.mkdir()
    shutil.copy(FX / "2023-purchases.csv", drop / "2023-purchases.csv")
    connectors = [
        ConnectorConfig(name="hr", type="bamboohr", role="hr", mapping=str(MAPPINGS / "bamboohr.yaml"),
                        settings={"company_domain": "acme", "api_key": "bamboo-KEY-123"}),
        ConnectorConfig(name="purchasing", type="procurement", role="procurement",
                        mapping=str(MAPPINGS / "procurement.yaml"), settings={"folder": str(drop)}),
        ConnectorConfig(name="intune", type="intune", role="mdm", mapping=str(MAPPINGS / "intune.yaml"),
                        settings={"tenant_id": INTUNE_TENANT, "client_id": "itam-intune-reader",
                                  "client_secret": "intune-S3CRET"}),
        ConnectorConfig(name="aws-org", type="aws", role="cloud", mapping=str(MAPPINGS / "aws.yaml"), settings={
            "accounts": [ACCT_A, ACCT_B], "role_name": "ItamReadOnly", "regions": list(AWS_REGIONS)}),
        ConnectorConfig(name="azure-tenant", type="azure", role="cloud", mapping=str(MAPPINGS / "azure.yaml"),
                        settings={"tenant_id": AZ_TENANT, "client_id": "itam-reader", "client_secret": "s3cret",
                                  "retry_total": 1}),
        ConnectorConfig(name="gcp-projects", type="gcp", role="cloud", mapping=str(MAPPINGS / "gcp.yaml"),
                        settings={"projects": ["fin-prod", "platform-shared"], "service_account_json": SA_JSON}),
    ]
    precedence = PrecedenceConfig(
        default=["intune", "aws-org", "azure-tenant", "gcp-projects", "purchasing", "hr"],
        person=EntityPrecedence(default=["hr"]),  # HR is the authority on people
        asset=EntityPrecedence(fields={
            "purchase_cost": FieldRuleConfig(order=["purchasing"]),
            "currency": FieldRuleConfig(order=["purchasing"]),
            "purchase_date": FieldRuleConfig(order=["purchasing"]),
            "warranty_end": FieldRuleConfig(order=["purchasing"]),
            "assigned_to": FieldRuleConfig(order=["intune"]),
        }),
    )
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 'itam.db'}"), connectors=connectors,
                    precedence=precedence)


def test_hr_procurement_mdm_and_clouds_merge_into_one_store(
        world: dict[tuple[str, str], list[str]], tmp_path: Path, recorded_sleeps: list[float]) -> None:
    settings = make_settings(tmp_path)
    results = {name: run_connector(settings, name, full=True, registry=REGISTRY, merge=False) for name in ORDER}
    assert {n: r.status for n, r in results.items()} == dict.fromkeys(ORDER, "success"), \
        {n: (r.status, r.counts) for n, r in results.items()}
    # The half-created Azure VM and the GCP instance without an id are quarantined, not fatal.
    assert results["azure-tenant"].counts["virtual_machines"]["quarantined"] == 1
    assert results["gcp-projects"].counts["instances"]["quarantined"] == 1

    store = Store.open(settings.store.url)
    try:
        merge_pending(settings, store)
        with store.begin() as repo:
            laptop = golden_by_key(repo, "asset", "serial_number:5CG1234XYZ")
            olle_laptop = golden_by_key(repo, "asset", "serial_number:5CG1299ABC")
            phone = golden_by_key(repo, "asset", "serial_number:F2LXK3ABCD12")
            holder_email = laptop["assigned_to"][0]
            holder = golden_by_key(repo, "person", f"email:{holder_email}")
            olle = golden_by_key(repo, "person", "email:olle.svensson@example.com")
            lars = golden_by_key(repo, "person", "email:lars.ek@example.com")
            assets = [golden for _, golden, _status in repo.entities.iter_entities("asset")]
    finally:
        store.close()

    # -- the laptop: purchase facts from procurement, holder from the MDM, one asset for both sources --------------
    value = {f: v[0] for f, v in laptop.items() if f != "_id"}
    source = {f: v[1] for f, v in laptop.items() if f != "_id"}
    assert (value["purchase_cost"], value["currency"], value["warranty_end"], value["purchase_date"]) == (
        1189.0, "EUR", "2026-01-04", "2023-01-05"), value
    assert {source[f] for f in ("purchase_cost", "currency", "warranty_end", "purchase_date")} == {"purchasing"}
    assert (value["order_number"], value["vendor"], source["order_number"]) == ("PO-2023-0377", "Dustin AB",
                                                                               "purchasing")
    assert value["kind"] == "laptop"  # Intune has no chassis type; the purchase line's category gives it
    assert (value["assigned_to"], source["assigned_to"]) == ("anna.berg@example.com", "intune")
    assert (value["hostname"], value["mdm_managed"], source["hostname"]) == ("lt-anna-w11", True, "intune"), value

    # -- the holder: found by the MDM's e-mail, department and employment status from HR ---------------------------
    assert (holder["department"][0], holder["department"][1]) == ("Finance", "hr")
    assert (holder["status"][0], holder["status"][1]) == ("active", "hr")
    assert (holder["display_name"][0], holder["employee_id"][0]) == ("Anna Berg", "E10442")
    assert lars["status"][0] == "active"

    # -- a terminated employee: status terminated, from the bamboohr connector -------------------------------------
    assert (olle["status"][0], olle["status"][1]) == ("terminated", "hr"), olle["status"]
    assert (olle["end_date"][0], olle["department"][0]) == ("2024-05-31", "Engineering")
    # ... and his laptop still names him as holder, so it shows up as a device to recover.
    assert olle_laptop["assigned_to"][0] == "olle.svensson@example.com"
    assert olle_laptop["purchase_cost"][0] == 1189.0
    # The phone was bought but never enrolled: procurement alone knows it.
    assert phone["kind"][0] == "mobile" and "assigned_to" not in phone
    assert {v[1] for f, v in phone.items() if f != "_id"} == {"purchasing"}

    # -- clouds: one cloud_instance asset per instance, with account and region ------------------------------------
    clouds = {g["instance_id"][0]: {f: v[0] for f, v in g.items()} for g in assets if "instance_id" in g}
    cloud_goldens = [g for g in assets if "instance_id" in g]
    assert len(cloud_goldens) == len(clouds) == 8 + 4 + 3  # one asset per instance, nothing joined wrongly
    assert all(c["kind"] == "cloud_instance" and c["cloud_account"] and c["region"] for c in clouds.values())
    for (account, region), ids in world.items():
        for instance_id in ids:
            assert (clouds[instance_id]["cloud_provider"], clouds[instance_id]["cloud_account"],
                    clouds[instance_id]["region"]) == ("aws", account, region)
    erp = clouds["11111111-2222-3333-4444-555555555555"]
    assert (erp["cloud_provider"], erp["cloud_account"], erp["region"]) == ("azure", FIN, "swedencentral")
    assert clouds["2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"]["cloud_account"] == SBX
    batch = clouds["1234567890123456789"]
    assert (batch["cloud_provider"], batch["cloud_account"], batch["region"]) == ("gcp", "fin-prod", "europe-north1")
    assert {g["instance_id"][1] for g in cloud_goldens} == {"aws-org", "azure-tenant", "gcp-projects"}
    # Nothing else in the store: 3 purchase lines (2 of them the Intune laptops) + 15 cloud instances.
    assert len(assets) == 3 + 15, laptop
