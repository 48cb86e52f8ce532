"""End to end: the three cloud connectors sync into one SQLite store through the engine.

AWS runs on moto (two accounts by assumed role, two regions), Azure on `responses` (token + ARM through
azure-core's RequestsTransport), GCP on googleapiclient's HttpMockSequence (token exchange + aggregatedList).
Every instance must become a golden asset of kind cloud_instance carrying its provider, account and region.
"""

from __future__ import annotations

import json
import re
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
from itam_sync.connectors.gcp.connector import GcpConnector
from moto import mock_aws

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import run_connector
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store

ROOT = Path(__file__).resolve().parents[3]
CONNECTOR_TESTS = ROOT / "tests" / "connectors"
AZ = CONNECTOR_TESTS / "azure" / "fixtures"
GC = CONNECTOR_TESTS / "gcp" / "fixtures"
TENANT = "7d3c1b2a-0f4e-4d5c-9b8a-6e5f4d3c2b1a"
FIN = "3f2a6c1e-8b7d-4e5f-9a0b-1c2d3e4f5a6b"
SBX = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
A, B = "111111111111", "222222222222"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
SA_JSON = json.dumps({"type": "service_account", "project_id": "fin-prod", "private_key_id": "k1", "private_key": _KEY,
                      "client_email": "itam@fin-prod.iam.gserviceaccount.com", "client_id": "1",
                      "token_uri": "https://oauth2.googleapis.com/token"})
REGISTRY = Registry(extra={"aws": AwsConnector, "azure": AzureConnector, "gcp": GcpConnector})


def az(name: str) -> Any:
    return json.loads((AZ / name).read_text())


JSON = {"Content-Type": "application/json; charset=utf-8"}  # msrest-era azure-mgmt clients need it to parse


def azure_arm(request: Any) -> tuple[int, dict[str, str], str]:
    url = urlsplit(request.url)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    parts = url.path.strip("/").split("/")
    if parts == ["subscriptions"]:
        return 200, JSON, json.dumps(az("subscriptions_page2.json" if "$skiptoken" in query
                                      else "subscriptions_page1.json"))
    sub = parts[1].lower()
    if query.get("statusOnly") == "true":
        return 200, JSON, json.dumps(az("vms_fin_status.json" if sub == FIN else "vms_sandbox_status.json"))
    if sub == FIN:
        return 200, JSON, json.dumps(az("vms_fin_page2.json" if "$skiptoken" in query else "vms_fin_page1.json"))
    return 200, JSON, json.dumps(az("vms_sandbox.json"))


class MockSequence(HttpMockSequence):
    def close(self) -> None:
        pass


def gcp_transport(self: GcpConnector) -> MockSequence:
    ok = {"status": "200", "content-type": "application/json"}
    return MockSequence([(ok, json.dumps({"access_token": "gce-token", "expires_in": 3599, "token_type": "Bearer"}))]
                        + [(ok, (GC / f).read_text()) for f in ("aggregated_fin_page1.json",
                                                                 "aggregated_fin_page2.json",
                                                                 "aggregated_platform.json")])


@pytest.fixture
def clouds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[tuple[str, str], list[str]]]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none"),
                       "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
                       "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=lambda s: None))
    monkeypatch.setattr(HttpTransport, "sleep", lambda self, s: None)
    monkeypatch.setattr(googleapiclient.http, "time", types.SimpleNamespace(sleep=lambda s: None))
    monkeypatch.setattr(GcpConnector, "transport", gcp_transport)
    login = f"https://login.microsoftonline.com/{TENANT}"
    with mock_aws(), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{login}/v2.0/.well-known/openid-configuration", json=az("openid_configuration.json"))
        rsps.add(responses.POST, f"{login}/oauth2/v2.0/token", json=az("token.json"))
        rsps.add_callback(responses.GET, re.compile(r"https://management\.azure\.com/.*"), callback=azure_arm)
        launched: dict[tuple[str, str], list[str]] = {}
        for account in (A, B):
            creds = boto3.client("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/seed",
                                                    RoleSessionName="seed")["Credentials"]
            session = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                                    aws_secret_access_key=creds["SecretAccessKey"],
                                    aws_session_token=creds["SessionToken"])
            for region in ("eu-north-1", "us-east-1"):
                out = session.client("ec2", region_name=region).run_instances(
                    ImageId="ami-12345678", MinCount=2, MaxCount=2, InstanceType="t3.small")
                launched[(account, region)] = [i["InstanceId"] for i in out["Instances"]]
        yield launched


def test_three_clouds_become_cloud_instance_assets(clouds: dict[tuple[str, str], list[str]], tmp_path: Path) -> None:
    settings = Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 'clouds.db'}"), connectors=[
        ConnectorConfig(name="aws-org", type="aws", settings={
            "accounts": [A, B], "role_name": "ItamReadOnly", "regions": ["eu-north-1", "us-east-1"]}),
        ConnectorConfig(name="azure-tenant", type="azure", settings={
            "tenant_id": TENANT, "client_id": "itam-reader", "client_secret": "s3cret", "retry_total": 1}),
        ConnectorConfig(name="gcp-projects", type="gcp", settings={
            "projects": ["fin-prod", "platform-shared"], "service_account_json": SA_JSON}),
    ])
    results = {name: run_connector(settings, name, full=True, registry=REGISTRY)
               for name in ("aws-org", "azure-tenant", "gcp-projects")}
    assert {n: r.status for n, r in results.items()} == dict.fromkeys(results, "success")
    # The half-created Azure VM and the GCP instance without an id are quarantined, not fatal.
    assert results["azure-tenant"].counts["virtual_machines"]["quarantined"] == 1
    assert results["gcp-projects"].counts["instances"]["quarantined"] == 1

    store = Store.open(settings.store.url)
    with store.begin() as repo:
        goldens = [golden for _, golden, status in repo.entities.iter_entities("asset")]
    store.close()
    value = {(g["instance_id"][0]): {f: v[0] for f, v in g.items()} for g in goldens}
    assert len(goldens) == len(value) == 8 + 4 + 3  # one asset per instance, nothing joined wrongly
    assert all(v["kind"] == "cloud_instance" and v["cloud_account"] and v["region"] for v in value.values())

    for (account, region), ids in clouds.items():
        for instance_id in ids:
            assert (value[instance_id]["cloud_provider"], value[instance_id]["cloud_account"],
                    value[instance_id]["region"]) == ("aws", account, region)
    erp = value["11111111-2222-3333-4444-555555555555"]
    assert (erp["cloud_provider"], erp["cloud_account"], erp["region"], erp["power_state"]) == (
        "azure", FIN, "swedencentral", "running")
    assert value["2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"]["cloud_account"] == SBX
    batch = value["1234567890123456789"]
    assert (batch["cloud_provider"], batch["cloud_account"], batch["region"], batch["instance_type"]) == (
        "gcp", "fin-prod", "europe-north1", "e2-standard-4")
    # Each golden field names the connector it came from.
    assert {g["instance_id"][1] for g in goldens} == {"aws-org", "azure-tenant", "gcp-projects"}
