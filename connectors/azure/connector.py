"""Azure connector: virtual machines (and optionally every other resource) of the subscriptions it can see.

Streams:
- `virtual_machines`: per subscription, `GET /subscriptions/{id}/providers/Microsoft.Compute/virtualMachines`
  (`virtual_machines.list_all()`), joined with a second `list_all(status_only="true")` for the power state
  (two paged calls per subscription, never one per VM).
- `resources` (when `include_resources`): `GET /subscriptions/{id}/resources` without the VMs, as generic
  cloud resources.

Subscriptions are those the service principal can see (`GET /subscriptions`), optionally narrowed by
`subscriptions`. ARM has no changed-since filter on these lists, so every run is a full sweep; any
subscription that cannot be read fails the run, so nothing is marked missing on a partial sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar

from azure.core import PipelineClient
from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.core.paging import ItemPaged
from azure.core.pipeline.policies import ContentDecodePolicy, RedirectPolicy, RetryPolicy, UserAgentPolicy
from azure.core.rest import HttpRequest, HttpResponse
from azure.identity import ClientSecretCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy
from azure.mgmt.resource.resources import ResourceManagementClient
from pydantic import Field, field_validator

from itam_sync import __version__
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorError, ConnectorSettings, Stream, StreamState

log = logging.getLogger(__name__)

SUBSCRIPTIONS_API = "2022-12-01"
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


def _fail(exc: Exception, where: str) -> ConnectorError:
    status = getattr(exc, "status_code", None)
    config = isinstance(exc, ClientAuthenticationError) or status in (400, 401, 403, 404)
    return ConnectorError(f"Azure {where}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                          "; the run stops so nothing is marked missing", kind="config" if config else "system")


def resource_group(arm_id: str) -> str | None:
    parts = arm_id.split("/")
    lowered = [p.lower() for p in parts]
    return parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered[:-1] else None


class VirtualMachines(Stream):
    """Virtual machines of every subscription, with their power state."""

    name = "virtual_machines"
    connector: AzureConnector

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        conn = self.connector
        for sub in conn.subscription_ids():
            with conn.compute(sub) as compute:
                try:
                    power = conn.power_states(compute) if conn.settings.power_state else {}
                    for vm in compute.virtual_machines.list_all():
                        raw = vm.as_dict()
                        arm_id = raw.get("id")
                        if not isinstance(arm_id, str) or not arm_id:
                            yield BadRecord(f"subscription {sub}: virtual machine without an id", str(raw)[:2000])
                            continue
                        yield {**raw, "subscriptionId": sub, "resourceGroup": resource_group(arm_id),
                               "powerState": power.get(arm_id.lower())}
                except AzureError as exc:
                    raise _fail(exc, f"listing virtual machines of subscription {sub}") from exc


class Resources(Stream):
    """Every other ARM resource of every subscription (generic cloud resources)."""

    name = "resources"
    connector: AzureConnector

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        conn = self.connector
        wanted = {t.lower() for t in conn.settings.resource_types}
        for sub in conn.subscription_ids():
            with conn.resources(sub) as client:
                try:
                    for res in client.resources.list(filter=f"resourceType ne '{VM_TYPE}'",
                                                      expand="createdTime,changedTime,provisioningState"):
                        raw = res.as_dict()
                        arm_id, rtype = raw.get("id"), str(raw.get("type") or "")
                        if not isinstance(arm_id, str) or not arm_id:
                            yield BadRecord(f"subscription {sub}: resource without an id", str(raw)[:2000])
                            continue
                        if rtype.lower() == VM_TYPE.lower() or (wanted and rtype.lower() not in wanted):
                            continue
                        yield {**raw, "subscriptionId": sub, "resourceGroup": resource_group(arm_id)}
                except AzureError as exc:
                    raise _fail(exc, f"listing resources of subscription {sub}") from exc


class AzureConnector(Connector):
    """Azure VMs and resources through Azure Resource Manager.

    azure-identity and the azure-mgmt-* clients are the natural clients: the credential handles the Entra
    token protocol and national clouds, and azure-core's pipeline retries 429/5xx (honouring Retry-After),
    answers CAE claims challenges with a fresh token and follows `nextLink` paging. The tenant-level
    subscription list is read through the same pipeline (`ARMPipelineClient`): its SDK client moved to
    the separate azure-mgmt-resource-subscriptions package in azure-mgmt-resource 25.
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
        self.credential = ClientSecretCredential(s.tenant_id, s.client_id, s.client_secret,
                                                 authority=s.authority_host)
        self.scope = s.credential_scope or f"{s.resource_manager_url}/.default"
        self._client_kwargs: dict[str, Any] = {
            "base_url": s.resource_manager_url, "credential_scopes": [self.scope], "retry_total": s.retry_total,
            "connection_timeout": min(s.timeout, 10), "read_timeout": s.timeout,
            "user_agent": f"itam-sync/{__version__}"}
        self._subscriptions: list[str] | None = None

    def streams(self) -> list[Stream]:
        out: list[Stream] = [VirtualMachines(self)]
        if self.settings.include_resources:
            out.append(Resources(self))
        return out

    def compute(self, subscription: str) -> ComputeManagementClient:
        return ComputeManagementClient(self.credential, subscription, **self._client_kwargs)

    def resources(self, subscription: str) -> ResourceManagementClient:
        return ResourceManagementClient(self.credential, subscription, **self._client_kwargs)

    @staticmethod
    def power_states(compute: ComputeManagementClient) -> dict[str, str]:
        """ARM id (lower case) -> power state ("running", "deallocated", ...) from the statusOnly list."""
        out: dict[str, str] = {}
        for vm in compute.virtual_machines.list_all(status_only="true"):
            raw = vm.as_dict()
            statuses = (raw.get("properties") or {}).get("instanceView", {}).get("statuses") or []
            codes = [s.get("code", "") for s in statuses if isinstance(s, dict)]
            power = next((c.split("/", 1)[1] for c in codes if c.startswith("PowerState/")), None)
            if raw.get("id") and power:
                out[str(raw["id"]).lower()] = power
        return out

    def subscription_ids(self) -> list[str]:
        """Visible subscriptions (read once per run), narrowed to the configured ones, which must all be seen."""
        if self._subscriptions is None:
            try:
                with self._tenant_client() as client:
                    visible = [str(sub["subscriptionId"]).lower() for sub in self._list_subscriptions(client)]
            except AzureError as exc:
                raise _fail(exc, "listing subscriptions") from exc
            wanted = self.settings.subscriptions
            missing = [s for s in wanted if s not in visible]
            if missing:
                raise ConnectorError(f"subscription(s) {', '.join(missing)} not visible to client "
                                     f"{self.settings.client_id}: check the ids and the Reader role assignment",
                                     kind="config")
            self._subscriptions = wanted or visible
        return self._subscriptions

    def _tenant_client(self) -> ARMPipelineClient[Any, Any]:
        """A tenant-level ARM pipeline with the same policies as the SDK clients (retry, auth, logging)."""
        s = self.settings
        return ARMPipelineClient(base_url=s.resource_manager_url, policies=[
            UserAgentPolicy(user_agent=f"itam-sync/{__version__}"), ContentDecodePolicy(), RedirectPolicy(),
            RetryPolicy(retry_total=s.retry_total), ARMChallengeAuthenticationPolicy(self.credential, self.scope),
            ARMHttpLoggingPolicy()], connection_timeout=min(s.timeout, 10), read_timeout=s.timeout)

    def _list_subscriptions(self, client: PipelineClient[Any, Any]) -> ItemPaged[dict[str, Any]]:
        """`GET /subscriptions`, paged by azure-core's ItemPaged over `nextLink`."""
        s = self.settings

        def get_next(next_link: str | None) -> HttpResponse:
            request = (HttpRequest("GET", next_link) if next_link else
                       HttpRequest("GET", f"{s.resource_manager_url}/subscriptions",
                                   params={"api-version": SUBSCRIPTIONS_API}))
            response = client.send_request(request)
            if response.status_code != 200:
                raise HttpResponseError(response=response)
            return response

        def extract(response: HttpResponse) -> tuple[str | None, Iterator[dict[str, Any]]]:
            body = response.json()
            return body.get("nextLink") or None, iter(body.get("value") or [])

        return ItemPaged(get_next, extract)

    def close(self) -> None:
        self.credential.close()
