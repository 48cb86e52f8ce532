"""Azure connector: virtual machines (and optionally every other resource) of the subscriptions it can see.

Streams:
- `virtual_machines`: per subscription, `GET /subscriptions/{id}/providers/Microsoft.Compute/virtualMachines`
  (`virtual_machines.list_all()`), joined with a second `list_all(status_only="true")` for the power state
  (two paged calls per subscription, never one per VM).
- `resources` (when `include_resources`): `GET /subscriptions/{id}/resources` without the VMs, as generic
  cloud resources.

Records are the REST API's JSON (camelCase, `properties` nested), whatever the azure-mgmt-* version: the
SDK's `rest_dict` serialises both the hybrid models (azure-mgmt-compute >= 38) and the msrest-era ones
(30-37, whose `as_dict()` is flattened snake_case and would lose vmId, size, host name, OS and power state).

Subscriptions are those the service principal can see (`GET /subscriptions`), optionally narrowed by
`subscriptions`. ARM has no changed-since filter on these lists, so every run is a full sweep; any
subscription that cannot be read fails the run, so nothing is marked missing on a partial sweep.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from pydantic import Field, field_validator

from itam_sync.sdk.cloud import AZURE_ERRORS, AzureArm, resource_group, rest_dict, sweep
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorSettings, Stream, StreamState

VM_TYPE = "Microsoft.Compute/virtualMachines"


class AzureSettings(ConnectorSettings):
    """A service principal with the Reader role on each subscription (or a management group above them)."""

    tenant_id: str = Field(description="Entra tenant id (GUID) of the service principal")
    client_id: str = Field(description="Application (client) id of the app registration")
    client_secret: str = Field(description="Client secret of the app registration (use ${env:...})")
    authority_host: str = Field(default="https://login.microsoftonline.com",
                                description="Entra login host; https://login.microsoftonline.us for US "
                                            "Government, https://login.chinacloudapi.cn for China")
    resource_manager_url: str = Field(default="https://management.azure.com",
                                      description="ARM endpoint; https://management.usgovcloudapi.net for US "
                                                  "Government, https://management.chinacloudapi.cn for China")
    credential_scope: str | None = Field(default=None,
                                         description="Token scope; default <resource_manager_url>/.default")
    subscriptions: list[str] = Field(default_factory=list,
                                     description="Read only these subscription ids (each must be visible); "
                                                 "default: every subscription the principal can see")
    power_state: bool = Field(default=True, description="Read VM power states (one extra paged call per "
                                                        "subscription)")
    include_resources: bool = Field(default=False,
                                    description="Also pull every other resource as a generic cloud resource")
    resource_types: list[str] = Field(default_factory=list,
                                      description="With include_resources: only these types (e.g. "
                                                  "Microsoft.Storage/storageAccounts); default: all but VMs")
    retry_total: int = Field(default=10, ge=0, le=30,
                             description="azure-core retries per call (429 honours Retry-After; 5xx back off)")
    timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for one API response")

    @field_validator("authority_host", "resource_manager_url")
    @classmethod
    def _https_url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be a URL starting with https://")
        return v.rstrip("/")

    @field_validator("subscriptions")
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        return [s.strip().lower() for s in v]


class VirtualMachines(Stream):
    """Virtual machines of every subscription, with their power state."""

    name = "virtual_machines"
    connector: AzureConnector

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        conn = self.connector
        yield from sweep(conn.subscription_ids(), self._subscription, errors=AZURE_ERRORS,
                         where=lambda sub: f"listing virtual machines of subscription {sub}")

    def _subscription(self, sub: str) -> Iterator[dict[str, Any] | BadRecord]:
        conn = self.connector
        with conn.arm.client(ComputeManagementClient, sub) as compute:
            power = conn.power_states(compute) if conn.settings.power_state else {}
            for vm in compute.virtual_machines.list_all():
                raw = rest_dict(vm)
                arm_id = raw.get("id")
                if not isinstance(arm_id, str) or not arm_id:
                    yield BadRecord(f"subscription {sub}: virtual machine without an id", str(raw)[:2000])
                    continue
                yield {**raw, "subscriptionId": sub, "resourceGroup": resource_group(arm_id),
                       "powerState": power.get(arm_id.lower())}


class Resources(Stream):
    """Every other ARM resource of every subscription (generic cloud resources)."""

    name = "resources"
    connector: AzureConnector

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        yield from sweep(self.connector.subscription_ids(), self._subscription, errors=AZURE_ERRORS,
                         where=lambda sub: f"listing resources of subscription {sub}")

    def _subscription(self, sub: str) -> Iterator[dict[str, Any] | BadRecord]:
        wanted = {t.lower() for t in self.connector.settings.resource_types}
        with self.connector.arm.client(ResourceManagementClient, sub) as client:
            for res in client.resources.list(filter=f"resourceType ne '{VM_TYPE}'",
                                              expand="createdTime,changedTime,provisioningState"):
                raw = rest_dict(res)
                arm_id, rtype = raw.get("id"), str(raw.get("type") or "")
                if not isinstance(arm_id, str) or not arm_id:
                    yield BadRecord(f"subscription {sub}: resource without an id", str(raw)[:2000])
                    continue
                if rtype.lower() == VM_TYPE.lower() or (wanted and rtype.lower() not in wanted):
                    continue
                yield {**raw, "subscriptionId": sub, "resourceGroup": resource_group(arm_id)}


class AzureConnector(Connector):
    """Azure VMs and resources through Azure Resource Manager.

    azure-identity and the azure-mgmt-* clients are the natural clients: the credential handles the Entra
    token protocol and national clouds, and azure-core's pipeline retries 429/5xx (honouring Retry-After),
    answers CAE claims challenges with a fresh token and follows `nextLink` paging (`itam_sync.sdk.cloud.
    AzureArm` sets them up and lists the tenant's subscriptions through the same pipeline).
    """

    type_name = "azure"
    description = "Azure virtual machines (and optionally all resources) across subscriptions"
    settings_model = AzureSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "tenant_id": "00000000-0000-0000-0000-000000000000",
        "client_id": "${env:AZURE_CLIENT_ID}",
        "client_secret": "${env:AZURE_CLIENT_SECRET}",
    }
    settings: AzureSettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        s = self.settings
        self.arm = AzureArm(tenant_id=s.tenant_id, client_id=s.client_id, client_secret=s.client_secret,
                            authority_host=s.authority_host, resource_manager_url=s.resource_manager_url,
                            credential_scope=s.credential_scope, retry_total=s.retry_total, timeout=s.timeout)

    def streams(self) -> list[Stream]:
        out: list[Stream] = [VirtualMachines(self)]
        if self.settings.include_resources:
            out.append(Resources(self))
        return out

    def subscription_ids(self) -> list[str]:
        """Visible subscriptions (read once per run), narrowed to the configured ones, which must all be seen."""
        return self.arm.subscriptions(self.settings.subscriptions)

    @staticmethod
    def power_states(compute: ComputeManagementClient) -> dict[str, str]:
        """ARM id (lower case) -> power state ("running", "deallocated", ...) from the statusOnly list."""
        out: dict[str, str] = {}
        for vm in compute.virtual_machines.list_all(status_only="true"):
            raw = rest_dict(vm)
            statuses = (raw.get("properties") or {}).get("instanceView", {}).get("statuses") or []
            codes = [s.get("code", "") for s in statuses if isinstance(s, dict)]
            power = next((c.split("/", 1)[1] for c in codes if c.startswith("PowerState/")), None)
            if raw.get("id") and power:
                out[str(raw["id"]).lower()] = power
        return out

    def close(self) -> None:
        self.arm.close()
