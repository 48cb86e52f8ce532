"""itam_sync.sdk.cloud: the target fan-out, the vendor error kinds, and the AWS / Azure / Google client set-up.

The connectors' own suites run all of it against moto, `responses` and HttpMock; these tests pin the contract
a third-party cloud connector relies on."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import google.auth.exceptions
import httplib2
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from botocore.exceptions import ClientError, EndpointConnectionError
from googleapiclient.errors import HttpError as GoogleHttpError
from googleapiclient.http import HttpMockSequence
from moto import mock_aws

from itam_sync.sdk.cloud import (
    AWS_ERRORS,
    AZURE_ERRORS,
    GCP_ERRORS,
    AwsOptions,
    AwsSessions,
    GoogleApis,
    google_execute,
    google_pages,
    jsonable,
    resource_group,
    rest_dict,
    service_account_credentials,
    sweep,
)
from itam_sync.sdk.connector import ConnectorError
from itam_sync.sdk.errors import HttpError

# ------------------------------------------------------------------------------------------------ fan-out


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}}, "DescribeInstances")


def test_sweep_reads_targets_in_order_and_the_first_failure_stops_it_naming_the_target() -> None:
    read: list[str] = []

    def records(target: str) -> Iterator[str]:
        read.append(target)
        if target == "b":
            raise _client_error("RequestLimitExceeded")
        yield f"{target}-1"
        yield f"{target}-2"

    out: list[str] = []
    with pytest.raises(ConnectorError) as err:
        for record in sweep(["a", "b", "c"], records, errors=AWS_ERRORS, where=lambda t: f"region {t}"):
            out.append(record)
    assert out == ["a-1", "a-2"] and read == ["a", "b"]  # c is never read: the run fails as a whole
    assert str(err.value).startswith("AWS region b: An error occurred (RequestLimitExceeded)")
    assert str(err.value).endswith("; the run stops so nothing is marked missing")
    assert err.value.kind == "system" and isinstance(err.value.__cause__, ClientError)


def test_guard_passes_other_errors_and_an_early_close_through() -> None:
    def unreachable(target: str) -> Iterator[str]:
        raise ConnectorError("zones unreachable", kind="system")
        yield target

    with pytest.raises(ConnectorError, match="^zones unreachable$"):
        list(sweep(["p"], unreachable, errors=GCP_ERRORS, where=str))
    first: Any = sweep(["a", "b"], lambda t: iter([t, t]), errors=AWS_ERRORS, where=str)
    assert next(first) == "a"
    first.close()  # GeneratorExit is not a vendor error: closing a sweep early raises nothing


@pytest.mark.parametrize(("exc", "kind"), [
    (_client_error("AccessDenied"), "config"), (_client_error("UnauthorizedOperation"), "config"),
    (_client_error("RequestLimitExceeded"), "system"),
    (EndpointConnectionError(endpoint_url="https://ec2.eu-north-1.amazonaws.com/"), "system")])
def test_aws_error_kinds(exc: Exception, kind: str) -> None:
    assert AWS_ERRORS.fail(exc, "x").kind == kind


def test_azure_error_kinds_and_first_line() -> None:
    denied = AZURE_ERRORS.fail(ClientAuthenticationError("AADSTS7000215: Invalid client secret\nTrace ID: 1"), "x")
    assert denied.kind == "config" and "ClientAuthenticationError: AADSTS7000215: Invalid client secret;" in str(denied)
    for status, kind in ((403, "config"), (404, "config"), (429, "system"), (503, "system")):
        exc = HttpResponseError(message=f"status {status}")
        exc.status_code = status
        assert AZURE_ERRORS.fail(exc, "x").kind == kind


def test_gcp_error_kinds() -> None:
    for status, kind in ((403, "config"), (500, "system")):
        exc = GoogleHttpError(httplib2.Response({"status": str(status)}), b"{}", uri="https://compute.example")
        assert GCP_ERRORS.fail(exc, "x").kind == kind
    assert GCP_ERRORS.fail(google.auth.exceptions.RefreshError("invalid_grant"), "x").kind == "config"


def test_jsonable_and_resource_group() -> None:
    moment = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    assert jsonable({"LaunchTime": moment, "n": [1, moment.date()]}) == {
        "LaunchTime": "2026-05-01T12:30:00+00:00", "n": [1, "2026-05-01"]}
    arm = "/subscriptions/s/resourceGroups/RG-Fin/providers/Microsoft.Compute/virtualMachines/vm1"
    assert resource_group(arm) == "RG-Fin" and resource_group("/subscriptions/s") is None


# -------------------------------------------------------------------------------------------------- Azure

REST_VM = {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
           "name": "vm1", "type": "Microsoft.Compute/virtualMachines", "location": "westeurope",
           "properties": {"vmId": "a7b6c5d4-e3f2-4a1b-9c8d-7e6f5a4b3c2d",
                          "hardwareProfile": {"vmSize": "Standard_B2ms"}}}


def test_rest_dict_of_a_hybrid_model_is_its_rest_json() -> None:
    from azure.mgmt.compute.models import VirtualMachine

    if not issubclass(VirtualMachine, Mapping):
        pytest.skip("the installed azure-mgmt-compute has msrest-era models")
    assert rest_dict(VirtualMachine(REST_VM)) == REST_VM
    assert rest_dict({"plain": "dict"}) == {"plain": "dict"}


def test_rest_dict_of_an_msrest_model_keeps_read_only_fields() -> None:
    try:  # the msrest Model azure-mgmt-compute vendors: _utils/serialization.py from 37, _serialization.py before
        from azure.mgmt.compute._utils import serialization
    except ImportError:  # pragma: no cover - azure-mgmt-compute 30-36
        from azure.mgmt.compute import _serialization as serialization  # type: ignore[attr-defined, no-redef]

    class HardwareProfile(serialization.Model):
        _attribute_map = {"vm_size": {"key": "vmSize", "type": "str"}}

    class VirtualMachine(serialization.Model):
        _validation = {"id": {"readonly": True}, "name": {"readonly": True}, "type": {"readonly": True},
                       "vm_id": {"readonly": True}}
        _attribute_map = {"id": {"key": "id", "type": "str"}, "name": {"key": "name", "type": "str"},
                          "type": {"key": "type", "type": "str"}, "location": {"key": "location", "type": "str"},
                          "vm_id": {"key": "properties.vmId", "type": "str"},
                          "hardware_profile": {"key": "properties.hardwareProfile", "type": "HardwareProfile"}}

        @classmethod
        def _infer_class_models(cls) -> dict[str, type]:
            return {"VirtualMachine": cls, "HardwareProfile": HardwareProfile}

    vm = serialization.Deserializer(VirtualMachine._infer_class_models())("VirtualMachine", REST_VM)
    assert "vm_id" in vm.as_dict() and "properties" not in vm.as_dict()  # why as_dict() lost the fields
    assert "vmId" not in vm.serialize()["properties"]  # and why keep_readonly matters
    assert rest_dict(vm) == REST_VM


def test_rest_dict_refuses_what_is_no_azure_model() -> None:
    with pytest.raises(TypeError, match="neither a hybrid nor an msrest"):
        rest_dict(object())


# ---------------------------------------------------------------------------------------------------- AWS


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_CONFIG_FILE": str(tmp_path / "none"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


def test_aws_accounts_configured_then_organization_deduplicated(aws_env: None) -> None:
    org = boto3.client("organizations", region_name="us-east-1")
    org.create_organization(FeatureSet="ALL")
    member = org.create_account(Email="it@example.com", AccountName="m")["CreateAccountStatus"]["AccountId"]
    aws = AwsSessions(AwsOptions())
    role = "arn:aws:iam::{}:role/Reader".format
    got = [(account, session.client("sts").get_caller_identity()["Account"])
           for account, session in aws.accounts(["111111111111", member, "111111111111"], True, role)]
    assert [a for a, _ in got] == ["111111111111", member, "123456789012"]  # management account last
    assert all(a == seen for a, seen in got)  # each session is in its account (the assumed role's)
    assert [a for a, _ in aws.accounts([], False, role)] == ["123456789012"]  # the base credentials' own


def test_aws_regions_configured_or_enabled_and_fan_out(aws_env: None) -> None:
    aws = AwsSessions(AwsOptions())
    assert aws.regions("1", aws.base, ["eu-north-1"]) == ["eu-north-1"]
    enabled = aws.regions("1", aws.base, [])
    assert "eu-north-1" in enabled and enabled == sorted(enabled)
    pairs = [(a, r) for a, _, r in aws.account_regions(["111111111111", "222222222222"], False,
                                                        "arn:aws:iam::{}:role/R".format, ["eu-north-1", "us-east-1"])]
    assert pairs == [("111111111111", "eu-north-1"), ("111111111111", "us-east-1"),
                     ("222222222222", "eu-north-1"), ("222222222222", "us-east-1")]


def test_aws_client_settings_and_quiet_wire_log() -> None:
    logging.getLogger("botocore").setLevel(logging.DEBUG)
    aws = AwsSessions(AwsOptions(retry_mode="adaptive", max_attempts=7, timeout=30, endpoint_url="http://x:4566",
                                 access_key_id="AKIDEXAMPLE", secret_access_key="secret"))
    client = aws.client(aws.base, "ec2", "eu-north-1")
    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 7}
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (10, 30)
    assert client.meta.endpoint_url == "http://x:4566" and client.meta.region_name == "eu-north-1"
    assert logging.getLogger("botocore").level == logging.INFO  # request bodies (ExternalId) never logged
    default = AwsSessions(AwsOptions()).config
    assert (default.connect_timeout, default.read_timeout) == (60, 60)  # botocore's own


# ------------------------------------------------------------------------------------------------- Google


def _key() -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": "p", "private_key_id": "k1", "private_key": pem,
            "client_email": "itam@p.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token"}


def test_service_account_credentials_delegate_and_errors_never_echo_the_key(tmp_path: Path) -> None:
    creds = service_account_credentials(key_json=json.dumps(_key()), key_file=None, scopes=["s"],
                                        subject="admin@example.com", token_uri="https://token.example.test/")
    assert creds._subject == "admin@example.com" and creds._token_uri == "https://token.example.test/"
    with pytest.raises(ConnectorError, match="not usable") as err:
        service_account_credentials(key_json='{"private_key": "SECRET-KEY"}', key_file=None, scopes=["s"])
    assert "SECRET" not in str(err.value) and err.value.kind == "config"
    with pytest.raises(ConnectorError, match="cannot read credentials_file"):
        service_account_credentials(key_json=None, key_file=str(tmp_path / "none.json"), scopes=["s"])
    with pytest.raises(ConnectorError, match="no service account key"):
        service_account_credentials(key_json=None, key_file=None, scopes=["s"])


def _ok(body: dict[str, Any]) -> tuple[dict[str, str], str]:
    return {"status": "200", "content-type": "application/json"}, json.dumps(body)


def _token() -> tuple[dict[str, str], str]:
    return _ok({"access_token": "ya29.t", "expires_in": 3599, "token_type": "Bearer"})


def _apis(http: Any) -> GoogleApis:
    return GoogleApis(lambda: service_account_credentials(key_json=json.dumps(_key()), key_file=None,
                                                          scopes=["s"]), lambda: http)


def test_google_pages_follow_next_page_token_and_one_transport_serves_every_api() -> None:
    http = HttpMockSequence([_token(), _ok({"devices": [{"name": "devices/1"}], "nextPageToken": "t2"}),
                             _ok({"devices": [{"name": "devices/2"}]}), _ok({"users": []})])
    apis = _apis(http)
    devices = apis.service("cloudidentity", "v1").devices()
    pages = [body for _, body in google_pages(devices, "list", lambda r: r.execute(), customer="customers/c")]
    assert [d["name"] for page in pages for d in page["devices"]] == ["devices/1", "devices/2"]
    assert "pageToken=t2" in http.request_sequence[2][0]
    users = apis.service("admin", "directory_v1", "https://admin.example.test/").users()
    assert next(google_pages(users, "list", lambda r: r.execute(), customer="c"))[1] == {"users": []}
    assert http.request_sequence[3][0].startswith("https://admin.example.test/admin/directory/v1/users?")
    assert [u for u, *_ in http.request_sequence].count("https://oauth2.googleapis.com/token") == 1
    apis.close()


def test_google_execute_names_the_fix() -> None:
    hints = {403: "subject must be an admin"}
    denied = ({"status": "403", "content-type": "application/json"}, json.dumps({"error": {"message": "no"}}))
    down = ({"status": "500", "content-type": "application/json"}, json.dumps({"error": {"message": "down"}}))
    apis = _apis(HttpMockSequence([_token(), denied, down]))
    users = apis.service("admin", "directory_v1").users()
    with pytest.raises(HttpError, match="HTTP 403 .*subject must be an admin") as err:
        google_execute(users.list(customer="c"), num_retries=0, hints=hints, refused="")
    assert err.value.kind == "config" and err.value.status == 403
    with pytest.raises(HttpError, match="HTTP 500 .*gave up after 0 retries") as err:
        google_execute(users.list(customer="c"), num_retries=0, hints=hints, refused="")
    assert err.value.kind == "system"
    refused = ({"status": "400", "content-type": "application/json"},
               json.dumps({"error": "unauthorized_client", "error_description": "not authorised"}))
    apis = _apis(HttpMockSequence([refused]))
    with pytest.raises(ConnectorError, match="refused the service account token .*; authorise the scopes") as no:
        google_execute(apis.service("admin", "directory_v1").users().list(customer="c"), num_retries=0,
                       hints=hints, refused="authorise the scopes")
    assert no.value.kind == "config"
