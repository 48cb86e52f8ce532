"""Per-record work on worker processes (engine/mapwork.py, engine/workers.py): the store a sync leaves is the
same, byte for byte, with 1 worker or 2, on messy input that exercises every path a record can take.

The clock is pinned, so both stores logged the same instants and their hash chains must be equal too.
"""

from __future__ import annotations

import json
import os
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from click.testing import CliRunner

from itam_sync import clock
from itam_sync.cli import sync as sync_cli
from itam_sync.cli.main import main
from itam_sync.engine.mapwork import CHUNK
from itam_sync.engine.workers import WorkerPool

ROOT = Path(__file__).resolve().parents[2]
N = 3 * CHUNK + 37  # several chunks per stream, the last one short
EDR_HEADER = "device_id,hostname,serial_number,mac_address,platform,os_version,agent_version,last_seen,containment\n"
# What may differ between two runs of the same sync: which process ran it and how long it took.
VOLATILE = {"sync_runs": ("pid", "host", "duration_s")}


def _mdm_lines(now: clock.Clock, version: int) -> list[str]:
    seen = (now.now() - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = []
    for i in range(N):
        rec: dict[str, Any] = {
            "id": f"mdm-{i}", "deviceName": f"LT-{i:05d}", "serialNumber": f"C02W{i:07d}",
            "wiFiMacAddress": f"a4:83:e7:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
            # A dock MAC that many laptops report: an identifier shared by different things.
            "ethernetMacAddress": "3c:18:a0:0b:7c:11" if i % 97 == 5 else "",
            "manufacturer": "Apple", "model": "MacBookPro18,3", "operatingSystem": "macOS",
            "osVersion": f"14.{(i + version) % 7}" if i % 10 == 0 else "14.6",
            "userPrincipalName": f"user{i % 400}@example.com", "complianceState": "Compliant",
            "lastSyncDateTime": seen}
        if i % 211 == 7:
            rec["lastSyncDateTime"] = "not a time"  # a value the mapping cannot convert: quarantined
        if i % 301 == 11:
            del rec["id"]  # no source key: quarantined
        lines.append(json.dumps(rec))
        if i % 257 == 3:
            lines.append("{not json")  # an unreadable line: quarantined
        if i % 263 == 9:
            rec = {**rec, "osVersion": "15.0"}
            lines.append(json.dumps(rec))  # the same device twice in one export: the later line wins
    return lines


def _edr_lines(now: clock.Clock) -> list[str]:
    seen = (now.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [EDR_HEADER.strip()]
    for i in range(0, N, 2):
        serial = f"c02w{i:07d}" if i % 3 else "To Be Filled By O.E.M."  # a junk serial: matched by MAC only
        rows.append(f"cs-{i},lt-{i:05d}.corp.example.com,{serial},"
                    f"A4-83-E7-{i >> 16 & 255:02X}-{i >> 8 & 255:02X}-{i & 255:02X},Mac,macOS 14.6,7.18,{seen},normal")
    return rows


def _write(data: Path, now: clock.Clock, version: int) -> None:
    """The two exports, with the same modification times each time (a file cursor holds them)."""
    data.mkdir(exist_ok=True)
    (data / "mdm.jsonl").write_text("\n".join(_mdm_lines(now, version)) + "\n")
    (data / "edr.csv").write_text("\n".join(_edr_lines(now)) + "\n")
    stamp = now.now().timestamp() - 600 + version
    for f in ("mdm.jsonl", "edr.csv"):
        os.utime(data / f, (stamp, stamp))


def _site(tmp_path: Path, name: str, workers: int, now: clock.Clock, url: str | None = None) -> tuple[Path, Path]:
    """A config and its store (a SQLite file, or `url`); both sites read the same data folder (cursors name
    the files)."""
    d = tmp_path / name
    d.mkdir()
    data = tmp_path / "data"
    config = d / "itam-sync.yaml"
    config.write_text(f"""
store:
  url: {url or f"sqlite:///{d / 'itam.db'}"}
sync:
  workers: {workers}
  parallel_min: 1
  batch_size: 300
precedence:
  default: [mdm, edr]
  asset:
    fields:
      last_seen: {{strategy: latest}}
connectors:
  - name: mdm
    type: jsonl
    role: mdm
    mapping: {ROOT}/mappings/demo/mdm.yaml
    settings: {{path: {data / 'mdm.jsonl'}, stream: devices}}
  - name: edr
    type: csv
    role: edr
    mapping: {ROOT}/mappings/demo/edr.yaml
    settings: {{path: {data / 'edr.csv'}, stream: hosts}}
""")
    return config, d


def _cli(config: Path, *args: str) -> str:
    n = 2 if args[0] == "audit" else 1  # a group's options follow its subcommand
    result = CliRunner().invoke(main, [*args[:n], "--config", str(config), *args[n:]], catch_exceptions=False)
    assert result.exit_code in (0, 3), result.output  # 3: degraded (the quarantined values)
    return result.output


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order, less what names the process or the time a run took."""
    engine = sqlalchemy.create_engine(url)
    try:
        tables = sorted(t for t in sqlalchemy.inspect(engine).get_table_names() if t != "alembic_version")
        out = {}
        with engine.connect() as con:
            for t in tables:
                cols = [c["name"] for c in sqlalchemy.inspect(engine).get_columns(t)
                        if c["name"] not in VOLATILE.get(t, ())]
                rows = con.exec_driver_sql(f"SELECT {', '.join(cols)} FROM {t}").fetchall()
                out[t] = sorted((tuple(r) for r in rows), key=repr)
        return out
    finally:
        engine.dispose()


def _sync_twice(config: Path, d: Path, now: clock.Clock) -> list[str]:
    _write(d.parent / "data", now, 0)
    outputs = [_cli(config, "run", "--full", "-q")]
    _write(d.parent / "data", now, 1)  # a tenth of the laptops upgraded
    outputs.append(_cli(config, "run", "-q"))
    outputs.append(_cli(config, "run", "--full", "-q"))  # nothing changed: everything skipped by its hash
    return outputs


def _watch_pools(monkeypatch: pytest.MonkeyPatch, warm: bool = False) -> list[WorkerPool]:
    """The pools `itam-sync run` makes from now on; `warm`: their processes run before the first record (a
    run this small would otherwise end before they are up, mapping everything inline)."""
    made: list[WorkerPool] = []

    class Watched(WorkerPool):
        def __init__(self, workers: int | None = None) -> None:
            super().__init__(workers)
            made.append(self)
            if warm:
                self.start("itam_sync.engine.mapwork")

    monkeypatch.setattr(sync_cli, "WorkerPool", Watched)
    return made


def test_one_worker_or_two_leave_the_same_store(tmp_path: Path, frozen_clock: clock.Clock,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    one, d1 = _site(tmp_path, "one", 1, frozen_clock)
    two, d2 = _site(tmp_path, "two", 2, frozen_clock)
    _sync_twice(one, d1, frozen_clock)
    pools = _watch_pools(monkeypatch, warm=True)
    _sync_twice(two, d2, frozen_clock)
    # The two-worker store was really mapped (and merged) by other processes.
    assert [p.workers for p in pools] == [2, 2, 2] and all(p.sent > 0 for p in pools)

    a, b = _dump(f"sqlite:///{d1 / 'itam.db'}"), _dump(f"sqlite:///{d2 / 'itam.db'}")
    assert a.keys() == b.keys()
    for table in a:
        assert a[table] == b[table], table
    # The input really took every path: staged, quarantined (three reasons), repeated, conflicting.
    assert len(a["source_records"]) > N
    reasons = " ".join(str(r) for r in a["quarantine"])
    assert "not a time" in reasons and "no source key" in reasons
    assert len(a["quarantine"]) >= 3 * (N // 301)
    assert a["merge_log"], "the merge log was written"
    # Both chains verify and the exported evidence is the same.
    for config, d in ((one, d1), (two, d2)):
        assert "chain intact" in _cli(config, "audit", "verify")
        _cli(config, "audit", "export", "-o", str(d / "chain.jsonl"))
    assert (d1 / "chain.jsonl").read_text() == (d2 / "chain.jsonl").read_text()
    for entity in ("assets", "people"):
        assert _cli(one, "export", "--entity", entity) == _cli(two, "export", "--entity", entity)


@pytest.mark.postgres
def test_one_worker_or_two_leave_the_same_store_on_postgresql(tmp_path: Path, frozen_clock: clock.Clock,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              postgres_url: str) -> None:
    """PostgreSQL stages without the writer lock until its first write and writes in bulk (COPY, temp
    tables): the workers change nothing there either."""
    second = _second_database(postgres_url)
    one, d1 = _site(tmp_path, "one", 1, frozen_clock, postgres_url)
    two, d2 = _site(tmp_path, "two", 2, frozen_clock, second)
    _sync_twice(one, d1, frozen_clock)
    pools = _watch_pools(monkeypatch, warm=True)
    _sync_twice(two, d2, frozen_clock)
    assert all(p.sent > 0 for p in pools)
    a, b = _dump(postgres_url), _dump(second)
    assert a.keys() == b.keys() and a["merge_log"] and a["quarantine"]
    for table in a:
        assert a[table] == b[table], table


def _second_database(url: str) -> str:
    """An empty database beside the fixture's, on the same server."""
    import psycopg

    u = sqlalchemy.engine.make_url(url)
    name = f"{u.database}_b"
    q = dict(u.query)
    with psycopg.connect(dbname="postgres", autocommit=True, user=u.username, host=str(q["host"]),
                         port=str(q["port"])) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return u.set(database=name).render_as_string(hide_password=False)


def test_a_small_run_starts_no_process(tmp_path: Path, frozen_clock: clock.Clock,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config, d = _site(tmp_path, "small", 2, frozen_clock)
    _write(tmp_path / "data", frozen_clock, 0)
    config.write_text(config.read_text().replace("parallel_min: 1", f"parallel_min: {10 * N}"))
    pools = _watch_pools(monkeypatch)
    _cli(config, "run", "--full", "-q")
    assert [(p.workers, p.sent, p.started) for p in pools] == [(2, 0, False)]


def _die(code: int) -> int:
    os._exit(code)


def test_a_dead_worker_fails_its_work_and_the_pool_recovers() -> None:
    with WorkerPool(2) as pool:
        with pytest.raises(BrokenProcessPool):
            pool.submit(_die, 3).result()
        assert pool.submit(abs, -7).result() == 7  # fresh processes, not the same error forever


def _explode(x: int) -> int:
    raise ValueError(f"bad {x}")


def test_an_error_in_a_worker_reaches_the_caller() -> None:
    with WorkerPool(2) as pool:
        fut = pool.submit(_explode, 3)
        with pytest.raises(ValueError, match="bad 3"):
            fut.result()
        assert list(pool.map_ordered(abs, [-3, 2, -1, 5], ahead=2)) == [3, 2, 1, 5]
    inline = WorkerPool(1)
    assert not inline.parallel and list(inline.map_ordered(abs, [-1, -2])) == [1, 2]
    with pytest.raises(ValueError, match="bad 4"):
        inline.submit(_explode, 4).result()
