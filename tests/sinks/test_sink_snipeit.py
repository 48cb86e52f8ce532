"""The Snipe-IT sink against a local server speaking Snipe-IT API v1 shapes (real HTTP, real sockets)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from itam_sync.connectors.sinks.snipeit.sink import SnipeItSettings, SnipeItSink
from publish_helpers import FakeSnipeIt

from itam_sync.publish.sinks.base import GoldenRecord
from itam_sync.sdk.errors import HttpError


def asset(eid: int, serial: str, **values: object) -> GoldenRecord:
    base = {"kind": "laptop", "serial_number": serial, "hostname": f"lt-{eid}", "model": "MacBook Air M1",
            "lifecycle_state": "deployed", "purchase_cost": 1349.0, "purchase_date": "2023-03-02",
            "warranty_end": "2026-03-01", "order_number": "PO-2023-0177", "assigned_to": "bob.li@example.com"}
    merged = {k: v for k, v in {**base, **values}.items() if v is not None}
    return GoldenRecord(eid, "asset", "active", merged, {k: "procurement" for k in merged})


@pytest.fixture
def snipe() -> Iterator[FakeSnipeIt]:
    with FakeSnipeIt() as server:
        yield server


def sink_for(server: FakeSnipeIt, **settings: object) -> SnipeItSink:
    cfg = SnipeItSettings.model_validate({"base_url": server.url, "token": "snipe-token", "page_size": 2,
                                          "model_category_id": 2, **settings})
    return SnipeItSink("snipe", cfg)


def test_creates_missing_hardware_with_model_status_user_cost_and_warranty(snipe: FakeSnipeIt) -> None:
    for i in range(3):
        snipe.add_user(f"other{i}@example.com")
    bob = snipe.add_user("bob.li@example.com", "bob.li")
    outcome = sink_for(snipe).push_records([asset(1, "5CG1234XYZ", asset_tag="IT-0042")])
    assert (outcome.created, outcome.failed) == (1, [])
    [created] = snipe.calls_to("POST", "/api/v1/hardware")
    body = created.json
    assert body["serial"] == "5CG1234XYZ" and body["name"] == "lt-1" and body["asset_tag"] == "IT-0042"
    assert body["status_id"] == 1  # deployed -> "Ready to Deploy", looked up by name
    assert body["purchase_cost"] == 1349.0 and body["purchase_date"] == "2023-03-02"
    assert body["warranty_months"] == 36  # 2023-03-02 .. 2026-03-01
    assert body["order_number"] == "PO-2023-0177"
    assert body["assigned_user"] == bob  # checked out to the holder on creation
    # The model did not exist: searched (paged), then created in the configured category.
    [model_post] = snipe.calls_to("POST", "/api/v1/models")
    assert model_post.json == {"name": "MacBook Air M1", "category_id": 2}
    assert body["model_id"] == 1
    assert created.headers["authorization"] == "Bearer snipe-token"
    assert not snipe.calls_to("DELETE")


def test_list_endpoints_are_paged_with_limit_and_offset(snipe: FakeSnipeIt) -> None:
    for i in range(4):
        snipe.add_user(f"bob.li+{i}@example.com")  # not matched by the search at all
    for i in range(3):
        snipe.add_user(f"x{i}@example.com", username=f"bob.li@example.com-{i}")  # found by the search, not exact
    target = snipe.add_user("bob.li@example.com", "bob")
    sink_for(snipe).push_records([asset(1, "SER1")])
    labels = snipe.calls_to("GET", "/api/v1/statuslabels")
    # 7 labels at limit=2: offsets 0, 2, 4, 6; the total in the body ends the paging.
    assert [c.query["offset"] for c in labels] == ["0", "2", "4", "6"]
    assert {c.query["limit"] for c in labels} == {"2"}
    users = snipe.calls_to("GET", "/api/v1/users")
    assert [c.query["offset"] for c in users] == ["0", "2"]  # 4 matches of the search, 2 pages
    assert {c.query["search"] for c in users} == {"bob.li@example.com"}
    assert snipe.calls_to("POST", "/api/v1/hardware")[0].json["assigned_user"] == target


def test_existing_asset_gets_only_the_fields_that_differ(snipe: FakeSnipeIt) -> None:
    model = snipe.add_model("MacBook Air M1")
    bob = snipe.add_user("bob.li@example.com")
    aid = snipe.add_asset("5CG1234XYZ", model, status_id=1, name="lt-1", purchase_cost=1349.0,
                          purchase_date="2023-03-02", warranty_months=36, order_number="PO-2023-0177",
                          assigned_user=bob)
    sink = sink_for(snipe)
    same = sink.push_records([asset(1, "5CG1234XYZ")])
    assert (same.unchanged, same.updated) == (1, 0)
    assert not snipe.calls_to("PATCH")  # "1,349.00" on the server is the same cost as 1349.0
    changed = sink.push_records([asset(1, "5CG1234XYZ", lifecycle_state="in_repair", purchase_cost=1299.0)])
    assert changed.updated == 1
    [patch] = snipe.calls_to("PATCH")
    assert patch.path == f"/api/v1/hardware/{aid}"
    assert patch.json == {"status_id": 5, "purchase_cost": 1299.0}  # "Out for Repair"


def test_refusals_sent_as_http_200_fail_that_record_and_the_rest_go_on(snipe: FakeSnipeIt) -> None:
    sink = sink_for(snipe, create_models=False, model_category_id=None, default_model_id=999)
    outcome = sink.push_records([asset(1, "SER1"), asset(2, "SER2", model=None)])
    assert outcome.created == 0
    assert [e for e, _ in outcome.failed] == [1, 2]
    assert "model id is invalid" in outcome.failed[0][1]
    model = snipe.add_model("MacBook Air M1")
    assert sink_for(snipe, create_models=False).push_records([asset(3, "SER3")]).created == 1
    assert snipe.assets[max(snipe.assets)]["model_id"] == model


def test_deleted_and_duplicate_serials_are_never_touched(snipe: FakeSnipeIt) -> None:
    model = snipe.add_model("MacBook Air M1")
    gone = snipe.add_asset("GONE1", model, deleted=True)
    snipe.add_asset("TWIN1", model)
    snipe.add_asset("TWIN1", model)
    outcome = sink_for(snipe).push_records([asset(1, "GONE1"), asset(2, "TWIN1")])
    assert outcome.skipped == [(1, f"serial GONE1 is deleted in Snipe-IT (asset {gone}); set restore_deleted to "
                                   "restore it")]
    assert [e for e, _ in outcome.failed] == [2]
    assert not snipe.calls_to("POST", "/api/v1/hardware") and not snipe.calls_to("PATCH")


def test_serial_is_escaped_in_the_byserial_path(snipe: FakeSnipeIt) -> None:
    sink_for(snipe).push_records([asset(1, "AB/12 34")])
    assert snipe.calls_to("GET", "/api/v1/hardware/byserial/")[0].path == "/api/v1/hardware/byserial/AB/12 34"
    assert snipe.assets[max(snipe.assets)]["serial"] == "AB/12 34"


def test_429_with_retry_after_and_5xx_are_retried(snipe: FakeSnipeIt, recorded_sleeps: list[float]) -> None:
    snipe.script += [("GET", "/api/v1/hardware/byserial/", (429, {"Retry-After": "3"}, {"status": "error"})),
                     ("POST", "/api/v1/hardware", (503, {}, b"<html>maintenance</html>"))]
    outcome = sink_for(snipe).push_records([asset(1, "SER1")])
    assert outcome.created == 1 and len(snipe.assets) == 1
    assert recorded_sleeps[0] == 3.0 and len(recorded_sleeps) == 2
    assert len(snipe.calls_to("GET", "/api/v1/hardware/byserial/")) == 2


def test_a_bad_token_fails_the_push(snipe: FakeSnipeIt) -> None:
    cfg = SnipeItSettings.model_validate({"base_url": snipe.url, "token": "wrong"})
    with pytest.raises(HttpError, match="401"):
        SnipeItSink("snipe", cfg).push_records([asset(1, "SER1")])


def test_accepts_hardware_kinds_with_a_serial_and_plans_without_calls(snipe: FakeSnipeIt) -> None:
    sink = sink_for(snipe)
    assert sink.accepts(asset(1, "S")) is None
    assert "kind" in (sink.accepts(asset(1, "S", kind="domain")) or "")
    assert "serial" in (sink.accepts(GoldenRecord(1, "asset", "active", {"kind": "laptop"}, {})) or "")
    planned = sink.plan_records([asset(1, "SER1")])
    assert [c.method for c in planned] == ["GET", "POST|PATCH"]
    assert planned[1].body["model_id"] == "<id of model MacBook Air M1>"
    assert snipe.calls == []
