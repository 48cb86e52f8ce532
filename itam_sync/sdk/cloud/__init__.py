"""Shared plumbing of the cloud connectors: target fan-out, and (in submodules) the AWS, Azure and Google
client set-up.

Fan-out. A cloud connector reads many targets one after the other: AWS accounts x regions, Azure
subscriptions, GCP projects, ACM regions. `sweep` reads them in order and `VendorErrors.guard` turns a
vendor SDK error into a `ConnectorError` that names the target and says who must act ("config": the
settings or the permissions; "system": try again later). The first target that cannot be read stops the
run: the engine then marks nothing missing, where a sweep that skipped the target would mark every record
of it missing.

Clients. The vendor SDKs are the natural clients (signing, endpoints, retries, token refresh); the
submodules only set them up the same way for every connector that needs them:
- `aws.AwsSessions` (boto3, the `aws` extra): base credentials, assumed-role sessions that refresh
  themselves, the Organization's accounts, an account's enabled regions, clients with the configured retry
  mode and endpoint.
- `azure.AzureArm` (the `azure` extra): a service-principal credential, ARM clients of one subscription, the
  tenant's subscriptions. `rest_dict` gives a model's REST JSON in every supported azure-mgmt-* version.
- `google.GoogleApis` (the `gcp` or `google` extra): services built from the discovery documents bundled with
  google-api-python-client over one authorised httplib2 transport; `google_pages` pages any list method,
  `google_execute` names the fix.

Each vendor SDK is imported only when its submodule is: this package itself needs only the standard
library, so a core install (no extras) imports it. The vendor names are also reachable from here
(`from itam_sync.sdk.cloud import AwsSessions`), imported on first use.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from importlib import import_module
from typing import TYPE_CHECKING, Any, TypeVar

from itam_sync import __version__
from itam_sync.sdk.connector import ConnectorError

if TYPE_CHECKING:
    from itam_sync.sdk.cloud.aws import AWS_CONFIG_CODES, AWS_ERRORS, AwsOptions, AwsSessions
    from itam_sync.sdk.cloud.azure import AZURE_ERRORS, SUBSCRIPTIONS_API, AzureArm, resource_group, rest_dict
    from itam_sync.sdk.cloud.google import (
        GCP_ERRORS,
        GoogleApis,
        google_execute,
        google_pages,
        service_account_credentials,
    )

__all__ = [
    "USER_AGENT", "VendorErrors", "first_line", "jsonable", "sweep",
    "AWS_CONFIG_CODES", "AWS_ERRORS", "AwsOptions", "AwsSessions",
    "AZURE_ERRORS", "SUBSCRIPTIONS_API", "AzureArm", "resource_group", "rest_dict",
    "GCP_ERRORS", "GoogleApis", "google_execute", "google_pages", "service_account_credentials",
]
T = TypeVar("T")
R = TypeVar("R")
USER_AGENT = f"itam-sync/{__version__}"

# Name -> submodule, for the lazy re-exports below.
_VENDOR_NAMES = {
    **dict.fromkeys(("AWS_CONFIG_CODES", "AWS_ERRORS", "AwsOptions", "AwsSessions"), "aws"),
    **dict.fromkeys(("AZURE_ERRORS", "SUBSCRIPTIONS_API", "AzureArm", "resource_group", "rest_dict"), "azure"),
    **dict.fromkeys(("GCP_ERRORS", "GoogleApis", "google_execute", "google_pages", "service_account_credentials"),
                    "google"),
}


def __getattr__(name: str) -> Any:
    """`from itam_sync.sdk.cloud import AwsSessions` imports the AWS submodule (and boto3) only then."""
    sub = _VENDOR_NAMES.get(name)
    if sub is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{sub}"), name)


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


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its type name."""
    text = str(exc.args[0] if exc.args else exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__
