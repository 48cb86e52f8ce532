"""The ServiceNow sink against the IRE answers ServiceNow documents (tests/sinks/fixtures/README.md): the request it
sends has the documented `items[]` shape, and the documented result items are counted by `inputIndices`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import responses
from itam_sync.connectors.sinks.servicenow.sink import ServiceNowSettings, ServiceNowSink
from responses import matchers

from itam_sync.publish.sinks.base import GoldenRecord

FIXTURES = Path(__file__).parent / "fixtures"
BASE = "https://example.service-now.com"
IRE = f"{BASE}/api/now/identifyreconcile"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def asset(eid: int, serial: str, hostname: str) -> GoldenRecord:
    values = {"kind": "laptop", "serial_number": serial, "hostname": hostname, "os_name": "Windows",
              "os_version": "Windows 11 23H2", "mac_addresses": ["a483e7123456"]}
    return GoldenRecord(eid, "asset", "active", values, {k: "intune" for k in values})


def sink() -> ServiceNowSink:
    return ServiceNowSink("cmdb", ServiceNowSettings.model_validate(
        {"base_url": BASE, "username": "itam", "password": "pw", "resolve_users": False}))


def test_documented_update_and_insert_items_are_counted_by_input_index() -> None:
    records = [asset(11, "5CG1234XYZ", "lt-anna-w11"), asset(12, "7QK2LM3", "lt-carl")]
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, IRE, json=fixture("servicenow_identifyreconcile_update.json"),
                 match=[matchers.query_param_matcher({"sysparm_data_source": "ItamSync"})])
        outcome = sink().push_records(records)
        sent = json.loads(rsps.calls[0].request.body or b"")
    assert sent == {"items": [
        {"className": "cmdb_ci_computer", "internal_id": "asset-11",
         "values": {"serial_number": "5CG1234XYZ", "name": "lt-anna-w11", "os": "Windows",
                    "os_version": "Windows 11 23H2", "mac_address": "a483e7123456"}},
        {"className": "cmdb_ci_computer", "internal_id": "asset-12",
         "values": {"serial_number": "7QK2LM3", "name": "lt-carl", "os": "Windows",
                    "os_version": "Windows 11 23H2", "mac_address": "a483e7123456"}}]}
    assert (outcome.created, outcome.updated, outcome.unchanged, outcome.failed, outcome.calls) == (1, 1, 0, [], 1)


def test_an_item_answered_in_another_order_is_matched_by_input_indices() -> None:
    body = fixture("servicenow_identifyreconcile_update.json")
    body["result"]["items"].reverse()  # the INSERT (inputIndices [1]) first
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, IRE, json=body)
        outcome = sink().push_records([asset(11, "5CG1234XYZ", "lt-anna-w11"), asset(12, "7QK2LM3", "lt-carl")])
    assert (outcome.created, outcome.updated, outcome.failed) == (1, 1, [])


def test_a_partial_payload_is_not_counted_as_written_and_is_sent_again() -> None:
    """ServiceNow's /enhanced example: INSERT_AS_PARTIAL, sysId Unknown, MISSING_MATCHING_ATTRIBUTES as a
    warning and no errors. Nothing was written to the CMDB, so the record fails and the next push retries it."""
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, IRE, json=fixture("servicenow_identifyreconcile_partial.json"))
        outcome = sink().push_records([asset(11, "5CG1234XYZ", "lt-anna-w11")])
    assert (outcome.created, outcome.updated, outcome.unchanged) == (0, 0, 0)
    assert outcome.failed == [(11, "CMDB operation INSERT_AS_PARTIAL for the CI")]
