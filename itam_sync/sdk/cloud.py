"""Shared plumbing of the cloud connectors: target fan-out and the AWS, Azure and Google client set-up.

Fan-out. A cloud connector reads many targets one after the other: AWS accounts x regions, Azure
subscriptions, GCP projects, ACM regions. `sweep` reads them in order and `VendorErrors.guard` turns a
vendor SDK error into a `ConnectorError` that names the target and says who must act ("config": the
settings or the permissions; "system": try again later). The first target that cannot be read stops the
run: the engine then marks nothing missing, where a sweep that skipped the target would mark every record
of it missing.

Clients. The vendor SDKs are the natural clients (signing, endpoints, retries, token refresh); this module
only sets them up the same way for every connector that needs them:
- `AwsSessions`: base credentials, assumed-role sessions that refresh themselves, the Organization's
  accounts, an account's enabled regions, clients with the configured retry mode and endpoint.
- `AzureArm`: a service-principal credential, ARM clients of one subscription, the tenant's subscriptions.
  `rest_dict` gives a model's REST JSON in every supported azure-mgmt-* version.
- `GoogleApis`: services built from the discovery documents bundled with google-api-python-client over one
  authorised httplib2 transport; `google_pages` pages any list method, `google_execute` names the fix.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.session
import google.auth
import google.auth.exceptions
import httplib2
from azure.core import PipelineClient
from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.core.paging import ItemPaged
from azure.core.pipeline.policies import ContentDecodePolicy, RedirectPolicy, RetryPolicy, UserAgentPolicy
from azure.core.rest import HttpRequest, HttpResponse
from azure.identity import ClientSecretCredential
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient import errors as gerrors
from googleapiclient.discovery import build

from itam_sync import __version__
from itam_sync.sdk.connector import ConnectorError
from itam_sync.sdk.errors import HttpError, redact_url

T = TypeVar("T")
R = TypeVar("R")
USER_AGENT = f"itam-sync/{__version__}"


# ------------------------------------------------------------------------------------------------ fan-out


@dataclass(frozen=True)
class VendorErrors:
    """How one vendor SDK fails: its exception types, which of them the user must fix, and their text."""

    vendor: str
    types: tuple[type[Exception], ...]
    is_config: Callable[[Exception], bool]
    text: Callable[[Exception], str] = str

    def fail(self, exc: Exception, where: str) -> ConnectorError:
        """The run-stopping error for `exc`, raised while reading `where` (say "account 1111 region eu-north-1")."""
        return ConnectorError(f"{self.vendor} {where}: {self.text(exc)}; the run stops so nothing is marked missing",
                              kind="config" if self.is_config(exc) else "system")

    @contextlib.contextmanager
    def guard(self, where: str) -> Iterator[None]:
        """Re-raise this vendor's errors inside the block as `fail(exc, where)`; anything else passes."""
        try:
            yield
        except self.types as exc:
            raise self.fail(exc, where) from exc


def sweep(targets: Iterable[T], read: Callable[[T], Iterable[R]], *, errors: VendorErrors,
          where: Callable[[T], str]) -> Iterator[R]:
    """Everything `read` yields for each target, in order. The first target that fails stops the sweep (and
    the run) with an error naming it: a sweep that went on would leave that target's records unseen, and a
    complete-looking run would mark them missing."""
    for target in targets:
        with errors.guard(where(target)):
            yield from read(target)


def jsonable(obj: Any) -> Any:
    """SDK results carry datetimes; records are JSON (ISO-8601 strings) like every other source's."""
    return json.loads(json.dumps(obj, default=lambda v: v.isoformat() if isinstance(v, date | datetime) else str(v)))


# ---------------------------------------------------------------------------------------------------- AWS

# Error codes that mean "fix the settings or the IAM policy", not "try again later".
AWS_CONFIG_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure",
                              "InvalidClientTokenId", "SignatureDoesNotMatch", "AWSOrganizationsNotInUseException",
                              "OptInRequired", "UnrecognizedClientException"})


def _aws_is_config(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code", "") in AWS_CONFIG_CODES


AWS_ERRORS = VendorErrors("AWS", (ClientError, BotoCoreError), _aws_is_config)


class _FixedProvider(CredentialProvider):
    """Hands a botocore session one (refreshable) credentials object."""

    METHOD = "itam-assume-role"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


@dataclass(frozen=True)
class AwsOptions:
    """How to reach AWS: base credentials (boto3's default chain unless keys or a profile are given), the
    home region for STS/Organizations/DescribeRegions, botocore's retry settings and the assumed-role session."""

    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    home_region: str = "us-east-1"
    endpoint_url: str | None = None
    retry_mode: str = "standard"
    max_attempts: int = 10
    timeout: float | None = None  # None: botocore's own connect/read timeouts
    session_name: str = "itam-sync"
    session_duration: int = 3600
    external_id: str | None = None


class AwsSessions:
    """boto3 sessions and clients for one connector: the base session, and one assumed-role session per account.

    Assumed-role credentials refresh themselves (botocore's `DeferredRefreshableCredentials`) before they
    expire, so a sweep that outlives a one-hour role session goes on with fresh keys.
    """

    def __init__(self, options: AwsOptions) -> None:
        # botocore's DEBUG log prints request bodies (an AssumeRole ExternalId, say): never let `-vv` or a
        # DEBUG root logger put a secret in the logs.
        for noisy in ("botocore", "boto3", "s3transfer"):
            logger = logging.getLogger(noisy)
            logger.setLevel(max(logging.INFO, logger.level))
        self.options = o = options
        timeouts = {} if o.timeout is None else {"connect_timeout": min(o.timeout, 10), "read_timeout": o.timeout}
        self.config = Config(retries={"mode": o.retry_mode, "total_max_attempts": o.max_attempts},
                             user_agent_extra=USER_AGENT, **timeouts)

    @cached_property
    def _core(self) -> botocore.session.Session:
        return botocore.session.Session(profile=self.options.profile)

    @cached_property
    def base(self) -> boto3.Session:
        """The session of the base credentials (environment, profile, instance role, or the given keys)."""
        o = self.options
        return boto3.Session(aws_access_key_id=o.access_key_id, aws_secret_access_key=o.secret_access_key,
                             region_name=o.home_region, botocore_session=self._core)

    def client(self, session: boto3.Session, service: str, region: str | None = None) -> Any:
        """A client of `service` in `region` (default: the home region) with the configured retries and endpoint."""
        return session.client(service, region_name=region or self.options.home_region,
                              endpoint_url=self.options.endpoint_url, config=self.config)

    def caller_account(self) -> str:
        """The account of the base credentials (sts:GetCallerIdentity)."""
        with AWS_ERRORS.guard("sts:GetCallerIdentity (base credentials)"):
            return str(self.client(self.base, "sts").get_caller_identity()["Account"])

    def organization_accounts(self) -> list[str]:
        """The ACTIVE accounts of the Organization (run from the management or a delegated admin account)."""
        ids: list[str] = []
        with AWS_ERRORS.guard("organizations:ListAccounts"):
            for page in self.client(self.base, "organizations").get_paginator("list_accounts").paginate():
                for acct in page.get("Accounts", []):
                    if (acct.get("State") or acct.get("Status")) == "ACTIVE" and acct["Id"] not in ids:
                        ids.append(acct["Id"])
        return ids

    def assume(self, role_arn: str) -> boto3.Session:
        """A session of `role_arn` whose credentials botocore refreshes before they expire."""
        o = self.options
        source = self.base.get_credentials()
        if source is None:
            raise ConnectorError("no AWS base credentials found (environment, profile or instance role)",
                                 kind="config")
        extra: dict[str, Any] = {"RoleSessionName": o.session_name, "DurationSeconds": o.session_duration}
        if o.external_id:
            extra["ExternalId"] = o.external_id

        def sts_client(service: str, **kwargs: Any) -> Any:
            return self.base.client(service, region_name=o.home_region, endpoint_url=o.endpoint_url,
                                    config=self.config, **kwargs)

        fetcher = AssumeRoleCredentialFetcher(sts_client, source, role_arn, extra_args=extra)
        credentials = DeferredRefreshableCredentials(fetcher.fetch_credentials, _FixedProvider.METHOD)
        with AWS_ERRORS.guard(f"sts:AssumeRole {role_arn}"):
            credentials.get_frozen_credentials()  # assume now, so a refused role fails here, naming its account
        core = botocore.session.Session()
        core.register_component("credential_provider", CredentialResolver([_FixedProvider(credentials)]))
        # Share the base session's model loader: it caches the (large) service models across accounts.
        core.register_component("data_loader", self._core.get_component("data_loader"))
        return boto3.Session(botocore_session=core, region_name=o.home_region)

    def accounts(self, accounts: list[str], use_organizations: bool,
                 role_arn: Callable[[str], str]) -> Iterator[tuple[str, boto3.Session]]:
        """(account id, session) of every account to read, one role assumed at a time: the configured accounts,
        then the Organization's ACTIVE ones (de-duplicated, in that order); the base credentials' own account
        when neither is set."""
        if not (accounts or use_organizations):
            yield self.caller_account(), self.base
            return
        ids = list(dict.fromkeys(accounts))
        if use_organizations:
            ids += [a for a in self.organization_accounts() if a not in ids]
        for account in ids:
            yield account, self.assume(role_arn(account))

    def regions(self, account: str, session: boto3.Session, configured: list[str]) -> list[str]:
        """The configured regions, or the regions enabled in `account` (DescribeRegions leaves out the opt-in
        regions the account has not enabled)."""
        if configured:
            return list(configured)
        with AWS_ERRORS.guard(f"ec2:DescribeRegions in account {account}"):
            found = self.client(session, "ec2").describe_regions()["Regions"]
        return sorted(r["RegionName"] for r in found)

    def account_regions(self, accounts: list[str], use_organizations: bool, role_arn: Callable[[str], str],
                        regions: list[str]) -> Iterator[tuple[str, boto3.Session, str]]:
        """(account, session, region) for every account x region, account by account."""
        for account, session in self.accounts(accounts, use_organizations, role_arn):
            for region in self.regions(account, session, regions):
                yield account, session, region


# -------------------------------------------------------------------------------------------------- Azure


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


# ------------------------------------------------------------------------------------------------- Google


def _google_status(exc: Exception) -> int:
    return int(getattr(getattr(exc, "resp", None), "status", 0) or 0)


GCP_ERRORS = VendorErrors(
    "GCP", (gerrors.HttpError, google.auth.exceptions.GoogleAuthError, httplib2.HttpLib2Error, OSError),
    lambda exc: isinstance(exc, google.auth.exceptions.GoogleAuthError) or _google_status(exc) in (400, 401, 403, 404))


def service_account_credentials(*, key_json: str | None, key_file: str | None, scopes: list[str],
                                subject: str | None = None, token_uri: str | None = None,
                                application_default: bool = False) -> Any:
    """Service-account credentials from the key's JSON text or file (with domain-wide delegation to `subject`
    when given), or Application Default Credentials when neither is set and `application_default`.
    Errors are config errors that never echo the key."""
    if key_json is None and key_file is None:
        if not application_default:
            raise ConnectorError("no service account key: set the key JSON or the key file", kind="config")
        try:
            return google.auth.default(scopes=scopes)[0]
        except google.auth.exceptions.GoogleAuthError as exc:
            raise ConnectorError(f"no Application Default Credentials ({first_line(exc)}); set a service account "
                                 "key", kind="config") from None
    try:
        info = json.loads(key_json if key_json is not None else Path(str(key_file)).read_text())
        if token_uri:
            info["token_uri"] = token_uri
        return service_account.Credentials.from_service_account_info(info, scopes=scopes, subject=subject)
    except OSError as exc:
        raise ConnectorError(f"cannot read credentials_file: {type(exc).__name__}: {exc.strerror}",
                             kind="config") from None
    except (ValueError, TypeError, AttributeError, google.auth.exceptions.GoogleAuthError) as exc:
        # Never echo the key: name only what kind of problem it is.
        raise ConnectorError(f"the service account key is not usable ({type(exc).__name__}); it must be the JSON "
                             "key file of a service account", kind="config") from None


class GoogleApis:
    """google-api-python-client services over one authorised transport.

    Each service is built from the discovery document bundled with the package (`static_discovery`: no
    network call to build it). google-auth signs the service-account JWT grant, caches the token and
    refreshes it near expiry and once more on a 401 (google_auth_httplib2's AuthorizedHttp).
    """

    def __init__(self, credentials: Callable[[], Any], transport: Callable[[], Any]) -> None:
        self._credentials, self._transport = credentials, transport
        self._http: AuthorizedHttp | None = None
        self._services: dict[tuple[str, str], Any] = {}

    def service(self, name: str, version: str, endpoint: str | None = None) -> Any:
        """The `name` `version` service (e.g. "admin", "directory_v1"), built once; `endpoint` overrides its URL."""
        if (name, version) not in self._services:
            if self._http is None:
                self._http = AuthorizedHttp(self._credentials(), http=self._transport())
            options = {"api_endpoint": endpoint} if endpoint else None
            self._services[(name, version)] = build(name, version, http=self._http, static_discovery=True,
                                                    cache_discovery=False, client_options=options)
        return self._services[(name, version)]

    def close(self) -> None:
        close = getattr(self._http.http, "close", None) if self._http is not None else None
        if callable(close):  # httplib2.Http has close(); test doubles may not
            close()
        self._http, self._services = None, {}


def google_pages(collection: Any, method: str, execute: Callable[[Any], Any],
                 **params: Any) -> Iterator[tuple[Any, Any]]:
    """(request, body) of every page of `collection.<method>(**params)`, following nextPageToken with the
    client's `<method>_next`; `execute` runs one request (retries and error translation are its job)."""
    request = getattr(collection, method)(**params)
    while request is not None:
        body = execute(request)
        yield request, body
        request = getattr(collection, f"{method}_next")(request, body)


def google_execute(request: Any, *, num_retries: int, hints: Mapping[int, str], refused: str) -> Any:
    """Run one request with the client's retries (429, rate-limit 403s, 5xx, dropped connections; exponential
    backoff); failures become errors that say what to fix: `hints` per HTTP status (those are config errors),
    `refused` when Google refuses the service account's token."""
    try:
        return request.execute(num_retries=num_retries)
    except gerrors.HttpError as exc:
        status = int(exc.resp.status)
        what = hints.get(status, f"gave up after {num_retries} retries")
        raise HttpError(f"HTTP {status} from {redact_url(request.uri)}: {what}. Server said: {exc.reason}",
                        status=status, url=request.uri, kind="config" if status in hints else "system") from None
    except google.auth.exceptions.RefreshError as exc:
        raise ConnectorError(f"Google refused the service account token ({first_line(exc)}); {refused}",
                             kind="config") from None
    except (google.auth.exceptions.TransportError, httplib2.HttpLib2Error, OSError) as exc:
        raise ConnectorError(f"cannot reach Google ({type(exc).__name__}) at {redact_url(request.uri)}",
                             kind="system") from None
    except ValueError as exc:  # the client could not decode the body
        raise HttpError(f"malformed page from {redact_url(request.uri)}: {type(exc).__name__}",
                        url=request.uri) from None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its type name."""
    text = str(exc.args[0] if exc.args else exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__
