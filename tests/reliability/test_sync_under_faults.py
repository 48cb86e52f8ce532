"""Syncs of every sandbox connector under each fault, with the invariants checked after every one.

History: a clean full sync at population version 0 (the baseline), then the population moves to version 1
(~2% of records change, devices and people come and go) and every connector runs again under the fault.
After that run:
- a connector whose run failed left nothing behind: its cursors and staged records (content hash, missing
  flag) are exactly as before, so nothing was marked missing and the cursor did not move;
- a connector whose run succeeded holds exactly what a fault-free run holds (records, missing marks, cursors);
- no golden record was lost (every source record that still exists still feeds one) or duplicated (no two
  live golden records share a serial, instance id, e-mail, employee id, ...);
then a clean full run converges: `itam-sync export` equals that of the fault-free history (versions 0, 1).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_helpers import (  # type: ignore[import-not-found]
    StoreState,
    copy_db,
    diff_exports,
    duplicates,
    export,
    history,
    lost,
    settings_of,
    snapshot,
    sync_all,
    write_config,
)

from itam_sync import sandbox

FAULTS = [
    # (id, spec, full run?, what must have been injected)
    ("429-storms", "429:0.25@3", True, "429"),
    ("5xx", "5xx:0.25", True, "5xx"),
    ("slow", "slow:0.3@0.03s", True, "slow"),
    ("connection-resets", "reset:0.2", True, "reset"),
    ("truncated-pages", "truncate:0.08", True, "truncate"),
    ("malformed-pages", "malformed:0.08", True, "malformed"),
    ("tokens-expiring-mid-run", "token_expire:4req", True, "token_expired"),
    ("all-at-once", "429:0.05@2,5xx:0.05,slow:0.05@0.01s,reset:0.05,truncate:0.02,malformed:0.02,"
                    "token_expire:6req,seed:3", True, "5xx"),
    ("incremental-5xx-and-truncation", "5xx:0.2,truncate:0.05,seed:1", False, "truncate"),
]


def _check_run(statuses: dict[str, str], before: dict, after: dict, expected: StoreState, *,
               same_content: bool = True) -> None:
    for name, status in statuses.items():
        if name == "(merge)":
            assert status == "success", status
            continue
        if status.startswith("failed"):
            assert "\n" not in status, f"{name}: the error is not one line: {status!r}"
            assert after[name] == before[name], f"{name}: a failed run changed the store"
            continue
        assert status == "success", f"{name}: {status}"
        if same_content:
            assert after[name] == expected.snapshot[name], f"{name}: a successful run under faults differs"
        else:  # records changed while paging: same records and missing marks, content from either version
            assert ({r[:2] + r[3:] for r in after[name].records}
                    == {r[:2] + r[3:] for r in expected.snapshot[name].records}), name


@pytest.mark.parametrize(("spec", "full", "injected"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_sync_under_fault_keeps_invariants_and_converges(
        spec: str, full: bool, injected: str, sbx: sandbox.SandboxHandle, baseline: StoreState,
        reference: StoreState, tmp_path: Path, recorded_sleeps: list[float]) -> None:
    db = tmp_path / "itam.db"
    copy_db(baseline.db, db)
    config = write_config(tmp_path / "itam-sync.yaml", db)
    settings = settings_of(config)
    before = snapshot(db)
    sbx.set_version(1)
    sbx.set_faults(spec)
    statuses = sync_all(settings, full=full)
    fired = sbx.status()["injected"]
    sbx.set_faults("")
    assert fired.get(injected), f"the fault never fired: {fired}"
    after, after_export = snapshot(db), export(config)
    if full:
        _check_run(statuses, before, after, reference)
    else:  # an incremental run marks nothing missing; a failed one leaves its cursors and records alone
        for name, status in statuses.items():
            if status.startswith("failed"):
                assert after[name] == before[name], name
            elif name != "(merge)":
                assert after[name].missing == before[name].missing, name
    assert not duplicates(after_export)
    assert not lost(baseline.export, after_export, reference.export)
    if injected == "429":
        assert any(s >= 1 for s in recorded_sleeps), "the client did not honour the servers' wait headers"

    assert set(sync_all(settings).values()) == {"success"}
    final = export(config)
    assert final == reference.export, diff_exports(final, reference.export)


def test_records_changing_between_pages(sbx: sandbox.SandboxHandle, baseline: StoreState, tmp_path: Path,
                                        recorded_sleeps: list[float]) -> None:
    """Records change while a listing is being paged: a torn read, then convergence on the next clean run."""
    db = tmp_path / "itam.db"
    copy_db(baseline.db, db)
    config = write_config(tmp_path / "itam-sync.yaml", db)
    settings = settings_of(config)
    before = snapshot(db)
    sbx.set_version(1)
    sbx.set_faults("mutate_between_pages:2")
    statuses = sync_all(settings)
    status = sbx.status()
    sbx.set_faults("")
    final_version = status["version"]
    assert status["injected"].get("mutate", 0) >= 5 and final_version > 1, status
    after, after_export = snapshot(db), export(config)
    # The fault-free history of the same population: versions 0 then the final one (the same content-only
    # advances are replayed by the sandbox).
    expected = history(sbx, tmp_path / "expected", [0, final_version])
    _check_run(statuses, before, after, expected, same_content=False)
    assert not duplicates(after_export)
    assert not lost(baseline.export, after_export, expected.export)

    assert set(sync_all(settings).values()) == {"success"}
    final = export(config)
    assert final == expected.export, diff_exports(final, expected.export)
