"""AWS connector over moto (`mock_aws`): the real boto3 code path, alone and through the engine."""

from __future__ import annotations

import contextlib
import json
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.endpoint
import botocore.handlers
import pytest
from botocore.awsrequest import AWSResponse
from botocore.client import BaseClient
from itam_sync.connectors.aws.connector import AwsConnector, AwsSettings
from moto import mock_aws
from moto.core.botocore_stubber import MockRawResponse

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import RunResult, SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import BadRecord, ConnectorError, StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
MAPPING = ROOT / "mappings" / "aws.yaml"
A, B = "111111111111", "222222222222"
REGIONS = ["eu-north-1", "us-east-1"]
SETTINGS: dict[str, Any] = {"accounts": [A, B], "role_name": "ItamReadOnly", "regions": REGIONS,
                            "max_attempts": 2, "page_size": 5}
THROTTLED = ("<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
             "</Message></Error></Errors><RequestID>5d0b2c</RequestID></Response>")
UNAVAILABLE = ("<Response><Errors><Error><Code>Unavailable</Code><Message>The server is overloaded."
               "</Message></Error></Errors><RequestID>5d0b2d</RequestID></Response>")


_CLIENTS: dict[tuple[str, str], Any] = {}  # (account, region) -> ec2 client; creating clients is slow


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy base credentials (moto's default account 123456789012) and no real config files."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",  # seconds per test; no test needs a real AMI
                       "AWS_CONFIG_FILE": str(tmp_path / "none"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(key, value)
    _CLIENTS.clear()  # assumed-role keys are only valid inside the mock_aws context that issued them


def session_in(account: str) -> boto3.Session:
    """A session in `account`, the way the connector gets one (moto keys resources by the role's account)."""
    creds = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/seed", RoleSessionName="seed")["Credentials"]
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"])


def ec2_in(account: str, region: str) -> Any:
    if (account, region) not in _CLIENTS:
        _CLIENTS[(account, region)] = session_in(account).client("ec2", region_name=region)
    return _CLIENTS[(account, region)]


def launch(account: str, region: str, count: int = 1, name: str | None = None,
           tags: dict[str, str] | None = None) -> list[str]:
    """`count` instances, one reservation each (moto pages describe_instances by reservation)."""
    ec2 = ec2_in(account, region)
    all_tags = {**({"Name": name} if name else {}), **(tags or {})}
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}]
    ids = []
    for _ in range(count):
        out = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="t3.medium",
                                **({"TagSpecifications": spec} if all_tags else {}))
        ids.append(out["Instances"][0]["InstanceId"])
    return ids


def seed() -> dict[tuple[str, str], list[str]]:
    _CLIENTS.clear()
    return {(A, "eu-north-1"): launch(A, "eu-north-1", 2, name="web-1", tags={"owner": "anna.berg@example.com"}),
            (A, "us-east-1"): launch(A, "us-east-1", 1, name="batch"),
            (B, "eu-north-1"): launch(B, "eu-north-1", 1, name="erp"),
            (B, "us-east-1"): launch(B, "us-east-1", 3)}


@contextlib.contextmanager
def before_send(event: str, handler: Callable[..., Any]) -> Iterator[None]:
    """Register `handler` ahead of moto's stubber for every botocore session created meanwhile."""
    botocore.handlers.BUILTIN_HANDLERS.insert(0, (event, handler))
    try:
        yield
    finally:
        botocore.handlers.BUILTIN_HANDLERS.remove((event, handler))


def error_response(request: Any, status: int, body: str) -> AWSResponse:
    return AWSResponse(request.url, status, {"Content-Type": "text/xml"}, MockRawResponse(body))


@contextlib.contextmanager
def no_sleep(sleeps: list[float] | None = None) -> Iterator[list[float]]:
    """botocore's retry sleeps (endpoint.py) go into a list instead of really waiting."""
    out = [] if sleeps is None else sleeps
    original = botocore.endpoint.time
    botocore.endpoint.time = types.SimpleNamespace(sleep=out.append)
    try:
        yield out
    finally:
        botocore.endpoint.time = original


@contextlib.contextmanager
def aws_mock(fail: bool) -> Iterator[None]:
    """The conformance suite's mock: two accounts x two regions, or EC2 answering 503 to everything."""
    with mock_aws(), no_sleep():
        seed()
        if fail:
            with before_send("before-send.ec2", lambda request, **kw: error_response(request, 503, UNAVAILABLE)):
                yield
        else:
            yield


TestAwsConformance = conformance_suite(AwsConnector, SETTINGS, mock=aws_mock, mapping=MAPPING)


# ------------------------------------------------------------------------------------------ helpers


class Calls:
    """Every AWS API call made (service, operation, region, params); `edit` may rewrite parsed results."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log: list[tuple[str, str, str, dict[str, Any]]] = []
        self.edit: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None
        original = BaseClient._make_api_call
        calls = self

        def spy(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
            calls.log.append((client.meta.service_model.service_name, operation, client.meta.region_name,
                              dict(params)))
            result = original(client, operation, params)
            return calls.edit(operation, result) if calls.edit else result

        monkeypatch.setattr(BaseClient, "_make_api_call", spy)

    def ops(self, operation: str) -> list[tuple[str, str, str, dict[str, Any]]]:
        return [c for c in self.log if c[1] == operation]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    return Calls(monkeypatch)


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 'aws.db'}"),
                    connectors=[ConnectorConfig(name="aws-prod", type="aws", settings={**SETTINGS, **overrides},
                                                mapping=str(MAPPING))])


def run(settings: Settings, *, full: bool = True, allow_shrink: bool = False) -> RunResult:
    return run_connector(settings, "aws-prod", full=full, allow_shrink=allow_shrink,
                         registry=Registry(extra={"aws": AwsConnector}))


def pull(**overrides: Any) -> list[Any]:
    conn = AwsConnector("aws-prod", AwsSettings.model_validate({**SETTINGS, **overrides}))
    try:
        return list(conn.streams()[0].records(StreamState()))
    finally:
        conn.close()


def assets(settings: Settings) -> dict[str, dict[str, Any]]:
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        out = {golden["instance_id"][0]: golden for _, golden, _ in repo.entities.iter_entities("asset")}
    store.close()
    return out


@pytest.fixture
def aws() -> Iterator[dict[tuple[str, str], list[str]]]:
    with mock_aws(), no_sleep():
        yield seed()


# -------------------------------------------------------------------------------------------- tests


def test_two_accounts_two_regions_by_assumed_role(aws: dict[tuple[str, str], list[str]], calls: Calls) -> None:
    records = pull()
    got = {(r["Account"], r["Region"], r["InstanceId"]) for r in records}
    assert got == {(acct, region, i) for (acct, region), ids in aws.items() for i in ids}
    assert all(r["OwnerId"] == r["Account"] for r in records)
    roles = [c[3] for c in calls.ops("AssumeRole") if c[3]["RoleSessionName"] == "itam-sync"]
    assert [r["RoleArn"] for r in roles] == [f"arn:aws:iam::{A}:role/ItamReadOnly",
                                             f"arn:aws:iam::{B}:role/ItamReadOnly"]
    assert {r["DurationSeconds"] for r in roles} == {3600}
    # Only the live states are asked for; terminated instances drop out and are marked missing.
    filters = calls.ops("DescribeInstances")[0][3]["Filters"]
    assert filters == [{"Name": "instance-state-name",
                        "Values": ["pending", "running", "shutting-down", "stopping", "stopped"]}]


def test_role_arn_template_and_external_id(aws: dict[tuple[str, str], list[str]], calls: Calls) -> None:
    pull(role_name=None, role_arn_template="arn:aws:iam::{account}:role/itam/Reader", external_id="xyz-42",
         accounts=[B])
    (role,) = [c[3] for c in calls.ops("AssumeRole") if c[3]["RoleSessionName"] == "itam-sync"]
    assert role["RoleArn"] == f"arn:aws:iam::{B}:role/itam/Reader" and role["ExternalId"] == "xyz-42"


def test_organizations_lists_active_accounts(calls: Calls) -> None:
    with mock_aws(), no_sleep():
        org = boto3.client("organizations", region_name="us-east-1")
        org.create_organization(FeatureSet="ALL")
        member = org.create_account(Email="it@example.com", AccountName="member")["CreateAccountStatus"]["AccountId"]
        launch(member, "eu-north-1", 2)
        launch("123456789012", "eu-north-1", 1)  # the management account itself (also ACTIVE)
        records = pull(accounts=[], use_organizations=True, regions=["eu-north-1"])
    assert sorted(r["Account"] for r in records) == sorted([member, member, "123456789012"])
    assert len(calls.ops("ListAccounts")) == 1


def test_base_credentials_account_when_no_accounts_configured(aws: dict[tuple[str, str], list[str]]) -> None:
    ids = launch("123456789012", "eu-north-1", 2)
    records = pull(accounts=[], role_name=None)
    assert {r["InstanceId"] for r in records} == set(ids)
    assert {r["Account"] for r in records} == {"123456789012"}


def test_regions_default_to_the_enabled_regions(aws: dict[tuple[str, str], list[str]], calls: Calls) -> None:
    records = pull(regions=[], accounts=[A])
    assert {r["InstanceId"] for r in records} == set(aws[(A, "eu-north-1")] + aws[(A, "us-east-1")])
    described = {c[2] for c in calls.ops("DescribeInstances")}
    assert len(calls.ops("DescribeRegions")) == 1
    assert {"eu-north-1", "us-east-1", "ap-southeast-2"} <= described and len(described) > 10


def test_many_instances_are_paged(aws: dict[tuple[str, str], list[str]], calls: Calls) -> None:
    many = launch(A, "eu-north-1", 12)
    records = pull(accounts=[A], regions=["eu-north-1"])
    assert {r["InstanceId"] for r in records} == set(many + aws[(A, "eu-north-1")])
    pages = calls.ops("DescribeInstances")
    assert len(pages) == 3  # 14 reservations, pages of 5
    assert [("NextToken" in p[3], p[3]["MaxResults"]) for p in pages] == [(False, 5), (True, 5), (True, 5)]


def test_empty_account_and_region(aws: dict[tuple[str, str], list[str]], tmp_path: Path) -> None:
    result = run(settings_for(tmp_path, accounts=["333333333333"], regions=["ap-south-1"]))
    assert result.status == "success" and result.counts["instances"]["seen"] == 0


def test_throttling_is_retried_by_botocore_and_the_wait_taken(aws: dict[tuple[str, str], list[str]],
                                                              calls: Calls) -> None:
    throttled: list[str] = []

    def throttle_once(request: Any, **kwargs: Any) -> AWSResponse | None:
        if throttled:
            return None
        throttled.append(request.url)
        return error_response(request, 503, THROTTLED)

    with no_sleep() as sleeps, before_send("before-send.ec2.DescribeInstances", throttle_once):
        records = pull(accounts=[A], regions=["eu-north-1"], max_attempts=3, retry_mode="standard")
    assert len(records) == 2 and len(throttled) == 1
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 20  # standard mode: jittered exponential backoff


def test_retry_mode_and_attempts_are_settings() -> None:
    conn = AwsConnector("x", AwsSettings.model_validate({**SETTINGS, "retry_mode": "adaptive", "max_attempts": 7}))
    client = conn.aws.client(conn.aws.base, "ec2", "eu-north-1")
    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 7}
    assert client.meta.region_name == "eu-north-1"
    conn = AwsConnector("x", AwsSettings.model_validate({**SETTINGS, "endpoint_url": "http://127.0.0.1:4566"}))
    assert conn.aws.client(conn.aws.base, "ec2", "us-gov-west-1").meta.endpoint_url == "http://127.0.0.1:4566"


def test_throttled_to_the_end_fails_the_run_and_marks_nothing_missing(aws: dict[tuple[str, str], list[str]],
                                                                      tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert run(settings).status == "success"
    before = assets(settings)
    assert len(before) == 7

    def throttle_b(request: Any, **kwargs: Any) -> AWSResponse | None:
        # Only account B's us-east-1 (the last one read) fails: the run must still fail as a whole.
        return error_response(request, 503, THROTTLED) if "us-east-1" in request.url else None

    with no_sleep() as sleeps, before_send("before-send.ec2.DescribeInstances", throttle_b), \
            pytest.raises(SyncFailed, match="RequestLimitExceeded"):
        run(settings)
    assert len(sleeps) >= 1  # retried (max_attempts=2) before giving up
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        counts, last = repo.entities.counts(), repo.runs.list_runs(1)[0]
    store.close()
    assert last["status"] == "failed" and counts["missing_records"] == 0
    assert assets(settings).keys() == before.keys()


def test_a_refused_role_is_a_config_error() -> None:
    with mock_aws(), no_sleep():
        def deny(request: Any, **kwargs: Any) -> AWSResponse:
            body = ("<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized "
                    "to perform sts:AssumeRole</Message></Error></ErrorResponse>")
            return error_response(request, 403, body)

        with before_send("before-send.sts.AssumeRole", deny), pytest.raises(ConnectorError) as err:
            pull()
    assert err.value.kind == "config" and f"arn:aws:iam::{A}:role/ItamReadOnly" in str(err.value)


def test_short_role_sessions_are_refreshed_during_the_sweep(aws: dict[tuple[str, str], list[str]],
                                                             calls: Calls) -> None:
    # A 15-minute session is inside botocore's refresh window at once, so every call re-assumes the role:
    # the same mechanism renews a 1-hour session when a long sweep outlives it.
    records = pull(session_duration=900, accounts=[A])
    assert len(records) == 3
    assumed = [c for c in calls.ops("AssumeRole") if c[3]["RoleSessionName"] == "itam-sync"]
    assert len(assumed) >= 3 and {c[3]["DurationSeconds"] for c in assumed} == {900}


def test_malformed_instance_is_quarantined(aws: dict[tuple[str, str], list[str]], calls: Calls,
                                           tmp_path: Path) -> None:
    broken = aws[(B, "eu-north-1")][0]

    def drop_id(operation: str, result: dict[str, Any]) -> dict[str, Any]:
        for reservation in result.get("Reservations", []):
            for instance in reservation["Instances"]:
                if instance.get("InstanceId") == broken:
                    del instance["InstanceId"]
        return result

    calls.edit = drop_id
    settings = settings_for(tmp_path)
    result = run(settings)
    assert result.status == "success"
    assert result.counts["instances"]["quarantined"] == 1 and result.counts["instances"]["new"] == 6
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        rows = repo.quarantine.list_quarantine(result.run_id)
    store.close()
    assert [(r[3], "without InstanceId" in r[5]) for r in rows] == [("instances", True)]


def test_incremental_runs_are_full_sweeps(aws: dict[tuple[str, str], list[str]], tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    run(settings)
    second = run(settings, full=False)
    assert second.counts["instances"]["seen"] == 7 and second.counts["instances"]["unchanged"] == 7


def test_terminated_instance_is_marked_missing_after_a_complete_run(aws: dict[tuple[str, str], list[str]],
                                                                    tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    run(settings)
    gone = aws[(B, "us-east-1")][0]
    ec2_in(B, "us-east-1").terminate_instances(InstanceIds=[gone])
    result = run(settings, allow_shrink=True)  # 1 of 7 is over the default 10% deletion guard
    assert result.status == "success" and result.counts["_total"]["missing_marked"] == 1


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="role_name or role_arn_template"):
        AwsSettings.model_validate({"accounts": [A]})
    with pytest.raises(ValueError, match="account"):
        AwsSettings.model_validate({"accounts": [A], "role_arn_template": "arn:aws:iam::1:role/x"})
    with pytest.raises(ValueError):
        AwsSettings.model_validate({"retry_mode": "aggressive"})


def test_mapping_golden() -> None:
    reservation = json.loads((FIXTURES / "describe_instances.json").read_text())["Reservations"][0]
    stream = load_mapping(MAPPING).stream("instances")
    web, win = ({**i, "OwnerId": reservation["OwnerId"], "Account": B, "Region": "eu-north-1"}
                for i in reservation["Instances"])
    assert stream.source_key(web) == "i-0bd92d8d519a55c0f"
    assert stream.map(web, "instances").fields == {
        "kind": "cloud_instance",
        "cloud_provider": "aws",
        "cloud_account": "222222222222",
        "region": "eu-north-1",
        "instance_id": "i-0bd92d8d519a55c0f",
        "instance_type": "t3.medium",
        "power_state": "running",
        "lifecycle_state": "deployed",
        "hostname": "web-1",
        "ip_addresses": ["172.31.8.14", "13.48.1.2", "172.31.8.15", "10.20.0.7",
                         "2a05:d016:8b5:6d00:1c2b:3a4d:5e6f:7a8b"],
        "mac_addresses": ["063a5b7c9de1", "063a5b7c9de2"],
        "os_name": "Linux",
        "tags": ["Name=Web-1", "owner=anna.berg@example.com", "cost-center="],
    }
    fields = stream.map(win, "instances").fields
    assert fields["os_name"] == "Windows" and fields["power_state"] == "stopped"
    assert fields["hostname"] == "ip-10-20-1-9" and "tags" not in fields


def test_pulled_record_is_json_and_mapped(aws: dict[tuple[str, str], list[str]]) -> None:
    records = [r for r in pull(accounts=[A], regions=["eu-north-1"]) if not isinstance(r, BadRecord)]
    json.dumps(records)  # LaunchTime and friends are ISO strings, not datetimes
    fields = load_mapping(MAPPING).stream("instances").map(records[0], "instances").fields
    assert fields["cloud_account"] == A and fields["region"] == "eu-north-1"
    assert fields["hostname"] == "web-1" and "owner=anna.berg@example.com" in fields["tags"]
    assert fields["mac_addresses"] and fields["ip_addresses"]
