"""`itam-sync push` end to end: the demo's golden records to local ServiceNow, Snipe-IT and webhook servers.

Each sink pushes only what changed since its last successful push (the merge log is the change feed), a
second push with no changes sends nothing, a dry run sends nothing and changes nothing, a failure keeps the
position, and every real push is a run record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from publish_helpers import FakeServiceNow, FakeSnipeIt, RecordingServer

SNOW_USERS = [
    {"sys_id": "u-ana", "email": "ana.souza@example.com", "user_name": "ana", "employee_number": "E1001"},
    {"sys_id": "u-bob", "email": "bob.li@example.com", "user_name": "bob", "employee_number": "E1002"},
    {"sys_id": "u-dev", "email": "dev.patel@example.com", "user_name": "dev", "employee_number": "E1004"},
]


@dataclass
class Far:
    snow: FakeServiceNow
    snipe: FakeSnipeIt
    hook: RecordingServer

    def counts(self) -> tuple[int, int, int]:
        return len(self.snow.calls), len(self.snipe.calls), len(self.hook.calls)


@pytest.fixture
def far() -> Iterator[Far]:
    with ExitStack() as stack:
        snow = stack.enter_context(FakeServiceNow(SNOW_USERS))
        snipe = stack.enter_context(FakeSnipeIt())
        for email_addr in ("bob.li@example.com", "dev.patel@example.com", "ana.souza@example.com"):
            snipe.add_user(email_addr)
        hook = stack.enter_context(RecordingServer())
        yield Far(snow, snipe, hook)


def configure(demo, far: Far, monkeypatch: pytest.MonkeyPatch, store_url: str | None = None) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SN_PASSWORD", "pw")
    monkeypatch.setenv("SNIPE_TOKEN", "snipe-token")
    monkeypatch.setenv("HOOK_SECRET", "hook-secret")
    text = demo.config.read_text()
    if store_url:
        text = text.replace(f"sqlite:///{demo.db}", store_url)
    demo.config.write_text(text + f"""
sinks:
  - name: cmdb
    type: servicenow
    settings:
      base_url: {far.snow.url}
      username: itam
      password: ${{env:SN_PASSWORD}}
      user_page_size: 2
  - name: snipe
    type: snipeit
    settings:
      base_url: {far.snipe.url}
      token: ${{env:SNIPE_TOKEN}}
      model_category_id: 2
      page_size: 3
  - name: hook
    type: webhook
    settings:
      url: {far.hook.url}/events
      secret: ${{env:HOOK_SECRET}}
      batch_size: 40
""")


def push_runs(demo) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    runs = json.loads(demo.cli("runs", "--json", "--limit", "500").output)
    return [r for r in runs if r["mode"] == "push"]


def hook_event_ids(hook: RecordingServer) -> list[int]:
    return [e["id"] for c in hook.calls for e in c.json["events"]]


def max_log_id(demo) -> int:  # type: ignore[no-untyped-def]
    store = demo.store()
    with store.begin() as repo:
        n = repo.log.max_log_id()
    store.close()
    return n


def test_push_sends_what_changed_once_and_a_dry_run_sends_nothing(demo, far: Far,  # type: ignore[no-untyped-def]
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert demo.cli("run", "--full", "-q").exit_code == 0
    configure(demo, far, monkeypatch)

    dry = demo.cli("push", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "cmdb (servicenow), dry run: 10 entities changed since merge-log id 0" in dry.output
    assert "POST " + far.snow.url + "/api/now/identifyreconcile?sysparm_data_source=ItamSync" in dry.output
    assert "GET " + far.snipe.url + "/api/v1/hardware/byserial/C02FK1ABQ6L4" in dry.output
    assert f"POST {far.hook.url}/events" in dry.output
    assert far.counts() == (0, 0, 0)  # a dry run sends nothing ...
    assert push_runs(demo) == []  # ... and records nothing
    store = demo.store()
    with store.begin() as repo:
        assert repo.publish.sink_state("cmdb") == (0, [])
    store.close()

    first = demo.cli("push")
    assert first.exit_code == 0, first.output
    # ServiceNow: one IRE batch with the laptops and the server, the holders resolved to sys_ids.
    [ire] = far.snow.calls_to("POST", "/api/now/identifyreconcile")
    items = ire.json["items"]
    serials = {i["values"].get("serial_number") for i in items}
    assert {"C02FK1ABQ6L4", "5CG1234XYZ", "FVFXC2ABJ1WK", "PF3ABCDE"} <= serials
    by_serial = {i["values"].get("serial_number"): i["values"] for i in items}
    assert by_serial["C02FK1ABQ6L4"]["assigned_to"] == "u-bob"  # the MDM's fresher holder won
    assert len(far.snow.cis) == len(items)
    # Snipe-IT: every hardware asset with a serial, created with its model, status, holder and warranty.
    created = {c.json["serial"]: c.json for c in far.snipe.calls_to("POST", "/api/v1/hardware")}
    assert created["5CG1234XYZ"]["warranty_months"] == 36
    assert created["5CG1234XYZ"]["assigned_user"] == 2  # dev.patel
    assert created["PF9NEW001"]["status_id"] == 2  # ordered -> Pending
    assert not far.snipe.calls_to("DELETE") and not far.snow.calls_to("DELETE")
    # Webhook: every merge-log row once, in order, in signed batches of at most 40.
    ids = hook_event_ids(far.hook)
    high = max_log_id(demo)
    assert ids == list(range(1, high + 1))
    for call in far.hook.calls:
        assert len(call.json["events"]) <= 40
        assert call.headers["x-itam-signature-256"] == "sha256=" + hmac.new(
            b"hook-secret", call.body, hashlib.sha256).hexdigest()
    runs = push_runs(demo)
    assert sorted((r["connector"], r["status"]) for r in runs) == [("cmdb", "success"), ("hook", "success"),
                                                                  ("snipe", "success")]
    assert all(r["type"] in ("servicenow", "snipeit", "webhook") for r in runs)

    # A second push with no changes sends nothing (and is still a run).
    before = far.counts()
    second = demo.cli("push")
    assert second.exit_code == 0, second.output
    assert far.counts() == before
    assert len(push_runs(demo)) == 6

    # One operator change: only that entity (and only its new events) goes out.
    assert demo.cli("override", "C02FK1ABQ6L4", "hostname", "lt-ana-new", "--reason", "renamed").exit_code == 0
    third = demo.cli("push")
    assert third.exit_code == 0, third.output
    [ire2] = far.snow.calls_to("POST", "/api/now/identifyreconcile")[1:]
    assert [i["values"]["serial_number"] for i in ire2.json["items"]] == ["C02FK1ABQ6L4"]
    assert ire2.json["items"][0]["values"]["name"] == "lt-ana-new"
    new_snipe = far.snipe.calls[before[1]:]
    assert [(c.method, c.path) for c in new_snipe if c.method != "GET"] == [("PATCH", "/api/v1/hardware/101")]
    assert new_snipe[-1].json == {"name": "lt-ana-new"}
    new_events = [e for c in far.hook.calls[before[2]:] for e in c.json["events"]]
    assert [e["id"] for e in new_events] == list(range(high + 1, max_log_id(demo) + 1))
    assert {(e["type"], e["field"], e["new"], e["source"]) for e in new_events} == {
        ("override_set", "hostname", "lt-ana-new", "manual"), ("field_changed", "hostname", "lt-ana-new", "manual")}


def test_a_failed_push_keeps_its_position_and_the_next_one_catches_up(demo, far: Far,  # type: ignore[no-untyped-def]
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       recorded_sleeps: list[float]) -> None:
    assert demo.cli("run", "--full", "-q").exit_code == 0
    configure(demo, far, monkeypatch)
    far.snow.script += [("POST", "/api/now/identifyreconcile", (500, {}, {"error": "down"}))] * 5
    far.hook.script += [("POST", "/events", (200, {}, {})), ("POST", "/events", (400, {}, {"error": "no"}))]
    failed = demo.cli("push", "--sink", "cmdb", "--sink", "hook")
    assert failed.exit_code == 1
    assert "push of sink 'cmdb' failed (run " in failed.output
    assert "gave up on POST" in failed.output and "HTTP 500" in failed.output
    assert "push of sink 'hook' failed" in failed.output and "400" in failed.output
    assert sorted((r["connector"], r["status"]) for r in push_runs(demo)) == [("cmdb", "failed"),
                                                                             ("hook", "failed")]
    store = demo.store()
    with store.begin() as repo:
        assert repo.publish.sink_state("cmdb") == (0, [])  # nothing delivered: the position did not move
        assert repo.publish.sink_state("hook")[0] == 40  # the first batch was delivered: never resent
    store.close()
    assert len(far.snow.cis) == 0

    again = demo.cli("push", "--sink", "cmdb", "--sink", "hook")
    assert again.exit_code == 0, again.output
    assert len(far.snow.cis) == 8
    # 1-40 delivered once; 41-80 refused (400) and sent again with the rest by the next push.
    high = max_log_id(demo)
    assert high > 40
    assert hook_event_ids(far.hook) == [*range(1, min(80, high) + 1), *range(41, high + 1)]


def test_records_the_far_side_refuses_are_retried_by_the_next_push(demo, far: Far,  # type: ignore[no-untyped-def]
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert demo.cli("run", "--full", "-q").exit_code == 0
    configure(demo, far, monkeypatch)
    far.snow.refuse.add("PF3ABCDE")
    partial = demo.cli("push", "--sink", "cmdb")
    assert partial.exit_code == 1
    assert "partial: cmdb: 1 record(s) refused by the far side, retried by the next push" in partial.output
    assert "MISSING_MATCHING_ATTRIBUTES" in partial.output
    assert push_runs(demo)[0]["status"] == "partial"
    far.snow.refuse.clear()
    retry = demo.cli("push", "--sink", "cmdb", "--json")
    assert retry.exit_code == 0, retry.output
    [result] = json.loads(retry.output)
    assert (result["entities"], result["created"], result["failed"]) == (1, 1, 0)
    [_, ire] = far.snow.calls_to("POST", "/api/now/identifyreconcile")
    assert [i["values"]["serial_number"] for i in ire.json["items"]] == ["PF3ABCDE"]


def test_disabled_and_unknown_sinks_are_clear_errors(demo, far: Far,  # type: ignore[no-untyped-def]
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from itam_sync.cli.main import main

    configure(demo, far, monkeypatch)
    result = demo.cli("push", "--sink", "nope")
    assert result.exit_code == 2
    assert "no sink named 'nope' in the config (configured: cmdb, snipe, hook)" in result.output
    demo.config.write_text(demo.config.read_text().replace("  - name: hook\n", "  - name: hook\n    enabled: false\n"))
    disabled = demo.cli("push", "--sink", "hook")
    assert disabled.exit_code == 1
    assert "sink 'hook' is disabled in the config (set enabled: true to push it)" in disabled.output
    listing = CliRunner().invoke(main, ["sinks"])
    assert listing.exit_code == 0
    assert [line.split()[0] for line in listing.output.splitlines()][:3] == ["servicenow", "snipeit", "webhook"]


@pytest.mark.postgres
def test_push_on_postgres(demo, far: Far, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                          postgres_url: str) -> None:
    configure(demo, far, monkeypatch, store_url=postgres_url)
    assert demo.cli("run", "--full", "-q").exit_code == 0
    first = demo.cli("push", "--sink", "cmdb", "--sink", "hook")
    assert first.exit_code == 0, first.output
    assert len(far.snow.cis) == 8
    n_events = len(hook_event_ids(far.hook))
    assert n_events > 40
    before = far.counts()
    assert demo.cli("push", "--sink", "cmdb", "--sink", "hook").exit_code == 0
    assert far.counts() == before
    assert demo.cli("override", "5CG1234XYZ", "os_version", "11", "--reason", "upgrade").exit_code == 0
    assert demo.cli("push", "--sink", "cmdb", "--sink", "hook").exit_code == 0
    [_, ire] = far.snow.calls_to("POST", "/api/now/identifyreconcile")
    assert [i["values"]["serial_number"] for i in ire.json["items"]] == ["5CG1234XYZ"]
    assert len(hook_event_ids(far.hook)) == n_events + 2  # the override (with its reason) and the field change


def test_a_second_concurrent_push_of_a_sink_is_refused(demo, far: Far,  # type: ignore[no-untyped-def]
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from itam_sync.publish.sinks.push import sink_lease
    from itam_sync.store.leases import Lease

    assert demo.cli("run", "--full", "-q").exit_code == 0
    configure(demo, far, monkeypatch)
    store = demo.store()
    other = Lease(store, sink_lease("cmdb"), 60)
    other.acquire(wait=0)  # another worker is pushing cmdb
    try:
        busy = demo.cli("push", "--sink", "cmdb", "--sink", "hook")
        assert busy.exit_code == 1
        assert "sink 'cmdb' is already being pushed: lease 'sink:cmdb' is held by" in busy.output
        assert far.snow.calls == [] and far.hook.calls  # the other sink is not held up
    finally:
        other.release()
        store.close()
    assert demo.cli("push", "--sink", "cmdb").exit_code == 0
    assert len(far.snow.cis) == 8
