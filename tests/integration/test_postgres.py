"""The same sync on a real PostgreSQL server gives the same golden records as on SQLite."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.tests_helpers import Demo, make_demo

pytestmark = pytest.mark.postgres


def _golden(demo: Demo) -> dict[str, object]:
    assets = json.loads(demo.cli("export", "--entity", "assets").output)
    people = json.loads(demo.cli("export", "--entity", "people").output)
    return {"assets": sorted(json.dumps(a["fields"], sort_keys=True) for a in assets),
            "people": sorted(json.dumps(p["fields"], sort_keys=True) for p in people)}


def test_demo_on_postgres_matches_sqlite(demo: Demo, postgres_url: str) -> None:
    assert demo.cli("run", "--full", "-q").exit_code == 0
    on_sqlite = _golden(demo)
    demo.config.write_text(demo.config.read_text().replace(f"sqlite:///{demo.db}", postgres_url))
    result = demo.cli("run", "--full", "-q")
    assert result.exit_code == 0, result.output
    assert _golden(demo) == on_sqlite
    conflicts = json.loads(demo.cli("conflicts", "--json").output)
    assert [c["key"] for c in conflicts] == ["mac:3c18a00b7c11"]
    # Operator actions and incremental runs work there too.
    assert demo.cli("override", "C02FK1ABQ6L4", "location", "Lisbon", "--reason", "office move").exit_code == 0
    assert demo.cli("unlink", "edr/hosts/cs-a2", "--reason", "spare").exit_code == 0
    assert demo.cli("run", "-q").exit_code == 0
    ex = json.loads(demo.cli("explain", "C02FK1ABQ6L4", "--json").output)
    assert {f["field"]: f["value"] for f in ex["fields"]}["location"] == "Lisbon"
    runs = json.loads(demo.cli("runs", "--json", "--limit", "100").output)
    assert {r["status"] for r in runs} == {"success"}


# -- bulk paths: COPY, temp-table updates, = ANY(array) reads, planner statistics ------------------------------
N_BULK = 2500  # devices added to the demo: several batches per connector and past Db.grew's ANALYZE threshold


def _bulk_demo(demo: Demo, store_url: str | None) -> None:
    """The demo plus N_BULK devices seen by MDM and EDR (serials and MACs written differently), in batches of 400."""
    with (demo.data / "mdm_devices.jsonl").open("a") as fh:
        for i in range(N_BULK):
            fh.write(json.dumps({"id": f"mdm-b{i}", "deviceName": f"LT-B{i:05d}", "serialNumber": f"SNB{i:07d}",
                                 "wiFiMacAddress": f"02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                                 "ethernetMacAddress": "", "manufacturer": "Dell", "model": "Latitude 7440",
                                 "operatingSystem": "Windows", "osVersion": "10.0.22631.3737",
                                 "userPrincipalName": f"user{i % 50}@example.com", "complianceState": "compliant",
                                 "lastSyncDateTime": "2026-11-25T06:10:00Z"}) + "\n")
    with (demo.data / "edr_hosts.csv").open("a") as fh:
        for i in range(N_BULK):
            # Every fifth host reports a junk serial: it joins its MDM record by MAC alone.
            serial = "To Be Filled By O.E.M." if i % 5 == 0 else f"snb{i:07d}"
            fh.write(f"cs-b{i},lt-b{i:05d}.corp.example.com,{serial},02-00-00-{i >> 16 & 255:02X}-"
                     f"{i >> 8 & 255:02X}-{i & 255:02X},Windows,Windows 11,7.19.18702,2026-11-25T07:59:00Z,normal\n")
    text = demo.config.read_text().replace("sync:\n  deletion_guard: 0.10", "sync:\n  deletion_guard: 0.10\n"
                                                                             "  batch_size: 400")
    if store_url is not None:
        text = text.replace(f"sqlite:///{demo.db}", store_url)
    demo.config.write_text(text)


def _bulk_changes(demo: Demo) -> None:
    """30 MDM devices get a new OS version and two EDR hosts vanish: updates and missing marks in bulk."""
    changed = {f'"id": "mdm-b{j}"' for j in range(0, 300, 10)}
    mdm = demo.data / "mdm_devices.jsonl"
    mdm.write_text("".join((ln.replace("10.0.22631.3737", "10.0.26100.1") if ln[1:ln.index(",")] in changed else ln)
                           + "\n" for ln in mdm.read_text().splitlines()))
    edr = demo.data / "edr_hosts.csv"
    edr.write_text("".join(ln + "\n" for ln in edr.read_text().splitlines()
                           if not ln.startswith(("cs-b11,", "cs-b12,"))))


def _snapshot(url: str) -> dict[str, Any]:
    """The store's identity, golden records, conflicts and field-level merge log, with entity ids replaced by the
    records each entity holds (ids are allocated differently on each store)."""
    from collections import Counter

    from itam_sync.store import Store

    store = Store.open(url)
    with store.engine.connect() as c:
        records = c.exec_driver_sql("SELECT id, connector, stream, source_key, entity_id, content_hash, missing, "
                                    "fields FROM source_records").fetchall()
        members: dict[int, list[str]] = {}
        ref: dict[int, str] = {}
        for rid, conn, stream, key, eid, _, _, _ in records:
            ref[rid] = f"{conn}/{stream}/{key}"
            members.setdefault(eid, []).append(ref[rid])
        group = {eid: tuple(sorted(refs)) for eid, refs in members.items()}
        entities = {group[i]: (t, s, json.loads(g)) for i, t, s, g in c.exec_driver_sql(
            "SELECT id, entity_type, status, golden FROM entities WHERE status <> 'merged'").fetchall()}
        keys = sorted((t, k, group[e]) for t, k, e in c.exec_driver_sql(
            "SELECT entity_type, key, entity_id FROM entity_keys").fetchall())
        conflicts = sorted((ref[r], k, re.sub(r"entity \d+", "entity #", reason), status)
                           for r, k, reason, status in c.exec_driver_sql(
            "SELECT record_id, key, reason, status FROM conflicts").fetchall())
        log = Counter((group.get(e, ("gone",)), a, f, o, n, s, rule) for e, a, f, o, n, s, rule in c.exec_driver_sql(
            "SELECT entity_id, action, field, old_value, new_value, source, rule FROM merge_log "
            "WHERE action NOT IN ('link', 'merge', 'conflict')").fetchall())
        actions = Counter(r[0] for r in c.exec_driver_sql("SELECT action FROM merge_log").fetchall())
        dirty = c.exec_driver_sql("SELECT count(*) FROM dirty_entities").scalar()
    store.close()
    return {"records": sorted((ref[r[0]], r[5], bool(r[6]), json.loads(r[7])) for r in records),
            "entities": entities, "keys": keys, "conflicts": conflicts, "log": log, "actions": actions,
            "dirty": dirty}


def test_bulk_load_and_changes_on_postgres_match_sqlite(demo: Demo, postgres_url: str, tmp_path: Path) -> None:
    """A load of several batches per connector (COPY, temp-table key and update statements, array reads and the
    mid-load ANALYZEs) and a resync with changes and vanished records end in the same state on both stores."""
    _bulk_demo(demo, None)
    pg = make_demo(tmp_path / "pg")
    _bulk_demo(pg, postgres_url)
    for d in (demo, pg):
        result = d.cli("run", "--full", "-q")
        assert result.exit_code == 0, result.output
    first = _snapshot(f"sqlite:///{demo.db}")
    assert _snapshot(postgres_url) == first
    assert len(first["entities"]) > N_BULK and first["dirty"] == 0
    for d in (demo, pg):
        _bulk_changes(d)
        result = d.cli("run", "--full", "-q")
        assert result.exit_code == 0, result.output
    after = _snapshot(f"sqlite:///{demo.db}")
    assert _snapshot(postgres_url) == after
    changed = [k for k in after["log"] if k[1] == "set" and k[2] == "os_version"]
    assert len(changed) == 30 and {k[4] for k in changed} == {'"10.0.26100.1"'}
    assert sum(1 for r in after["records"] if r[2]) == 2


def test_first_load_leaves_planner_statistics_for_the_merge_read(demo: Demo, postgres_url: str) -> None:
    """After a first load on PostgreSQL the planner knows source_records (Db.grew analyzed it mid-load): the
    merge's "live records of these entities" read probes the entity_id index instead of scanning every live record
    through the (connector, missing) index, which is what it did without statistics (0.3 s per batch)."""
    from itam_sync.store import Store

    _bulk_demo(demo, postgres_url)
    assert demo.cli("run", "--full", "-q").exit_code == 0
    store = Store.open(postgres_url)
    with store.engine.connect() as c:
        analyzed = {r[0] for r in c.exec_driver_sql(
            "SELECT attname FROM pg_stats WHERE tablename='source_records'").fetchall()}
        ids = [r[0] for r in c.exec_driver_sql("SELECT id FROM entities ORDER BY id LIMIT 1000").fetchall()]
        plan = "\n".join(r[0] for r in c.exec_driver_sql(
            "EXPLAIN SELECT entity_id, connector, fields, observed_at, id FROM source_records "
            "WHERE entity_id = ANY(%s) AND missing=%s", (ids, False)).fetchall())
    store.close()
    assert {"entity_id", "connector", "missing"} <= analyzed
    assert "ix_source_records_entity_id" in plan, plan


def test_bulk_helpers_on_postgres(postgres_url: str) -> None:
    """Db's PostgreSQL bulk statements: insert-ignore skips existing rows, update sets columns and constants per
    id, delete removes exactly the given rows, and array reads span several arrays and keep `{{ }}` escapes."""
    from itam_sync.store import Store
    from itam_sync.store.repos import base

    store = Store.open(postgres_url)
    with store.begin() as repo:
        db = repo.db
        repo.entities.insert_entities([(1, "asset"), (2, "asset"), (3, "person")], None, "2026-01-01T00:00:00Z")
        db.copy_insert_ignore("entity_keys", ("entity_type", "key", "entity_id"),
                              [("asset", "serial:A", 1), ("asset", "serial:B", 2)], "")
        db.copy_insert_ignore("entity_keys", ("entity_type", "key", "entity_id"),
                              [("asset", "serial:A", 1), ("asset", "serial:C", 1)], "")
        db.copy_delete("entity_keys", ("entity_type", "key", "entity_id"), [("asset", "serial:B", 2),
                                                                           ("asset", "serial:A", 2)])
        keys = sorted(tuple(r) for r in db._exec("SELECT entity_type, key, entity_id FROM entity_keys").fetchall())
        assert keys == [("asset", "serial:A", 1), ("asset", "serial:C", 1)]
        db.copy_update("entities", ("golden", "status", "id"), [('{"x":["a\\tb\\n",null,null]}', "missing", 3),
                                                                ("{}", "active", 1)], ", merged_into=7")
        rows = sorted(tuple(r) for r in db._exec("SELECT id, golden, status, merged_into FROM entities").fetchall())
        assert rows == [(1, "{}", "active", 7), (2, "{}", "active", None),
                        (3, '{"x":["a\\tb\\n",null,null]}', "missing", 7)]
        many = list(range(1, 2 * base.PG_CHUNK + 5))
        got = list(db._in("SELECT id, '{{x}}' FROM entities WHERE id IN ({in}) ORDER BY id", many))
        assert [tuple(r) for r in got] == [(1, "{x}"), (2, "{x}"), (3, "{x}")]
    store.close()
