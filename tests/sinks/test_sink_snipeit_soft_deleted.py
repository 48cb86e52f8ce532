"""Issue #14: the Snipe-IT sink must find soft-deleted hardware instead of creating a second asset.

Snipe-IT's `GET /api/v1/hardware/byserial/{serial}` leaves soft-deleted assets out unless `deleted=true` is
sent (grokability/snipe-it app/Http/Controllers/Api/AssetsController.php, showBySerial: `withTrashed()` only
then); without them the sink saw "no asset" and POSTed a duplicate. Restore is
`POST /api/v1/hardware/{id}/restore` (same controller, `restore`). Shapes: tests/sinks/fixtures/README.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from itam_sync.connectors.sinks.snipeit.sink import SnipeItSettings, SnipeItSink
from responses import matchers

from itam_sync.publish.sinks.base import GoldenRecord

FIXTURES = Path(__file__).parent / "fixtures"
BASE = "https://snipe.example.test"
SERIAL = "C02FK1ABQ6L4"
BYSERIAL = f"{BASE}/api/v1/hardware/byserial/{SERIAL}"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def laptop(**values: Any) -> GoldenRecord:
    fields = {"kind": "laptop", "serial_number": SERIAL, "hostname": "lt-7-new", "model": "MacBook Air M1",
              "purchase_cost": 1349.0, "purchase_date": "2023-03-02", "order_number": "PO-2023-0177", **values}
    return GoldenRecord(7, "asset", "active", fields, {k: "jamf" for k in fields})


def sink(**settings: Any) -> SnipeItSink:
    return SnipeItSink("snipe", SnipeItSettings.model_validate({"base_url": BASE, "token": "snipe-token",
                                                                "assign_users": False, **settings}))


@pytest.fixture
def snipe() -> Iterator[responses.RequestsMock]:
    """A Snipe-IT v6+/v7 server whose only asset with the serial is soft-deleted."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(BYSERIAL, json=load("snipeit_byserial_soft_deleted.json"),
                 match=[matchers.query_param_matcher({"deleted": "true"})])
        rsps.get(BYSERIAL, json=load("snipeit_asset_does_not_exist.json"), match=[matchers.query_param_matcher({})])
        rsps.get(f"{BASE}/api/v1/models", json={"total": 1, "rows": [{"id": 4, "name": "MacBook Air M1"}]})
        rsps.get(f"{BASE}/api/v1/statuslabels",
                 json={"total": 1, "rows": [{"id": 1, "name": "Ready to Deploy", "type": "deployable"}]})
        rsps.post(f"{BASE}/api/v1/hardware", json={"status": "success", "payload": {"id": 999}})
        rsps.patch(f"{BASE}/api/v1/hardware/117",
                   json={"status": "success", "messages": "Asset updated successfully.", "payload": {"id": 117}})
        yield rsps


def calls(rsps: responses.RequestsMock, method: str, url: str) -> list[Any]:
    return [c for c in rsps.calls if c.request.method == method and c.request.url.split("?")[0] == url]


def test_a_soft_deleted_asset_is_found_and_reported_never_duplicated(snipe: responses.RequestsMock) -> None:
    outcome = sink().push_records([laptop()])
    assert calls(snipe, "POST", f"{BASE}/api/v1/hardware") == []  # no second asset with the same serial
    [lookup] = calls(snipe, "GET", BYSERIAL)
    assert lookup.request.url == f"{BYSERIAL}?deleted=true"
    assert outcome.created == 0 and outcome.updated == 0
    assert outcome.skipped == [(7, f"serial {SERIAL} is deleted in Snipe-IT (asset 117); set restore_deleted "
                                   "to restore it")]


def test_restore_deleted_restores_then_updates_what_differs(snipe: responses.RequestsMock) -> None:
    snipe.post(f"{BASE}/api/v1/hardware/117/restore", json=load("snipeit_restore_success.json"))
    outcome = sink(restore_deleted=True).push_records([laptop()])
    assert calls(snipe, "POST", f"{BASE}/api/v1/hardware") == []
    assert len(calls(snipe, "POST", f"{BASE}/api/v1/hardware/117/restore")) == 1
    [patch] = calls(snipe, "PATCH", f"{BASE}/api/v1/hardware/117")
    assert json.loads(patch.request.body) == {"name": "lt-7-new"}  # the rest already matched
    assert (outcome.updated, outcome.created, outcome.failed, outcome.skipped) == (1, 0, [], [])


def test_a_refused_restore_fails_that_record_with_snipe_its_reason(snipe: responses.RequestsMock) -> None:
    snipe.post(f"{BASE}/api/v1/hardware/117/restore", json=load("snipeit_restore_refused.json"))
    outcome = sink(restore_deleted=True).push_records([laptop()])
    assert calls(snipe, "POST", f"{BASE}/api/v1/hardware") == []
    assert calls(snipe, "PATCH", f"{BASE}/api/v1/hardware/117") == []
    [(entity, reason)] = outcome.failed
    assert entity == 7 and "asset tag must be unique" in reason


def test_a_live_asset_next_to_a_deleted_one_is_the_one_updated(snipe: responses.RequestsMock) -> None:
    both = load("snipeit_byserial_soft_deleted.json")
    live = {**both["rows"][0], "id": 118, "deleted_at": None, "name": "lt-7-new"}
    snipe.replace(responses.GET, BYSERIAL, json={"total": 2, "rows": [both["rows"][0], live]},
                  match=[matchers.query_param_matcher({"deleted": "true"})])
    outcome = sink(restore_deleted=True).push_records([laptop()])
    assert outcome.unchanged == 1 and outcome.skipped == [] and outcome.failed == []
    assert not [c for c in snipe.calls if c.request.method in ("POST", "PATCH")]
