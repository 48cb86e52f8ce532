"""AWS client set-up for the cloud connectors: boto3 sessions, assumed roles, accounts and regions.

Needs boto3 (`pip install itam-sync[aws]`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

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

from itam_sync.sdk.cloud import USER_AGENT, VendorErrors
from itam_sync.sdk.connector import ConnectorError

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
