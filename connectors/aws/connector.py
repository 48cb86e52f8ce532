"""AWS connector: EC2 instances in every enabled region of one or many accounts.

One stream, `instances`: for each target account (the credentials' own account, a configured list, and/or
every ACTIVE account of the AWS Organization) a role is assumed, the account's enabled regions are listed
(`ec2.describe_regions`, unless `regions` is set) and `describe_instances` is paged in each region. A run
that cannot read every account and region fails as a whole: a partial sweep would otherwise mark the
instances of the unread accounts missing. EC2 has no modified-since filter, so every run is a full sweep.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any, ClassVar, Literal

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, model_validator

from itam_sync import __version__
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorError, ConnectorSettings, Stream, StreamState

log = logging.getLogger(__name__)

LIVE_STATES = ["pending", "running", "shutting-down", "stopping", "stopped"]
# Error codes that mean "fix the settings or the IAM policy", not "try again later".
CONFIG_ERRORS = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure",
                           "InvalidClientTokenId", "SignatureDoesNotMatch", "AWSOrganizationsNotInUseException",
                           "OptInRequired", "UnrecognizedClientException"})


class AwsSettings(ConnectorSettings):
    """Base credentials come from boto3's default chain (env, profile, instance role) unless given here."""

    accounts: list[str] = Field(default_factory=list,
                                description="Account ids to read by assuming the role in each")
    use_organizations: bool = Field(default=False,
                                    description="Also read every ACTIVE account listed by "
                                                "organizations:ListAccounts (run from the management or a "
                                                "delegated administrator account)")
    role_name: str | None = Field(default=None, description="Role to assume in each account, e.g. ItamReadOnly")
    role_arn_template: str | None = Field(default=None,
                                          description="Role ARN with an {account} placeholder, for another "
                                                      "partition or a path, e.g. "
                                                      "arn:aws-us-gov:iam::{account}:role/itam/ItamReadOnly")
    external_id: str | None = Field(default=None, description="sts:ExternalId the role's trust policy requires")
    session_name: str = Field(default="itam-sync", min_length=2, description="RoleSessionName (CloudTrail)")
    session_duration: int = Field(default=3600, ge=900, le=43200,
                                  description="Assumed-role session length in seconds; sessions are "
                                              "refreshed automatically before they expire")
    regions: list[str] = Field(default_factory=list,
                               description="Regions to read; default: every region enabled in each account")
    home_region: str = Field(default="us-east-1",
                             description="Region for STS, Organizations and DescribeRegions calls "
                                         "(us-gov-west-1 for GovCloud, cn-north-1 for China)")
    endpoint_url: str | None = Field(default=None,
                                     description="Send every AWS call to this URL (tests, LocalStack, VPC "
                                                 "endpoints); default: the regional public endpoints")
    profile: str | None = Field(default=None, description="Named profile for the base credentials")
    access_key_id: str | None = Field(default=None, description="Base access key id (use ${env:...})")
    secret_access_key: str | None = Field(default=None, description="Base secret access key (use ${env:...})")
    retry_mode: Literal["standard", "adaptive", "legacy"] = Field(
        default="standard", description="botocore retry mode; adaptive also rate-limits the client side")
    max_attempts: int = Field(default=10, ge=1, le=30,
                              description="Total attempts per call (botocore total_max_attempts), "
                                          "throttling (RequestLimitExceeded) included")
    page_size: int = Field(default=1000, ge=5, le=1000, description="DescribeInstances MaxResults per page")
    include_terminated: bool = Field(default=False,
                                     description="Also read terminated instances (listed for about an hour)")
    timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for one API response")

    @model_validator(mode="after")
    def _role_when_cross_account(self) -> AwsSettings:
        if (self.accounts or self.use_organizations) and not (self.role_name or self.role_arn_template):
            raise ValueError("accounts / use_organizations need role_name or role_arn_template")
        if self.role_arn_template and "{account}" not in self.role_arn_template:
            raise ValueError("role_arn_template must contain {account}")
        return self


class _FixedProvider(CredentialProvider):
    """Hands a botocore session one (refreshable) credentials object."""

    METHOD = "itam-assume-role"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


def _jsonable(obj: Any) -> Any:
    """boto3 returns datetimes; records are JSON (ISO-8601 strings) like every other source's."""
    return json.loads(json.dumps(obj, default=lambda v: v.isoformat() if isinstance(v, date | datetime) else str(v)))


def _fail(exc: Exception, where: str) -> ConnectorError:
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    kind = "config" if code in CONFIG_ERRORS else "system"
    return ConnectorError(f"AWS {where}: {exc}; the run stops so nothing is marked missing", kind=kind)


class Instances(Stream):
    """EC2 instances of every target account and region."""

    name = "instances"
    connector: AwsConnector

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        conn = self.connector
        for account, session in conn.targets():
            for region in conn.regions(account, session):
                yield from self._region(account, session, region)

    def _region(self, account: str, session: boto3.Session, region: str) -> Iterator[dict[str, Any] | BadRecord]:
        s = self.connector.settings
        states = LIVE_STATES + ["terminated"] if s.include_terminated else LIVE_STATES
        ec2 = self.connector.client(session, "ec2", region)
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": states}],
            PaginationConfig={"PageSize": s.page_size})
        try:
            for page in pages:
                for reservation in page.get("Reservations", []):
                    owner = reservation.get("OwnerId") or account
                    for instance in reservation.get("Instances", []):
                        if not isinstance(instance, dict) or not instance.get("InstanceId"):
                            yield BadRecord(f"{account}/{region}: instance without InstanceId",
                                            json.dumps(_jsonable(instance))[:2000])
                            continue
                        yield {**_jsonable(instance), "OwnerId": owner, "Account": account, "Region": region}
        except (ClientError, BotoCoreError) as exc:
            raise _fail(exc, f"ec2:DescribeInstances in account {account} region {region}") from exc


class AwsConnector(Connector):
    """EC2 instances across accounts and regions.

    boto3 is the natural client: it signs requests (SigV4), resolves regional and partition endpoints,
    pages with its paginators and retries throttling (RequestLimitExceeded) with botocore's standard or
    adaptive retry modes; assumed-role sessions refresh themselves through botocore's credential fetcher.
    """

    type_name = "aws"
    description = "AWS EC2 instances across accounts (assumed role) and regions"
    settings_model = AwsSettings
    example_settings: ClassVar[dict[str, Any]] = {
        "role_name": "ItamReadOnly",
        "accounts": ["111111111111", "222222222222"],
        "use_organizations": False,
        "external_id": "${env:AWS_ITAM_EXTERNAL_ID}",
    }
    settings: AwsSettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        super().__init__(name, settings)
        # botocore's DEBUG log prints request bodies (an AssumeRole ExternalId, say): never let `-vv` or a
        # DEBUG root logger put a secret in the logs.
        for noisy in ("botocore", "boto3", "s3transfer"):
            logger = logging.getLogger(noisy)
            logger.setLevel(max(logging.INFO, logger.level))
        s = self.settings
        self.config = Config(retries={"mode": s.retry_mode, "total_max_attempts": s.max_attempts},
                             connect_timeout=min(s.timeout, 10), read_timeout=s.timeout,
                             user_agent_extra=f"itam-sync/{__version__}")
        self._core = botocore.session.Session(profile=s.profile)
        self.base = boto3.Session(aws_access_key_id=s.access_key_id, aws_secret_access_key=s.secret_access_key,
                                  region_name=s.home_region, botocore_session=self._core)

    def streams(self) -> list[Stream]:
        return [Instances(self)]

    def client(self, session: boto3.Session, service: str, region: str | None = None) -> Any:
        return session.client(service, region_name=region or self.settings.home_region,
                              endpoint_url=self.settings.endpoint_url, config=self.config)

    def account_ids(self) -> list[str]:
        """Configured accounts plus the Organization's ACTIVE accounts, de-duplicated, in a stable order."""
        s = self.settings
        ids = list(dict.fromkeys(s.accounts))
        if s.use_organizations:
            org = self.client(self.base, "organizations")
            try:
                for page in org.get_paginator("list_accounts").paginate():
                    for acct in page.get("Accounts", []):
                        if (acct.get("State") or acct.get("Status")) == "ACTIVE" and acct["Id"] not in ids:
                            ids.append(acct["Id"])
            except (ClientError, BotoCoreError) as exc:
                raise _fail(exc, "organizations:ListAccounts") from exc
        return ids

    def targets(self) -> Iterator[tuple[str, boto3.Session]]:
        """(account id, session) for every account to read; the base credentials' account when none is set."""
        s = self.settings
        if not (s.accounts or s.use_organizations):
            try:
                account = self.client(self.base, "sts").get_caller_identity()["Account"]
            except (ClientError, BotoCoreError) as exc:
                raise _fail(exc, "sts:GetCallerIdentity (base credentials)") from exc
            yield account, self.base
            return
        for account in self.account_ids():
            yield account, self.assume(account)

    def role_arn(self, account: str) -> str:
        s = self.settings
        if s.role_arn_template:
            return s.role_arn_template.format(account=account)
        return f"arn:aws:iam::{account}:role/{s.role_name}"

    def assume(self, account: str) -> boto3.Session:
        """A session in `account` whose assumed-role credentials botocore refreshes before they expire."""
        s = self.settings
        source = self.base.get_credentials()
        if source is None:
            raise ConnectorError("no AWS base credentials found (environment, profile or instance role)",
                                 kind="config")
        extra: dict[str, Any] = {"RoleSessionName": s.session_name, "DurationSeconds": s.session_duration}
        if s.external_id:
            extra["ExternalId"] = s.external_id

        def sts_client(service: str, **kwargs: Any) -> Any:
            return self.base.client(service, region_name=s.home_region,
                                    endpoint_url=s.endpoint_url, config=self.config, **kwargs)

        fetcher = AssumeRoleCredentialFetcher(sts_client, source, self.role_arn(account), extra_args=extra)
        credentials = DeferredRefreshableCredentials(fetcher.fetch_credentials, _FixedProvider.METHOD)
        try:
            credentials.get_frozen_credentials()  # assume now, so a refused role fails here with its account
        except (ClientError, BotoCoreError) as exc:
            raise _fail(exc, f"sts:AssumeRole {self.role_arn(account)}") from exc
        core = botocore.session.Session()
        core.register_component("credential_provider", CredentialResolver([_FixedProvider(credentials)]))
        # Share the base session's model loader: it caches the (large) EC2 service model across accounts.
        core.register_component("data_loader", self._core.get_component("data_loader"))
        return boto3.Session(botocore_session=core, region_name=s.home_region)

    def regions(self, account: str, session: boto3.Session) -> list[str]:
        """The configured regions, or the regions enabled in `account` (opt-in regions it has not enabled
        are left out by DescribeRegions)."""
        if self.settings.regions:
            return list(self.settings.regions)
        try:
            found = self.client(session, "ec2").describe_regions()["Regions"]
        except (ClientError, BotoCoreError) as exc:
            raise _fail(exc, f"ec2:DescribeRegions in account {account}") from exc
        return sorted(r["RegionName"] for r in found)
