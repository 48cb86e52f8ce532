"""Helpers of the reliability suite: sandbox configs, syncing every connector, exports and store snapshots.

The suite syncs the real connectors against `itam_sync.sandbox` and compares what the store holds with what a
fault-free history of the same population produces (`itam-sync export`, normalised: entity ids depend on the
order things were first seen, so they are left out; the golden fields, statuses and feeding records are not).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from itam_sync.cli.main import main
from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import SyncFailed, merge_pending, run_connector
from itam_sync.settings import Settings, load_settings
from itam_sync.store import Store

ROOT = Path(__file__).resolve().parents[2]
# Small pages: a population of ~150 devices still pages many times per stream (faults hit mid-stream).
SMALL_PAGES: dict[str, dict[str, Any]] = {
    "okta": {"page_size": 40}, "entra": {"device_page_size": 40}, "jamf": {"page_size": 25},
    "kandji": {"page_size": 20}, "crowdstrike": {"page_size": 50, "batch_size": 30},
    "sentinelone": {"page_size": 25}}
ENTITIES = ("assets", "people", "subscriptions")


def write_config(path: Path, db: Path, *, busy_timeout: float | None = None,
                 pages: dict[str, dict[str, Any]] | None = None) -> Path:
    """config/sandbox.yaml with the store at `db` (optionally a busy timeout) and small pages."""
    cfg = yaml.safe_load((ROOT / "config" / "sandbox.yaml").read_text())
    cfg["store"]["url"] = f"sqlite:///{db}" + (f"?timeout={busy_timeout}" if busy_timeout is not None else "")
    cfg["mappings_dir"] = str(ROOT / "mappings")
    for conn in cfg["connectors"]:
        conn["settings"].update((SMALL_PAGES if pages is None else pages).get(conn["name"], {}))
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def settings_of(config: Path) -> Settings:
    return load_settings(config).settings


def sync_all(settings: Settings, full: bool = True) -> dict[str, str]:
    """Run every connector (staging), then merge, as `itam-sync run` does; status per connector."""
    out: dict[str, str] = {}
    store = Store.open(settings.store.url)
    registry = Registry()
    try:
        for conn in settings.connectors:
            try:
                out[conn.name] = run_connector(settings, conn.name, full=full, store=store, registry=registry,
                                               merge=False).status
            except SyncFailed as exc:
                out[conn.name] = f"failed: {exc}"
        try:
            merge_pending(settings, store)
            out["(merge)"] = "success"
        except SyncFailed as exc:
            out["(merge)"] = f"failed: {exc}"
    finally:
        store.close()
    return out


def export(config: Path) -> dict[str, list[dict[str, Any]]]:
    """`itam-sync export --format json` of every entity type, normalised for comparison across stores."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in ENTITIES:
        result = CliRunner().invoke(main, ["export", "-c", str(config), "--entity", name, "--format", "json"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        text = result.stdout
        records = json.loads(text[text.index("["):])
        norm = [{"type": r["type"], "status": r["status"], "fields": r["fields"],
                 "field_sources": r["field_sources"], "sources": sorted(r["sources"])} for r in records]
        out[name] = sorted(norm, key=lambda r: json.dumps(r, sort_keys=True))
    return out


def diff_exports(a: dict[str, list[dict[str, Any]]], b: dict[str, list[dict[str, Any]]], limit: int = 3) -> str:
    """A short description of how two exports differ ('' when equal)."""
    lines = []
    for name in ENTITIES:
        ka = {json.dumps(r, sort_keys=True) for r in a[name]}
        kb = {json.dumps(r, sort_keys=True) for r in b[name]}
        if ka != kb:
            lines.append(f"{name}: {len(ka - kb)} only in the first, {len(kb - ka)} only in the second")
            lines += [f"  - {x[:400]}" for x in sorted(ka - kb)[:limit]]
            lines += [f"  + {x[:400]}" for x in sorted(kb - ka)[:limit]]
    return "\n".join(lines)


@dataclass(frozen=True)
class ConnectorState:
    """What one connector has in the store: its cursors and its staged records (key, hash, missing)."""

    cursors: frozenset[tuple[str, str]]
    records: frozenset[tuple[str, str, str, bool]]

    @property
    def missing(self) -> int:
        return sum(1 for r in self.records if r[3])


def snapshot(db: Path) -> dict[str, ConnectorState]:
    """Per connector: cursors and staged records, read straight from the SQLite file."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        cursors: dict[str, set[tuple[str, str]]] = {}
        for connector, stream, cursor in conn.execute("SELECT connector, stream, cursor FROM connector_state"):
            cursors.setdefault(connector, set()).add((stream, cursor))
        records: dict[str, set[tuple[str, str, str, bool]]] = {}
        for connector, stream, key, digest, missing in conn.execute(
                "SELECT connector, stream, source_key, content_hash, missing FROM source_records"):
            records.setdefault(connector, set()).add((stream, key, digest, bool(missing)))
    names = set(cursors) | set(records)
    return {n: ConnectorState(frozenset(cursors.get(n, ())), frozenset(records.get(n, ()))) for n in names}


def copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite store (the backup API: WAL content included)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


def integrity_ok(db: Path) -> bool:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def duplicates(exported: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Strong identifiers held by more than one live golden record (serials, instance ids, e-mails, ...)."""
    out: dict[str, list[str]] = {}
    for name, fields in (("assets", ("serial_number", "instance_id", "entra_device_id", "udid", "imei")),
                         ("people", ("employee_id", "email")), ("subscriptions", ("sku_id",))):
        for f in fields:
            seen = Counter(r["fields"][f] for r in exported[name] if r["status"] == "active" and r["fields"].get(f))
            dup = [v for v, n in seen.items() if n > 1]
            if dup:
                out[f"{name}.{f}"] = dup[:5]
    return out


def lost(before: dict[str, list[dict[str, Any]]], after: dict[str, list[dict[str, Any]]],
         expected: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Source records that fed a golden record before, still do in the fault-free `expected` store, and feed
    none after: their golden record was lost (records of devices really retired are not counted)."""
    def fed(export: dict[str, list[dict[str, Any]]]) -> set[str]:
        return {s for name in ENTITIES for r in export[name] for s in r["sources"]}
    return sorted((fed(before) & fed(expected)) - fed(after))


@dataclass
class StoreState:
    """A store file with what it exported and held after a known history."""

    db: Path
    config: Path
    export: dict[str, list[dict[str, Any]]]
    snapshot: dict[str, ConnectorState]


def history(sb: Any, directory: Path, versions: list[int]) -> StoreState:
    """A new store after one fault-free full sync of every connector at each of `versions`, in order."""
    directory.mkdir(parents=True, exist_ok=True)
    config = write_config(directory / "itam-sync.yaml", directory / "itam.db")
    settings = settings_of(config)
    for v in versions:
        sb.set_version(v)
        statuses = sync_all(settings)
        assert set(statuses.values()) == {"success"}, statuses
    return StoreState(directory / "itam.db", config, export(config), snapshot(directory / "itam.db"))
