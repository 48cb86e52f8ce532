"""The store goes wrong under a run: locked by another writer beyond the busy timeout, or the disk fills up.

Either way `itam-sync run` ends with a clear error line (no traceback as the last word), exits non-zero, and
the store is intact: integrity check passes, nothing a failed run touched changed, and the next run (lock
released, space back) converges to the fault-free state.

The busy timeout comes from the store URL (`sqlite:///itam.db?timeout=0.3` here; default 60 s). The full disk is a
file size limit (RLIMIT_FSIZE, set in the child before exec, with SIGXFSZ ignored so writes fail with EFBIG
instead of killing the process): SQLite cannot grow its write-ahead log past it.
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_helpers import (  # type: ignore[import-not-found]
    StoreState,
    copy_db,
    diff_exports,
    duplicates,
    export,
    integrity_ok,
    settings_of,
    snapshot,
    sync_all,
    write_config,
)

from itam_sync import sandbox


def _itam(*args: str, preexec_fn: object = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "itam_sync", *args], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy(), preexec_fn=preexec_fn)  # type: ignore[arg-type]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("error:", "busy:"))]


@pytest.mark.slow
def test_locked_store_gives_a_clear_error_and_changes_nothing(sbx: sandbox.SandboxHandle, baseline: StoreState,
                                                              reference: StoreState, tmp_path: Path) -> None:
    db = tmp_path / "itam.db"
    copy_db(baseline.db, db)
    config = write_config(tmp_path / "itam-sync.yaml", db, busy_timeout=0.3)
    sbx.set_version(1)
    before, before_export = snapshot(db), export(config)
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer's open transaction, held far beyond the timeout
        holder.execute("UPDATE sync_runs SET error = error WHERE id = 1")
        result = _itam("run", "-c", str(config), "--full", "-q", "--no-wait")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 1, result.stderr
    lines = _error_lines(result.stderr)
    assert lines and all("locked" in line for line in lines), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == len(settings_of(config).connectors) + 1  # each connector, then the merge: one line each
    assert integrity_ok(db)
    assert snapshot(db) == before and export(config) == before_export

    done = _itam("run", "-c", str(config), "--full", "-q", "--no-wait")
    assert done.returncode == 0, done.stderr
    final = export(config)
    assert final == reference.export, diff_exports(final, reference.export)


def _file_size_limit(limit: int) -> object:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_full_disk_gives_a_clear_error_and_keeps_the_store_intact(sbx: sandbox.SandboxHandle, baseline: StoreState,
                                                                  reference: StoreState, tmp_path: Path) -> None:
    db = tmp_path / "itam.db"
    copy_db(baseline.db, db)
    config = write_config(tmp_path / "itam-sync.yaml", db)
    sbx.set_version(1)
    before = snapshot(db)
    result = _itam("run", "-c", str(config), "--full", "-q", "--no-wait", preexec_fn=_file_size_limit(96 * 1024))
    assert result.returncode == 1, result.stderr
    lines = _error_lines(result.stderr)
    assert lines, result.stderr
    assert "disk" in lines[-1] and "store is unchanged" in lines[-1], result.stderr
    assert not result.stderr.rstrip().splitlines()[-1].startswith(" "), "the last word is a traceback"

    assert integrity_ok(db)
    after = snapshot(db)
    for name, state in after.items():  # each connector: untouched, or exactly a complete fault-free run
        assert state in (before[name], reference.snapshot[name]), name
    assert after != reference.snapshot, "the file size limit never bit"
    assert not duplicates(export(config))

    assert set(sync_all(settings_of(config)).values()) == {"success"}
    final = export(config)
    assert final == reference.export, diff_exports(final, reference.export)
