"""First-sight provenance: an entity's first merge logs ONE hash-chained `create` row, later changes one `set` row
per field, and every reader (explain, log, --as-of, web history, reports, events, audit verify/export) shows the
same per-field history for a database holding create rows, old-style `set` rows, or both.

The scenario is two small sources written at test time relative to the clock: an MDM export (JSON lines) and an
EDR export (CSV), both mapped with the demo mappings, seeing two laptops.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from itam_sync import clock
from itam_sync.cli.main import main
from itam_sync.store import Store
from itam_sync.store.chain import GENESIS, chain_rows

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ("run_id", "at", "entity_type", "entity_id", "action", "field", "old_value", "new_value", "source", "rule",
           "actor")
EDR_HEADER = "device_id,hostname,serial_number,mac_address,platform,os_version,agent_version,last_seen,containment\n"


def _iso(minutes_ago: int) -> str:
    return (clock.now() - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Site:
    """A private config, its two source files and its SQLite store."""

    config: Path
    mdm: Path
    edr: Path
    db: Path
    mdm_seen: str
    edr_seen: str
    url: str = ""

    def __post_init__(self) -> None:
        self.url = self.url or f"sqlite:///{self.db}"

    def cli(self, *args: str) -> Result:
        n = 2 if args[0] == "audit" else 1  # a group's options follow its subcommand
        result = CliRunner().invoke(main, [*args[:n], "--config", str(self.config), *args[n:]], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as db:
            return db.execute(sql, params).fetchall()

    def log(self, after: int = 0) -> list[tuple[Any, ...]]:
        """Stored merge-log rows after id `after`: (entity_id, action, field, old, new, source, rule)."""
        return self.rows("SELECT entity_id, action, field, old_value, new_value, source, rule FROM merge_log "
                         "WHERE id>? ORDER BY id", (after,))

    def max_id(self) -> int:
        return int(self.rows("SELECT coalesce(max(id), 0) FROM merge_log")[0][0])

    def copy(self, tmp: Path) -> Site:
        """The same site with a copy of its database (and a config pointing at it)."""
        db = tmp / "copy.db"
        shutil.copy(self.db, db)
        config = tmp / "copy.yaml"
        config.write_text(self.config.read_text().replace(str(self.db), str(db)))
        return Site(config, self.mdm, self.edr, db, self.mdm_seen, self.edr_seen)


def _mdm(serial: str, mac: str, name: str, user: str, os_version: str, seen: str, **extra: Any) -> str:
    return json.dumps({"id": f"mdm-{serial}", "deviceName": name, "serialNumber": serial, "wiFiMacAddress": mac,
                       "ethernetMacAddress": "", "manufacturer": "Apple", "model": "MacBookPro18,3",
                       "operatingSystem": "macOS", "osVersion": os_version, "userPrincipalName": user,
                       "complianceState": "Compliant", "lastSyncDateTime": seen, **extra}) + "\n"


def _site(tmp_path: Path) -> Site:
    mdm_seen, edr_seen = _iso(120), _iso(60)
    mdm, edr, db = tmp_path / "mdm.jsonl", tmp_path / "edr.csv", tmp_path / "itam.db"
    # batteryWear is not mapped: only the raw record (and so the content hash) holds it.
    mdm.write_text(_mdm("C02TEST0001", "a4:83:e7:00:00:01", "LT-ANA", "Ana@Example.com", "14.6.1", mdm_seen,
                        batteryWear=1e-05)
                   + _mdm("C02TEST0002", "a4:83:e7:00:00:02", "LT-BOB", "bob@example.com", "14.5", mdm_seen))
    edr.write_text(EDR_HEADER + f"cs-1,lt-ana.corp.example.com,c02test0001,A4-83-E7-00-00-01,Mac,macOS 14.6,7.18,"
                                f"{edr_seen},normal\n"
                                f"cs-2,lt-bob.corp.example.com,c02test0002,A4-83-E7-00-00-02,Mac,macOS 14.5,7.18,"
                                f"{edr_seen},normal\n")
    config = tmp_path / "itam-sync.yaml"
    config.write_text(f"""
store:
  url: sqlite:///{db}
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
    settings: {{path: {mdm}, stream: devices}}
  - name: edr
    type: csv
    role: edr
    mapping: {ROOT}/mappings/demo/edr.yaml
    settings: {{path: {edr}, stream: hosts}}
""")
    return Site(config, mdm, edr, db, mdm_seen, edr_seen)


def _first_sight(site: Site, serial: str, user: str, os_version: str) -> dict[str, list[Any]]:
    """The create row the first merge of laptop `serial` must write: {field: [value, source, rule]}."""
    name = "lt-" + ("ana" if serial.endswith("1") else "bob")
    return {
        "mdm_managed": [True, "mdm", "only-source"],
        "lifecycle_state": ["deployed", "mdm", "only-source"],
        "kind": ["laptop", "mdm", "only-source"],
        "serial_number": [serial, "mdm", "precedence:default"],
        "mac_addresses": [["a483e700000" + serial[-1]], "mdm+edr", "union"],
        "hostname": [name, "mdm", "precedence:default"],
        "manufacturer": ["Apple", "mdm", "only-source"],
        "model": ["MacBookPro18,3", "mdm", "only-source"],
        "os_name": ["macOS", "mdm", "precedence:default"],
        "os_version": [os_version, "mdm", "precedence:default"],
        "assigned_to": [user, "mdm", "only-source"],
        "compliance_state": ["compliant", "mdm", "only-source"],
        "last_seen": [site.edr_seen, "edr", "latest"],  # the newer of the two reports
        "edr_protected": [True, "edr", "only-source"],
        "fqdn": [f"{name}.corp.example.com", "edr", "only-source"],
    }


def _entity(site: Site, serial: str) -> int:
    store = Store.open(site.url)
    try:
        with store.begin() as repo:
            eid = repo.entities.entity_by_key("asset", f"serial_number:{serial}")
    finally:
        store.close()
    assert eid is not None
    return eid


def test_first_merge_is_one_create_row_and_a_later_change_one_set_row(tmp_path: Path) -> None:
    site = _site(tmp_path)
    site.cli("run", "--full", "-q")
    ana = _entity(site, "C02TEST0001")
    rows = [r for r in site.log() if r[0] == ana]
    assert [(r[1], r[2], r[3], r[5], r[6]) for r in rows] == [
        ("link", None, None, "mdm", "new entity"),
        ("link", None, None, "edr", "matched serial_number:C02TEST0001"),
        ("create", None, None, None, "first merge")]
    created = json.loads(rows[2][4])
    assert created == _first_sight(site, "C02TEST0001", "ana@example.com", "14.6.1")
    # It is the golden record as merged, with each field's rule instead of its age.
    golden = json.loads(site.rows("SELECT golden FROM entities WHERE id=?", (ana,))[0][0])
    assert {f: v[:2] for f, v in golden.items()} == {f: v[:2] for f, v in created.items()}
    # A first load writes no set rows at all: per entity two links and one create.
    assert site.rows("SELECT action, count(*) FROM merge_log GROUP BY action ORDER BY action") == [
        ("create", 2), ("link", 4)]

    # Later: one set row per changed field, never a second create row.
    high = site.max_id()
    site.mdm.write_text(site.mdm.read_text().replace('"osVersion": "14.6.1"', '"osVersion": "15.1"'))
    site.cli("run", "-q")
    assert site.log(high) == [(ana, "set", "os_version", '"14.6.1"', '"15.1"', "mdm", "precedence:default")]


def test_an_entity_that_comes_back_logs_set_rows_not_a_create_row(tmp_path: Path) -> None:
    site = _site(tmp_path)
    site.cli("run", "--full", "-q")
    bob = _entity(site, "C02TEST0002")
    mdm_text, edr_text = site.mdm.read_text(), site.edr.read_text()
    site.mdm.write_text(mdm_text.splitlines(keepends=True)[0])
    site.edr.write_text("".join(edr_text.splitlines(keepends=True)[:2]))
    high = site.max_id()
    site.cli("run", "--full", "--allow-shrink", "-q")
    gone = [r for r in site.log(high) if r[0] == bob]
    assert [r[1] for r in gone] == ["clear"] * 15 + ["missing"]
    site.mdm.write_text(mdm_text)
    site.edr.write_text(edr_text)
    high = site.max_id()
    site.cli("run", "--full", "-q")
    back = [r for r in site.log(high) if r[0] == bob and r[1] not in ("link",)]
    expected = _first_sight(site, "C02TEST0002", "bob@example.com", "14.5")
    assert [r[1] for r in back] == ["set"] * len(expected) + ["restored"]
    assert {r[2]: [json.loads(r[4]), r[5], r[6]] for r in back[:-1]} == expected
    assert all(r[3] is None for r in back[:-1])


def _to_legacy(site: Site, entity_ids: set[int]) -> None:
    """Rewrite the log as the engine before create rows wrote it for these entities (one `set` row from nothing
    per field, values as json.dumps wrote them), and rebuild the hash chain over the whole log."""
    with sqlite3.connect(site.db) as db:
        rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM merge_log ORDER BY id").fetchall()
        out: list[tuple[Any, ...]] = []
        for r in rows:
            if r[4] == "create" and r[3] in entity_ids:
                for f, (value, source, rule) in json.loads(r[7]).items():
                    out.append((*r[:4], "set", f, None, json.dumps(value, separators=(",", ":"), ensure_ascii=False),
                                source, rule, r[10]))
            else:
                out.append(tuple(r))
        chained, _ = chain_rows(GENESIS, out)
        db.execute("DELETE FROM merge_log")
        db.executemany(f"INSERT INTO merge_log ({', '.join(COLUMNS)}, prev_hash, row_hash) "
                       f"VALUES ({', '.join('?' * (len(COLUMNS) + 2))})", chained)


def _no_ids(value: Any) -> Any:
    """Drop log ids (the legacy copy numbers its rows differently) and ages (they depend on the second); tuples
    become lists."""
    if isinstance(value, dict):
        return {k: _no_ids(v) for k, v in value.items() if k not in ("id", "log_id", "age")}
    if isinstance(value, list | tuple):
        return [_no_ids(v) for v in value]
    return value


def _views(site: Site, serial: str, as_of: str) -> dict[str, Any]:
    """Everything an operator or auditor reads about one entity's history."""
    eid = _entity(site, serial)
    store = Store.open(site.url)
    try:
        with store.begin() as repo:
            web = repo.web.web_history(eid, None, 1000)
            lifecycle = [r[1:] for r in repo.log.report_field_changes("lifecycle_state") if r[1] == eid]
            owners = [r for r in repo.log.report_assignment_changes() if r[0] == eid]
            of_entity = repo.log.log_rows_of([eid])
            only_sets = repo.log.log_rows(entity_id=eid, action="set", limit=1000)
            by_source = repo.log.log_rows(entity_id=eid, source="edr", limit=1000)
            newest_three = repo.log.log_rows(entity_id=eid, limit=3)
    finally:
        store.close()
    explain = json.loads(site.cli("explain", serial, "--json").output)
    return _no_ids({
        "explain": explain,
        "log": json.loads(site.cli("log", "--entity", serial, "--json", "--limit", "1000").output),
        "as_of": json.loads(site.cli("explain", serial, "--as-of", as_of, "--json").output),
        "export_as_of": json.loads(site.cli("export", "--entity", "assets", "--as-of", as_of).output),
        "web_history": web,
        "lifecycle_report": lifecycle,
        "assignment_report": owners,
        "log_rows_of": [r[1:] for r in of_entity],
        "only_sets": only_sets,
        "by_source": by_source,
        "newest_three": newest_three,
    })


def test_every_reader_shows_the_same_history_for_create_rows_and_old_set_rows(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The clock is pinned, then moved: both stores log the same times, and the later run is after as_of.
    start = clock.now().replace(microsecond=0)
    monkeypatch.setenv(clock.NOW_ENV, start.strftime("%Y-%m-%dT%H:%M:%SZ"))
    site = _site(tmp_path)
    site.cli("run", "--full", "-q")
    legacy = site.copy(tmp_path)
    _to_legacy(legacy, {_entity(site, "C02TEST0001")})  # Ana's first merge as old set rows; Bob's stays a create row
    assert legacy.rows("SELECT action, count(*) FROM merge_log GROUP BY action ORDER BY action") == [
        ("create", 1), ("link", 4), ("set", 15)]
    as_of = site.rows("SELECT max(at) FROM merge_log")[0][0]
    assert as_of == start.strftime("%Y-%m-%dT%H:%M:%SZ")
    monkeypatch.setenv(clock.NOW_ENV, (start + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    # A later change on both: each log now holds set rows after create rows.
    for s in (site, legacy):
        s.mdm.write_text(site.mdm.read_text().replace('"osVersion": "14.6.1"', '"osVersion": "15.1"'))
        s.cli("run", "-q")
    for serial in ("C02TEST0001", "C02TEST0002"):
        now_site, now_legacy = _views(site, serial, as_of), _views(legacy, serial, as_of)
        assert now_site == now_legacy, serial
    ana = _views(site, "C02TEST0001", as_of)
    # The per-field history an auditor reads: each first value with its deciding source and rule, then the change.
    sets = [(r["field"], r["old"], r["new"], r["source"], r["rule"]) for r in ana["only_sets"]]
    first = _first_sight(site, "C02TEST0001", "ana@example.com", "14.6.1")
    assert sets == [(f, None, v, s, r) for f, (v, s, r) in first.items()] + [
        ("os_version", "14.6.1", "15.1", "mdm", "precedence:default")]
    assert {f["field"]: (f["value"], f["source"], f["rule"]) for f in ana["as_of"]["fields"]} == {
        f: tuple(v) for f, v in first.items()}
    assert [r["field"] for r in ana["by_source"] if r["action"] == "set"] == ["last_seen", "edr_protected", "fqdn"]
    assert [r["field"] for r in ana["newest_three"]] == ["edr_protected", "fqdn", "os_version"]
    assert [r[2:5] for r in ana["lifecycle_report"]] == [[None, '"deployed"', "mdm"]]
    assert [(o, n) for _, o, n, _ in ana["assignment_report"]] == [(None, '"ana@example.com"')]
    # Both chains verify, in the database and as exported evidence.
    for s in (site, legacy):
        assert "chain intact" in s.cli("audit", "verify").output
        export = tmp_path / f"{s.db.stem}.jsonl"
        s.cli("audit", "export", "-o", str(export))
        assert "chain intact" in s.cli("audit", "verify", "--file", str(export)).output
        header = json.loads(export.read_text().splitlines()[0])
        assert "{field: [value, source, rule]}" in header["create"]


@pytest.mark.postgres
def test_the_readers_on_postgresql_match_sqlite(tmp_path: Path, postgres_url: str,
                                                frozen_clock: clock.Clock) -> None:
    lite = _site(tmp_path)
    config = tmp_path / "pg.yaml"
    config.write_text(lite.config.read_text().replace(f"sqlite:///{lite.db}", postgres_url))
    pg = Site(config, lite.mdm, lite.edr, tmp_path / "unused.db", lite.mdm_seen, lite.edr_seen, postgres_url)
    for s in (lite, pg):
        s.cli("run", "--full", "-q")
    lite.mdm.write_text(lite.mdm.read_text().replace('"osVersion": "14.6.1"', '"osVersion": "15.1"'))
    for s in (lite, pg):
        s.cli("run", "-q")
    for serial in ("C02TEST0001", "C02TEST0002"):  # the clock is pinned: both stores logged the same times
        assert _views(pg, serial, "2100-01-01") == _views(lite, serial, "2100-01-01")
    ana = _views(pg, "C02TEST0001", "2100-01-01")
    assert [(r["field"], r["new"]) for r in ana["only_sets"]][-2:] == [("fqdn", "lt-ana.corp.example.com"),
                                                                      ("os_version", "15.1")]
    assert [r[2:5] for r in ana["lifecycle_report"]] == [[None, '"deployed"', "mdm"]]


def test_events_keep_one_event_per_log_row_with_the_same_per_field_content(tmp_path: Path) -> None:
    site = _site(tmp_path)
    site.cli("run", "--full", "-q")
    legacy = site.copy(tmp_path)
    _to_legacy(legacy, {_entity(site, "C02TEST0001"), _entity(site, "C02TEST0002")})

    def events(s: Site) -> list[dict[str, Any]]:
        return [json.loads(line) for line in s.cli("events").output.splitlines() if line.strip()]

    new, old = events(site), events(legacy)
    assert [e["id"] for e in new] == list(range(1, site.max_id() + 1))  # one event per row: ids stay unique
    created = [e for e in new if e["type"] == "entity_created"]
    assert len(created) == 2
    changes = [(e["entity"]["key"], c["field"], c["old"], c["new"], c["source"], c["rule"])
               for e in created for c in e["fields"]]
    old_changes = [(e["entity"]["key"], e["field"], e["old"], e["new"], e["source"], e["rule"])
                   for e in old if e["type"] == "field_changed"]
    assert sorted(changes, key=str) == sorted(old_changes, key=str) and len(changes) == 30


def _stdlib_hash(raw: str) -> str:
    """The content hash as the engine took it before orjson (json.dumps, compact, non-ASCII kept)."""
    text = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _counts(site: Site, connector: str) -> dict[str, Any]:
    return dict(json.loads(site.rows("SELECT counts FROM sync_runs WHERE connector=? ORDER BY id DESC LIMIT 1",
                                     (connector,))[0][0]))


def test_the_first_sync_after_the_codec_change_writes_no_merge_log_rows(tmp_path: Path) -> None:
    site = _site(tmp_path)
    site.cli("run", "--full", "-q")
    # The store as the previous version left it: every content hash taken over the stdlib json text.
    with sqlite3.connect(site.db) as db:
        for rid, raw in db.execute("SELECT id, raw FROM source_records").fetchall():
            db.execute("UPDATE source_records SET content_hash=? WHERE id=?", (_stdlib_hash(raw), rid))
    high = site.max_id()
    site.cli("run", "--full", "-q")
    # Only the record whose raw text differs (1e-05 is now written 0.00001) is staged again; values are equal,
    # so the merge logs nothing.
    assert (_counts(site, "mdm")["devices"]["changed"], _counts(site, "mdm")["devices"]["unchanged"]) == (1, 1)
    assert _counts(site, "edr")["hosts"]["changed"] == 0
    assert site.log(high) == []
    # Every hash differing (whatever the codec did) re-stages every record and still logs nothing.
    with sqlite3.connect(site.db) as db:
        db.execute("UPDATE source_records SET content_hash='0'")
    site.cli("run", "--full", "-q")
    assert _counts(site, "mdm")["devices"]["changed"] == 2 and _counts(site, "edr")["hosts"]["changed"] == 2
    assert site.log(high) == []
    site.cli("run", "--full", "-q")  # and from then on the new hashes hold
    assert _counts(site, "mdm")["devices"]["unchanged"] == 2 and site.log(high) == []
