"""The engine's key scenarios, run again on a real PostgreSQL server.

Each scenario is the SQLite test itself (demo sync, incremental, deletion guard, failed run, quarantine,
override, link/unlink, merge --dry-run, export, explain), handed a demo whose store is a fresh PostgreSQL
database. The store is switched the way an operator would: ITAM_SYNC_DATABASE_URL, which wins over the
config file's `store.url` (the config still says SQLite, and no SQLite file may appear).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import test_demo_sync as demo_sync  # type: ignore[import-not-found]
import test_operator_commands as operator_commands  # type: ignore[import-not-found]
import test_sync_semantics as sync_semantics  # type: ignore[import-not-found]

from itam_sync.engine.runner import merge_pending
from itam_sync.settings import DATABASE_URL_ENV
from itam_sync.store import Store
from itam_sync.store.leases import MERGE_LEASE, Lease
from tests.tests_helpers import Demo

pytestmark = pytest.mark.postgres

SCENARIOS = [
    (demo_sync, "test_demo_full_sync_builds_golden_records"),
    (demo_sync, "test_demo_shared_dock_mac_is_a_conflict_not_a_merge"),
    (demo_sync, "test_demo_summary_prints_counts_and_log"),
    (sync_semantics, "test_incremental_run_skips_unchanged_and_logs_exact_change"),
    (sync_semantics, "test_full_run_marks_unseen_missing_behind_the_deletion_guard"),
    (sync_semantics, "test_empty_full_pull_is_guarded"),
    (sync_semantics, "test_failed_run_marks_nothing_keeps_cursor_and_exits_non_zero"),
    (sync_semantics, "test_malformed_record_is_quarantined_with_reason"),
    (operator_commands, "test_unlink_and_link_hold_across_later_runs"),
    (operator_commands, "test_link_resolves_a_conflict"),
    (operator_commands, "test_override_wins_logs_actor_and_expires"),
    (operator_commands, "test_merge_dry_run_shows_a_rules_change_then_merge_applies_it"),
    (operator_commands, "test_merge_applies_a_mapping_change_without_calling_sources"),
    (operator_commands, "test_explain_shows_winner_age_and_losers"),
    (operator_commands, "test_export_json_and_csv_carry_fields_and_sources"),
]


@dataclass
class PgDemo(Demo):
    """The demo, with its store on PostgreSQL through the environment."""

    url: str = ""

    def store(self) -> Store:
        return Store.open(self.url)


@pytest.fixture
def pg_demo(demo: Demo, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> PgDemo:
    monkeypatch.setenv(DATABASE_URL_ENV, postgres_url)
    return PgDemo(demo.config, demo.data, demo.db, postgres_url)


@pytest.mark.parametrize("module,name", SCENARIOS, ids=[n.removeprefix("test_") for _, n in SCENARIOS])
def test_scenario_on_postgres(pg_demo: PgDemo, module: object, name: str) -> None:
    getattr(module, name)(pg_demo)
    assert not Path(pg_demo.db).exists(), "the env URL must win over the config's SQLite store"


def test_runs_and_status_on_postgres(pg_demo: PgDemo) -> None:
    assert pg_demo.cli("run", "--full", "-q").exit_code == 0
    runs = json.loads(pg_demo.cli("runs", "--json", "--limit", "50").output)
    assert {r["connector"] for r in runs} == {"hr", "okta-users", "procurement", "mdm", "edr", "(merge)"}
    assert {r["status"] for r in runs} == {"success"}
    status = json.loads(pg_demo.cli("status", "--json").output)
    by_name = {c["connector"]: c for c in status["connectors"]}
    assert by_name["mdm"]["last_run"]["status"] == "success" and by_name["mdm"]["lease"] is None
    assert by_name["mdm"]["next_incremental"]  # "every 30m" in the demo config


def test_merge_waits_for_the_merge_lease_on_postgres(pg_demo: PgDemo) -> None:
    """Merging never runs twice at once: a second merge waits for the first worker's lease."""
    assert pg_demo.cli("run", "--full", "-q").exit_code == 0
    store = pg_demo.store()
    try:
        other = Lease(store, MERGE_LEASE, 30, holder="otherhost:1:abc")
        other.acquire(wait=0)
        waited: list[str] = []
        with pytest.raises(Exception, match="merge not started: lease 'merge' is held by otherhost:1:abc"):
            merge_pending(pg_demo.settings(), store, lease_wait=0.5, on_lease_wait=lambda h: waited.append(h.holder))
        assert waited == ["otherhost:1:abc"]
        other.release()
        merge_pending(pg_demo.settings(), store, lease_wait=0)
    finally:
        store.close()
