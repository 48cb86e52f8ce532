"""AWS connector: EC2 instances in every enabled region of one or many accounts.

One stream, `instances`: for each target account (the credentials' own account, a configured list, and/or
every ACTIVE account of the AWS Organization) a role is assumed, the account's enabled regions are listed
(`ec2.describe_regions`, unless `regions` is set) and `describe_instances` is paged in each region. A run
that cannot read every account and region fails as a whole: a partial sweep would otherwise mark the
instances of the unread accounts missing. EC2 has no modified-since filter, so every run is a full sweep.
The account and region fan-out, the assumed-role sessions and the error kinds are the SDK's
(`itam_sync.sdk.cloud.AwsSessions`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import boto3
from pydantic import Field, model_validator

from itam_sync.sdk.cloud import AWS_ERRORS, AwsOptions, AwsSessions, jsonable
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorSettings, Stream, StreamState

LIVE_STATES = ["pending", "running", "shutting-down", "stopping", "stopped"]


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


class Instances(Stream):
    """EC2 instances of every target account and region."""

    name = "instances"
    connector: AwsConnector

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        s, aws = self.connector.settings, self.connector.aws
        for account, session, region in aws.account_regions(s.accounts, s.use_organizations,
                                                            self.connector.role_arn, s.regions):
            with AWS_ERRORS.guard(f"ec2:DescribeInstances in account {account} region {region}"):
                yield from self._region(account, session, region)

    def _region(self, account: str, session: boto3.Session, region: str) -> Iterator[dict[str, Any] | BadRecord]:
        s = self.connector.settings
        states = LIVE_STATES + ["terminated"] if s.include_terminated else LIVE_STATES
        ec2 = self.connector.aws.client(session, "ec2", region)
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": states}],
            PaginationConfig={"PageSize": s.page_size})
        for page in pages:
            for reservation in page.get("Reservations", []):
                owner = reservation.get("OwnerId") or account
                for instance in reservation.get("Instances", []):
                    if not isinstance(instance, dict) or not instance.get("InstanceId"):
                        yield BadRecord(f"{account}/{region}: instance without InstanceId",
                                        json.dumps(jsonable(instance))[:2000])
                        continue
                    yield {**jsonable(instance), "OwnerId": owner, "Account": account, "Region": region}


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
        s = self.settings
        self.aws = AwsSessions(AwsOptions(
            profile=s.profile, access_key_id=s.access_key_id, secret_access_key=s.secret_access_key,
            home_region=s.home_region, endpoint_url=s.endpoint_url, retry_mode=s.retry_mode,
            max_attempts=s.max_attempts, timeout=s.timeout, session_name=s.session_name,
            session_duration=s.session_duration, external_id=s.external_id))

    def streams(self) -> list[Stream]:
        return [Instances(self)]

    def role_arn(self, account: str) -> str:
        """The role to assume in `account`: role_arn_template, or role_name in the standard partition."""
        s = self.settings
        if s.role_arn_template:
            return s.role_arn_template.format(account=account)
        return f"arn:aws:iam::{account}:role/{s.role_name}"
