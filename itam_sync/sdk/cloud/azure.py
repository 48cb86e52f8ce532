"""Azure Resource Manager client set-up for the cloud connectors: credential, clients, subscriptions.

Needs the Azure SDK (`pip install itam-sync[azure]`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from azure.core import PipelineClient
from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.core.paging import ItemPaged
from azure.core.pipeline.policies import ContentDecodePolicy, RedirectPolicy, RetryPolicy, UserAgentPolicy
from azure.core.rest import HttpRequest, HttpResponse
from azure.identity import ClientSecretCredential
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy

from itam_sync.sdk.cloud import USER_AGENT, VendorErrors
from itam_sync.sdk.connector import ConnectorError

T = TypeVar("T")

def _azure_is_config(exc: Exception) -> bool:
    return isinstance(exc, ClientAuthenticationError) or getattr(exc, "status_code", None) in (400, 401, 403, 404)


def _azure_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


AZURE_ERRORS = VendorErrors("Azure", (AzureError,), _azure_is_config, _azure_text)
SUBSCRIPTIONS_API = "2022-12-01"


def rest_dict(model: Any) -> dict[str, Any]:
    """An azure-mgmt-* model as the REST API's JSON: camelCase keys, `properties` nested, read-only fields kept.

    Hybrid models (azure-mgmt-compute >= 38, azure-mgmt-resource >= 26) are mappings of that JSON, and their
    `as_dict()` returns it. The msrest-era models before them (compute 30-37) return flattened snake_case
    attributes from `as_dict()` (`vm_id`, `hardware_profile` at the top, no `properties`); their REST JSON
    is `serialize(keep_readonly=True)` (without keep_readonly, read-only fields such as vmId are dropped).
    """
    if isinstance(model, Mapping):
        as_dict = getattr(model, "as_dict", None)
        return dict(as_dict()) if callable(as_dict) else dict(model)
    serialize = getattr(model, "serialize", None)
    if callable(serialize):
        return dict(serialize(keep_readonly=True))
    raise TypeError(f"{type(model).__name__} is neither a hybrid nor an msrest azure-mgmt model")


def resource_group(arm_id: str) -> str | None:
    """The resource group named in an ARM id (its case as written), or None."""
    parts = arm_id.split("/")
    lowered = [p.lower() for p in parts]
    return parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered[:-1] else None


class AzureArm:
    """One service principal's view of Azure Resource Manager: its credential, SDK clients of a subscription
    (azure-core pipeline: 429 Retry-After, 5xx backoff, CAE claims challenges, `nextLink` paging) and the
    subscriptions it can see, read once through the same pipeline (`GET /subscriptions`)."""

    def __init__(self, *, tenant_id: str, client_id: str, client_secret: str, authority_host: str,
                 resource_manager_url: str, credential_scope: str | None, retry_total: int, timeout: float) -> None:
        self.client_id = client_id
        self.arm_url = resource_manager_url
        self.credential = ClientSecretCredential(tenant_id, client_id, client_secret, authority=authority_host)
        self.scope = credential_scope or f"{resource_manager_url}/.default"
        self.retry_total, self.timeout = retry_total, timeout
        self._client_kwargs: dict[str, Any] = {
            "base_url": resource_manager_url, "credential_scopes": [self.scope], "retry_total": retry_total,
            "connection_timeout": min(timeout, 10), "read_timeout": timeout, "user_agent": USER_AGENT}
        self._subscriptions: list[str] | None = None

    def client(self, cls: Callable[..., T], subscription: str) -> T:
        """An azure-mgmt-* client (ComputeManagementClient, ...) of `subscription`."""
        return cls(self.credential, subscription, **self._client_kwargs)

    def subscriptions(self, wanted: list[str]) -> list[str]:
        """The visible subscriptions (lower-case ids, read once), narrowed to `wanted`, which must all be seen."""
        if self._subscriptions is None:
            with AZURE_ERRORS.guard("listing subscriptions"), self._tenant_client() as client:
                visible = [str(sub["subscriptionId"]).lower() for sub in self._list_subscriptions(client)]
            missing = [s for s in wanted if s not in visible]
            if missing:
                raise ConnectorError(f"subscription(s) {', '.join(missing)} not visible to client {self.client_id}:"
                                     " check the ids and the Reader role assignment", kind="config")
            self._subscriptions = wanted or visible
        return self._subscriptions

    def _tenant_client(self) -> ARMPipelineClient[Any, Any]:
        # The subscriptions' SDK client moved to azure-mgmt-resource-subscriptions in azure-mgmt-resource 25:
        # a tenant-level pipeline with the SDK clients' policies avoids that extra package.
        return ARMPipelineClient(base_url=self.arm_url, policies=[
            UserAgentPolicy(user_agent=USER_AGENT), ContentDecodePolicy(), RedirectPolicy(),
            RetryPolicy(retry_total=self.retry_total), ARMChallengeAuthenticationPolicy(self.credential, self.scope),
            ARMHttpLoggingPolicy()], connection_timeout=min(self.timeout, 10), read_timeout=self.timeout)

    def _list_subscriptions(self, client: PipelineClient[Any, Any]) -> ItemPaged[dict[str, Any]]:
        def get_next(next_link: str | None) -> HttpResponse:
            request = (HttpRequest("GET", next_link) if next_link else
                       HttpRequest("GET", f"{self.arm_url}/subscriptions", params={"api-version": SUBSCRIPTIONS_API}))
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
