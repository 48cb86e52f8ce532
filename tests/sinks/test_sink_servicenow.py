"""The ServiceNow sink against a local server speaking the IRE and Table API shapes (real HTTP, real sockets)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from itam_sync.connectors.sinks.servicenow.sink import ServiceNowSettings, ServiceNowSink
from publish_helpers import FakeServiceNow

from itam_sync.publish.sinks.base import GoldenRecord
from itam_sync.sdk.errors import HttpError

USERS = [
    {"sys_id": "u-ana", "email": "ana.souza@example.com", "user_name": "ana.souza", "employee_number": "E1001"},
    {"sys_id": "u-bob", "email": "bob.li@example.com", "user_name": "bob.li", "employee_number": "E1002"},
    {"sys_id": "u-dev", "email": "dev.patel@example.com", "user_name": "dev.patel", "employee_number": "E1004"},
    {"sys_id": "u-eve", "email": "eve.martin@example.com", "user_name": "eve", "employee_number": "E1005"},
]


def asset(eid: int, serial: str | None, holder: str | None = None, kind: str = "laptop", **more: object
          ) -> GoldenRecord:
    values = {"kind": kind, "serial_number": serial, "hostname": f"host-{eid}", "os_name": "macOS",
              "os_version": "14.6", "model": "MacBook Pro", "warranty_end": "2027-01-31",
              "mac_addresses": ["a483e7123456", "a483e7123457"], "assigned_to": holder, **more}
    values = {k: v for k, v in values.items() if v is not None}
    return GoldenRecord(eid, "asset", "active", values, {k: "mdm" for k in values})


@pytest.fixture
def snow() -> Iterator[FakeServiceNow]:
    with FakeServiceNow(USERS) as server:
        yield server


def sink_for(server: FakeServiceNow, **settings: object) -> ServiceNowSink:
    cfg = ServiceNowSettings.model_validate({"base_url": server.url, "username": "itam", "password": "pw",
                                            "user_page_size": 2, **settings})
    return ServiceNowSink("cmdb", cfg)


def test_push_sends_cis_in_the_ire_shape_with_the_source_named(snow: FakeServiceNow) -> None:
    sink = sink_for(snow)
    records = [asset(1, "C02FK1ABQ6L4", "bob.li@example.com"), asset(2, "5CG1234XYZ", "dev.patel@example.com"),
               asset(3, "PF3ABCDE", "eve.martin@example.com"), asset(4, "PF3ZZZZZ", "nobody@example.com")]
    outcome = sink.push_records(records)
    assert (outcome.created, outcome.updated, outcome.failed) == (4, 0, [])
    [post] = snow.calls_to("POST", "/api/now/identifyreconcile")
    assert post.query == {"sysparm_data_source": "ItamSync"}
    assert post.headers["authorization"] == "Basic " + base64.b64encode(b"itam:pw").decode()
    items = post.json["items"]
    assert [i["className"] for i in items] == ["cmdb_ci_computer"] * 4
    first = items[0]["values"]
    assert first["serial_number"] == "C02FK1ABQ6L4"
    assert first["name"] == "host-1"
    assert first["os"] == "macOS" and first["os_version"] == "14.6"
    assert first["warranty_expiration"] == "2027-01-31"
    assert first["mac_address"] == "a483e7123456"  # list fields send their first value
    # assigned_to is a reference: the holder's sys_user sys_id, resolved through the Table API.
    assert [i["values"].get("assigned_to") for i in items] == ["u-bob", "u-dev", "u-eve", None]
    assert "assigned_to" not in items[3]["values"]  # unknown holder: the CMDB keeps what it has


def test_user_lookup_pages_through_sysparm_offset(snow: FakeServiceNow) -> None:
    sink = sink_for(snow)
    holders = ["ana.souza@example.com", "bob.li@example.com", "dev.patel@example.com"]
    sink.push_records([asset(i + 1, f"SER{i}", h) for i, h in enumerate(holders)])
    pages = snow.calls_to("GET", "/api/now/table/sys_user")
    # 3 users at sysparm_limit=2: offset 0 (2 rows), offset 2 (1 row, a short page ends the paging).
    assert [(p.query["sysparm_limit"], p.query["sysparm_offset"]) for p in pages] == [("2", "0"), ("2", "2")]
    assert pages[0].query["sysparm_query"].startswith("emailINana.souza@example.com,bob.li@example.com,")
    assert "^ORuser_nameIN" in pages[0].query["sysparm_query"]
    assert pages[0].query["sysparm_fields"] == "sys_id,email,user_name,employee_number"
    # Cached: a second batch with the same holders looks nobody up again.
    sink.push_records([asset(9, "SER9", "bob.li@example.com")])
    assert len(snow.calls_to("GET", "/api/now/table/sys_user")) == 2


def test_second_push_of_the_same_records_is_no_change(snow: FakeServiceNow) -> None:
    sink = sink_for(snow)
    records = [asset(1, "C02FK1ABQ6L4"), asset(2, "5CG1234XYZ")]
    sink.push_records(records)
    again = sink.push_records(records)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    changed = sink.push_records([asset(1, "C02FK1ABQ6L4", os_version="15.0"), asset(2, "5CG1234XYZ")])
    assert (changed.updated, changed.unchanged) == (1, 1)


def test_ire_item_errors_fail_that_record_only(snow: FakeServiceNow) -> None:
    snow.refuse.add("BADSERIAL")
    outcome = sink_for(snow).push_records([asset(1, "GOOD1"), asset(2, "BADSERIAL"), asset(3, "GOOD2")])
    assert outcome.created == 2
    assert [e for e, _ in outcome.failed] == [2]
    assert "MISSING_MATCHING_ATTRIBUTES" in outcome.failed[0][1]


def test_429_and_5xx_are_retried_honouring_retry_after(snow: FakeServiceNow, recorded_sleeps: list[float]) -> None:
    snow.script += [("POST", "/api/now/identifyreconcile", (429, {"Retry-After": "7"}, {"error": "too many"})),
                    ("POST", "/api/now/identifyreconcile", (503, {}, {"error": "unavailable"})),
                    ("GET", "/api/now/table/sys_user", (502, {}, b"bad gateway"))]
    outcome = sink_for(snow).push_records([asset(1, "C02FK1ABQ6L4", "bob.li@example.com")])
    assert outcome.created == 1
    assert len(snow.calls_to("POST", "/api/now/identifyreconcile")) == 3
    assert 7.0 in recorded_sleeps  # the server said when: exactly that
    assert len(recorded_sleeps) == 3  # 502 on the lookup, 429, 503
    [post] = [c for c in snow.calls_to("POST") if c.json["items"][0]["values"].get("assigned_to")][-1:]
    assert post.json["items"][0]["values"]["assigned_to"] == "u-bob"


def test_persistent_5xx_gives_up_with_an_error(snow: FakeServiceNow, recorded_sleeps: list[float]) -> None:
    snow.script += [("POST", "/api/now/identifyreconcile", (500, {}, {"error": "boom"}))] * 5
    with pytest.raises(HttpError, match="gave up"):
        sink_for(snow).push_records([asset(1, "C02FK1ABQ6L4")])
    assert len(snow.calls_to("POST")) == 5


def test_oauth_client_credentials(snow: FakeServiceNow) -> None:
    snow.bearer = "tok-123"
    sink = sink_for(snow, auth="oauth", client_id="cid", client_secret="secret", username=None, password=None)
    assert sink.push_records([asset(1, "C02FK1ABQ6L4")]).created == 1
    [token] = snow.calls_to("POST", "/oauth_token.do")
    assert b"grant_type=client_credentials" in token.body
    assert snow.calls_to("POST", "/api/now/identifyreconcile")[0].headers["authorization"] == "Bearer tok-123"


def test_kinds_without_a_class_and_records_without_identity_are_skipped(snow: FakeServiceNow) -> None:
    sink = sink_for(snow)
    assert sink.accepts(asset(1, "X", kind="mobile")) is not None
    assert sink.accepts(GoldenRecord(2, "asset", "active", {"kind": "laptop"}, {})) is not None
    assert sink.accepts(asset(3, "X", kind="server")) is None
    assert sink_for(snow, default_class="cmdb_ci_hardware").accepts(asset(1, "X", kind="mobile")) is None


def test_plan_makes_no_calls(snow: FakeServiceNow) -> None:
    planned = sink_for(snow).plan_records([asset(1, "C02FK1ABQ6L4", "bob.li@example.com")])
    assert [c.method for c in planned] == ["GET", "POST"]
    assert planned[1].body["items"][0]["values"]["assigned_to"] == "<sys_id of sys_user bob.li@example.com>"
    assert snow.calls == []


def test_settings_check_auth_and_fields() -> None:
    with pytest.raises(ValueError, match="username and password"):
        ServiceNowSettings.model_validate({"base_url": "https://x"})
    with pytest.raises(ValueError, match="unknown asset field"):
        ServiceNowSettings.model_validate({"base_url": "https://x", "username": "u", "password": "p",
                                           "fields": {"serail_number": "serial_number"}})
