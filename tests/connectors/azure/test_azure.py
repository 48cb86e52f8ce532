"""Azure connector over `responses`: azure-identity and the azure-mgmt clients use azure-core's
RequestsTransport, so both the Entra token calls and the ARM calls go through these mocks."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from azure.core.pipeline.transport import HttpTransport
from itam_sync.connectors.azure.connector import AzureConnector, AzureSettings

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import RunResult, SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.cloud import rest_dict
from itam_sync.sdk.connector import BadRecord, ConnectorError, StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
MAPPING = ROOT / "mappings" / "azure.yaml"
TENANT = "7d3c1b2a-0f4e-4d5c-9b8a-6e5f4d3c2b1a"
LOGIN = f"https://login.microsoftonline.com/{TENANT}"
ARM = "https://management.azure.com"
FIN = "3f2a6c1e-8b7d-4e5f-9a0b-1c2d3e4f5a6b"
SBX = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
SETTINGS: dict[str, Any] = {"tenant_id": TENANT, "client_id": "itam-reader", "client_secret": "s3cret",
                            "retry_total": 2, "include_resources": True}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def json_typed(status: int, headers: dict[str, str], body: str) -> tuple[int, dict[str, str], str]:
    return status, {"Content-Type": "application/json; charset=utf-8", **headers}, body


class FakeAzure:
    """Entra (OIDC discovery + token endpoint) and ARM: subscriptions, VMs (paged, statusOnly), resources."""

    def __init__(self, rsps: responses.RequestsMock, arm: str = ARM, login: str = LOGIN) -> None:
        self.arm = arm
        self.tokens: list[dict[str, str]] = []  # token request forms, in order
        self.expires_in = 3599
        self.revoked: set[str] = set()
        self.calls: list[tuple[str, dict[str, str], str]] = []  # (path, query, bearer token)
        self.vms: dict[str, list[str]] = {FIN: ["vms_fin_page1.json", "vms_fin_page2.json"],
                                          SBX: ["vms_sandbox.json"]}
        self.status = {FIN: "vms_fin_status.json", SBX: "vms_sandbox_status.json"}
        self.resources = {FIN: "resources_fin.json", SBX: "resources_sandbox.json"}
        rsps.add(responses.GET, f"{login}/v2.0/.well-known/openid-configuration",
                 json=json.loads(json.dumps(load("openid_configuration.json")).replace(LOGIN, login)))
        rsps.add_callback(responses.POST, f"{login}/oauth2/v2.0/token", callback=self.token)
        # Through a lambda so a test can swap `arm_call` for a throttling or failing version. ARM answers JSON
        # with this content type; msrest-era clients (azure-mgmt-compute < 38) need it to parse the body.
        rsps.add_callback(responses.GET, re.compile(rf"{re.escape(arm)}/.*"), callback=lambda r: json_typed(
            *self.arm_call(r)))

    def token(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.tokens.append({k: v[0] for k, v in parse_qs(request.body).items()})
        body = {**load("token.json"), "access_token": f"arm-token-{len(self.tokens)}", "expires_in": self.expires_in}
        return 200, {}, json.dumps(body)

    def arm_call(self, request: Any) -> tuple[int, dict[str, str], str]:
        url = urlsplit(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.calls.append((url.path, query, bearer))
        if bearer in self.revoked:
            claims = base64.urlsafe_b64encode(b'{"access_token":{"nbf":{"essential":true,"value":"1717300000"}}}')
            challenge = (f'Bearer authorization_uri="{LOGIN}/oauth2/authorize", error="insufficient_claims", '
                         f'claims="{claims.decode()}"')
            return 401, {"WWW-Authenticate": challenge}, json.dumps(
                {"error": {"code": "InvalidAuthenticationToken", "message": "The access token has been revoked."}})
        if not bearer.startswith("arm-token-"):
            return 401, {}, json.dumps({"error": {"code": "AuthenticationFailed"}})
        parts = url.path.strip("/").split("/")
        if parts == ["subscriptions"]:
            name = "subscriptions_page2.json" if "$skiptoken" in query else "subscriptions_page1.json"
            return 200, {}, json.dumps(load(name)).replace(ARM, self.arm)
        sub = parts[1].lower()
        if parts[2:] == ["providers", "Microsoft.Compute", "virtualMachines"]:
            if query.get("statusOnly") == "true":
                return 200, {}, json.dumps(load(self.status[sub]))
            pages = self.vms[sub]
            body = load(pages[1] if "$skiptoken" in query else pages[0])
            if "nextLink" in body:
                body["nextLink"] = body["nextLink"].replace(ARM, self.arm)
            return 200, {}, json.dumps(body)
        if parts[2:] == ["resources"]:
            return 200, {}, json.dumps(load(self.resources[sub]))
        return 404, {}, json.dumps({"error": {"code": "ResourceNotFound"}})


@contextlib.contextmanager
def no_sleep(sleeps: list[float] | None = None) -> Iterator[list[float]]:
    """azure-core's RetryPolicy asks the transport to sleep: record the waits instead."""
    out = [] if sleeps is None else sleeps
    original = HttpTransport.sleep
    HttpTransport.sleep = lambda self, duration: out.append(duration)  # type: ignore[method-assign]
    try:
        yield out
    finally:
        HttpTransport.sleep = original  # type: ignore[method-assign]


@contextlib.contextmanager
def azure_mock(fail: bool) -> Iterator[None]:
    """The conformance suite's mock: the recorded tenant, or ARM answering 503 to everything."""
    with no_sleep(), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeAzure(rsps)
        if fail:
            fake.arm_call = lambda request: (503, {}, json.dumps({"error": {"code": "ServiceUnavailable"}}))  # type: ignore[method-assign]
        yield


TestAzureConformance = conformance_suite(AzureConnector, SETTINGS, mock=azure_mock, mapping=MAPPING)


# ------------------------------------------------------------------------------------------ helpers


@pytest.fixture
def fake() -> Iterator[FakeAzure]:
    with no_sleep(), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeAzure(rsps)


def connector(**overrides: Any) -> AzureConnector:
    return AzureConnector("azure-prod", AzureSettings.model_validate({**SETTINGS, **overrides}))


def pull(stream: str = "virtual_machines", **overrides: Any) -> list[Any]:
    conn = connector(**overrides)
    try:
        (s,) = [s for s in conn.streams() if s.name == stream]
        return list(s.records(StreamState()))
    finally:
        conn.close()


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 'azure.db'}"),
                    connectors=[ConnectorConfig(name="azure-prod", type="azure",
                                                settings={**SETTINGS, **overrides}, mapping=str(MAPPING))])


def run(settings: Settings, *, full: bool = True) -> RunResult:
    return run_connector(settings, "azure-prod", full=full, registry=Registry(extra={"azure": AzureConnector}))


def vm_ids(records: list[Any]) -> list[str]:
    return [r["name"] for r in records if not isinstance(r, BadRecord)]


# -------------------------------------------------------------------------------------------- tests


def test_vms_of_every_visible_subscription_with_power_state(fake: FakeAzure) -> None:
    records = pull()
    assert vm_ids(records) == ["vm-erp-01", "vm-win-ad", "vm-batch-legacy", "sbx-dev-7"]
    good = {r["name"]: r for r in records if not isinstance(r, BadRecord)}
    assert {n: r["powerState"] for n, r in good.items()} == {
        "vm-erp-01": "running", "vm-win-ad": "deallocated", "vm-batch-legacy": None, "sbx-dev-7": "stopped"}
    assert good["vm-erp-01"]["subscriptionId"] == FIN and good["vm-erp-01"]["resourceGroup"] == "RG-FIN"
    assert good["sbx-dev-7"]["subscriptionId"] == SBX  # listed upper case, normalised
    # Subscriptions paged (2 pages), then per subscription: statusOnly list + the VM pages.
    paths = [(p, q.get("statusOnly"), "$skiptoken" in q) for p, q, _ in fake.calls]
    vms = "providers/Microsoft.Compute/virtualMachines"
    assert paths == [("/subscriptions", None, False), ("/subscriptions", None, True),
                     (f"/subscriptions/{FIN}/{vms}", "true", False), (f"/subscriptions/{FIN}/{vms}", None, False),
                     (f"/subscriptions/{FIN}/{vms}", None, True),
                     (f"/subscriptions/{SBX}/{vms}", "true", False), (f"/subscriptions/{SBX}/{vms}", None, False)]
    # One client-credentials token for the ARM scope, reused for every call.
    assert len(fake.tokens) == 1
    form = fake.tokens[0]
    assert form["grant_type"] == "client_credentials" and form["client_id"] == "itam-reader"
    assert "https://management.azure.com/.default" in form["scope"].split()


def test_without_power_state_one_call_per_page(fake: FakeAzure) -> None:
    records = pull(power_state=False)
    assert all(r["powerState"] is None for r in records if not isinstance(r, BadRecord))
    assert not [q for _, q, _ in fake.calls if q.get("statusOnly")]


def test_subscription_filter(fake: FakeAzure) -> None:
    assert vm_ids(pull(subscriptions=[SBX.upper()])) == ["sbx-dev-7"]
    with pytest.raises(ConnectorError, match="not visible") as err:
        pull(subscriptions=["00000000-0000-0000-0000-000000000001"])
    assert err.value.kind == "config"


def test_empty_subscription_and_empty_page(fake: FakeAzure, tmp_path: Path) -> None:
    fake.vms[SBX] = ["resources_sandbox.json"]  # {"value": []}
    fake.status[SBX] = "resources_sandbox.json"
    assert vm_ids(pull(subscriptions=[SBX])) == []
    result = run(settings_for(tmp_path, subscriptions=[SBX]))
    assert result.status == "success" and result.counts["virtual_machines"]["seen"] == 0
    assert result.counts["resources"]["seen"] == 0


def test_resources_stream_leaves_vms_out(fake: FakeAzure) -> None:
    records = pull("resources")
    assert [r["name"] for r in records] == ["stfinprod01", "sql-fin"]
    (query,) = [q for p, q, _ in fake.calls if p.endswith(f"{FIN}/resources")]
    assert query["$filter"] == "resourceType ne 'Microsoft.Compute/virtualMachines'"
    assert query["$expand"] == "createdTime,changedTime,provisioningState"
    only = pull("resources", resource_types=["microsoft.sql/servers"])
    assert [r["name"] for r in only] == ["sql-fin"]
    assert [s.name for s in connector(include_resources=False).streams()] == ["virtual_machines"]


def test_429_retry_after_is_honoured(fake: FakeAzure) -> None:
    calls: list[str] = []
    original = fake.arm_call

    def throttle_once(request: Any) -> tuple[int, dict[str, str], str]:
        if "virtualMachines" in request.url and not calls:
            calls.append(request.url)
            return 429, {"Retry-After": "17", "x-ms-ratelimit-remaining-subscription-reads": "0"}, json.dumps(
                {"error": {"code": "TooManyRequests", "message": "throttled"}})
        return original(request)

    fake.arm_call = throttle_once  # type: ignore[method-assign]
    with no_sleep() as sleeps:
        records = pull(subscriptions=[SBX])
    assert vm_ids(records) == ["sbx-dev-7"] and len(calls) == 1
    assert sleeps == [17.0]


def test_5xx_given_up_fails_the_run_and_marks_nothing_missing(fake: FakeAzure, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    first = run(settings)
    assert first.status == "success" and first.counts["virtual_machines"]["new"] == 4
    original = fake.arm_call
    failed: list[str] = []

    def sandbox_down(request: Any) -> tuple[int, dict[str, str], str]:
        if SBX in request.url:
            failed.append(request.url)
            return 503, {}, json.dumps({"error": {"code": "ServiceUnavailable"}})
        return original(request)

    fake.arm_call = sandbox_down  # type: ignore[method-assign]
    with no_sleep() as sleeps, pytest.raises(SyncFailed, match=SBX):
        run(settings)
    # retry_total=2: three tries; azure-core retries the first at once, then backs off (0.8 s * 2).
    assert len(failed) == 3 and sleeps == [pytest.approx(1.6)]
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        counts, last = repo.entities.counts(), repo.runs.list_runs(1)[0]
    store.close()
    assert last["status"] == "failed" and counts["missing_records"] == 0


def test_revoked_token_is_replaced_after_a_claims_challenge(fake: FakeAzure) -> None:
    fake.revoked.add("arm-token-1")
    records = pull(subscriptions=[SBX])
    assert vm_ids(records) == ["sbx-dev-7"]
    assert len(fake.tokens) == 2 and "claims" in fake.tokens[1]
    assert [bearer for _, _, bearer in fake.calls][:2] == ["arm-token-1", "arm-token-2"]


def test_expiring_token_is_refreshed_before_the_next_call(fake: FakeAzure) -> None:
    fake.expires_in = 60  # inside azure-core's 5-minute refresh window: every call gets a fresh token
    pull(subscriptions=[SBX])
    bearers = [bearer for _, _, bearer in fake.calls]
    assert len(fake.tokens) >= 2 and len(set(bearers)) >= 2


def test_wrong_secret_is_a_config_error(tmp_path: Path) -> None:
    with no_sleep(), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeAzure(rsps)
        rsps.replace(responses.POST, f"{LOGIN}/oauth2/v2.0/token", status=401, json={
            "error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
        # After a refused token request msal validates the authority through instance discovery.
        rsps.add(responses.GET, "https://login.microsoftonline.com/common/discovery/instance",
                 json={"tenant_discovery_endpoint": f"{LOGIN}/v2.0/.well-known/openid-configuration",
                       "api-version": "1.1", "metadata": []})
        with pytest.raises(SyncFailed, match="AADSTS7000215"):
            run(settings_for(tmp_path))


def test_national_cloud_endpoints_are_settings() -> None:
    login = "https://login.microsoftonline.us"
    arm = "https://management.usgovcloudapi.net"
    with no_sleep(), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeAzure(rsps, arm=arm, login=f"{login}/{TENANT}")
        records = pull(authority_host=login, resource_manager_url=arm + "/", subscriptions=[SBX])
    assert vm_ids(records) == ["sbx-dev-7"]
    assert f"{arm}/.default" in fake.tokens[0]["scope"].split()


def test_malformed_vm_is_quarantined(fake: FakeAzure, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    result = run(settings)
    assert result.counts["virtual_machines"]["quarantined"] == 1
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        rows = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert [(r[3], "without an id" in r[5]) for r in rows] == [("virtual_machines", True)]


def test_incremental_runs_are_full_sweeps(fake: FakeAzure, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    run(settings)
    second = run(settings, full=False)
    assert second.counts["virtual_machines"]["unchanged"] == 4
    assert not [q for _, q, _ in fake.calls if "$filter" in q and "changedTime" in q["$filter"]]


def test_mapping_golden(fake: FakeAzure) -> None:
    records = {r["name"]: r for r in pull() if not isinstance(r, BadRecord)}
    vms = load_mapping(MAPPING).stream("virtual_machines")
    erp = records["vm-erp-01"]
    assert vms.source_key(erp) == erp["id"]
    assert vms.map(erp, "virtual_machines").fields == {
        "kind": "cloud_instance",
        "cloud_provider": "azure",
        "cloud_account": FIN,
        "region": "swedencentral",
        "instance_id": "11111111-2222-3333-4444-555555555555",
        "instance_type": "Standard_D4s_v5",
        "power_state": "running",
        "lifecycle_state": "deployed",
        "hostname": "vm-erp-01",
        "os_name": "Linux",
        "tags": ["owner=anna.berg@example.com", "env=prod"],
    }
    ad = vms.map(records["vm-win-ad"], "virtual_machines").fields
    assert ad["instance_id"] == "a7b6c5d4-e3f2-4a1b-9c8d-7e6f5a4b3c2d" and ad["hostname"] == "addc01"
    assert ad["os_name"] == "Windows" and ad["power_state"] == "deallocated"
    storage = load("resources_fin.json")["value"][0]
    res = load_mapping(MAPPING).stream("resources").map({**storage, "subscriptionId": FIN}, "resources").fields
    assert res == {"kind": "cloud_resource", "cloud_provider": "azure", "cloud_account": FIN,
                   "region": "swedencentral", "instance_id": storage["id"].lower(),
                   "instance_type": "Microsoft.Storage/storageAccounts", "tags": ["env=prod", "costcenter=4711"]}


# ------------------------------------------------ issue 14: the REST shape in every azure-mgmt-compute version
#
# azure-mgmt-compute 30-37 generate msrest-era models: `as_dict()` flattens `properties` into snake_case
# attributes (vm_id, hardware_profile, ...), so a mapping of the REST JSON (properties.vmId, ...) found nothing.
# 38 brought hybrid models whose `as_dict()` is the REST JSON. The models below are msrest-era models of the
# same shape as 37's VirtualMachine (a subset of its attribute map), on the msrest `Model` that azure-mgmt-compute
# still vendors, so the real (de)serialiser runs.

try:  # the msrest Model azure-mgmt-compute vendors: _utils/serialization.py from 37, _serialization.py before
    from azure.mgmt.compute._utils import serialization as _serialization
except ImportError:  # pragma: no cover - azure-mgmt-compute 30-36
    from azure.mgmt.compute import _serialization  # type: ignore[attr-defined, no-redef]


class _Msrest(_serialization.Model):
    @classmethod
    def _infer_class_models(cls) -> dict[str, type]:
        return MSREST_MODELS


class HardwareProfile(_Msrest):
    _attribute_map = {"vm_size": {"key": "vmSize", "type": "str"}}


class OSDisk(_Msrest):
    _attribute_map = {"os_type": {"key": "osType", "type": "str"}, "name": {"key": "name", "type": "str"}}


class StorageProfile(_Msrest):
    _attribute_map = {"os_disk": {"key": "osDisk", "type": "OSDisk"}}


class OSProfile(_Msrest):
    _attribute_map = {"computer_name": {"key": "computerName", "type": "str"}}


class InstanceViewStatus(_Msrest):
    _attribute_map = {"code": {"key": "code", "type": "str"}, "display_status": {"key": "displayStatus", "type": "str"}}


class VirtualMachineInstanceView(_Msrest):
    _attribute_map = {"statuses": {"key": "statuses", "type": "[InstanceViewStatus]"}}


class VirtualMachine(_Msrest):
    _validation = {"id": {"readonly": True}, "name": {"readonly": True}, "type": {"readonly": True},
                   "vm_id": {"readonly": True}, "instance_view": {"readonly": True}}
    _attribute_map = {
        "id": {"key": "id", "type": "str"}, "name": {"key": "name", "type": "str"},
        "type": {"key": "type", "type": "str"}, "location": {"key": "location", "type": "str"},
        "tags": {"key": "tags", "type": "{str}"},
        "hardware_profile": {"key": "properties.hardwareProfile", "type": "HardwareProfile"},
        "storage_profile": {"key": "properties.storageProfile", "type": "StorageProfile"},
        "os_profile": {"key": "properties.osProfile", "type": "OSProfile"},
        "vm_id": {"key": "properties.vmId", "type": "str"},
        "instance_view": {"key": "properties.instanceView", "type": "VirtualMachineInstanceView"}}


MSREST_MODELS: dict[str, type] = {c.__name__: c for c in (
    HardwareProfile, OSDisk, StorageProfile, OSProfile, InstanceViewStatus, VirtualMachineInstanceView, VirtualMachine)}


def msrest_vm(rest: dict[str, Any]) -> Any:
    """The msrest-era VirtualMachine an azure-mgmt-compute 30-37 client builds from this REST JSON."""
    return _serialization.Deserializer(MSREST_MODELS)("VirtualMachine", rest)


def hybrid_vm(rest: dict[str, Any]) -> Any:
    """The hybrid VirtualMachine an azure-mgmt-compute >= 38 client builds from this REST JSON."""
    from azure.mgmt.compute.models import VirtualMachine as InstalledVirtualMachine

    if not issubclass(InstalledVirtualMachine, Mapping):
        pytest.skip("the installed azure-mgmt-compute has msrest-era models")
    return InstalledVirtualMachine(rest)


@pytest.mark.parametrize("build", [hybrid_vm, msrest_vm], ids=["hybrid (>=38)", "msrest-era (30-37)"])
def test_documented_rest_vm_round_trips_to_canonical_fields(build: Any) -> None:
    """A VM in the REST shape of the API reference (Virtual Machines - List All), through the model a client of
    either generation builds, serialised back by the connector and mapped: every canonical field is there."""
    rest = load("vms_fin_page1.json")["value"][1]  # Windows VM with osProfile.windowsConfiguration
    raw = rest_dict(build(rest))
    assert raw["properties"]["vmId"] == rest["properties"]["vmId"]
    fields = load_mapping(MAPPING).stream("virtual_machines").map(
        {**raw, "subscriptionId": FIN, "powerState": "deallocated"}, "virtual_machines").fields
    assert fields == {"kind": "cloud_instance", "cloud_provider": "azure", "cloud_account": FIN,
                      "region": "westeurope", "instance_id": "a7b6c5d4-e3f2-4a1b-9c8d-7e6f5a4b3c2d",
                      "instance_type": "Standard_B2ms", "power_state": "deallocated", "lifecycle_state": "deployed",
                      "hostname": "addc01", "os_name": "Windows"}


def test_msrest_era_clients_keep_vm_id_size_host_os_and_power_state(fake: FakeAzure,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The connector over a client that hands out msrest-era models (azure-mgmt-compute < 38): the HTTP path is
    the real one, each VM the client deserialised is rebuilt as the model a 37 client would have made."""
    from azure.mgmt.compute.operations import VirtualMachinesOperations

    original = VirtualMachinesOperations.list_all
    monkeypatch.setattr(VirtualMachinesOperations, "list_all",
                        lambda self, **kw: (msrest_vm(rest_dict(vm)) for vm in original(self, **kw)))
    records = {r["name"]: r for r in pull(subscriptions=[FIN]) if not isinstance(r, BadRecord)}
    fields = load_mapping(MAPPING).stream("virtual_machines").map(records["vm-erp-01"], "virtual_machines").fields
    assert {k: fields.get(k) for k in ("instance_id", "instance_type", "hostname", "os_name", "power_state")} == {
        "instance_id": "11111111-2222-3333-4444-555555555555", "instance_type": "Standard_D4s_v5",
        "hostname": "vm-erp-01", "os_name": "Linux", "power_state": "running"}
    assert records["vm-win-ad"]["powerState"] == "deallocated"
