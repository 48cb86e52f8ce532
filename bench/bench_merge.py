"""End-to-end sync benchmark: N synthetic devices seen by 4 sources, through the same path as `itam-sync run`.

    python bench/bench_merge.py --devices 250000

Generates seeded, messy JSONL exports (serials in mixed case and spacing, junk serials that only match by MAC,
dock MACs shared between laptops, MACs in several formats), then times:
  full     every connector's first full run (stage, resolve, merge, log)
  noop     a full resync where nothing changed (every record re-read, skipped by hash)
  noop_inc an incremental resync where nothing changed (file sources skip unchanged files)
  change   a full resync after 1% of each source's records changed
floor_s is the raw sqlite3 executemany time of the same source rows into the same table: the cost of just
writing the data (on PostgreSQL: psycopg executemany into an empty copy of the table). Prints a table, then one
JSON line as the last line.

    python bench/bench_merge.py --devices 10000 --store-url postgres     # a throwaway PostgreSQL server
    python bench/bench_merge.py --store-url postgresql+psycopg://me@/bench?host=/run/postgresql   # an empty db
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from itam_sync.engine.registry import Registry  # noqa: E402
from itam_sync.engine.runner import merge_pending, run_connector  # noqa: E402
from itam_sync.engine.workers import WorkerPool, default_workers  # noqa: E402
from itam_sync.settings import (  # noqa: E402
    ConnectorConfig,
    EntityPrecedence,
    FieldRuleConfig,
    PrecedenceConfig,
    Settings,
    StoreConfig,
    SyncConfig,
)
from itam_sync.store import Store  # noqa: E402

SOURCES = ("mdm", "edr", "procurement", "idp")
MODELS = [("Apple", "MacBookPro18,3", "macOS"), ("Dell", "Latitude 7440", "Windows"),
          ("Lenovo", "ThinkPad T14 Gen 4", "Windows"), ("HP", "EliteBook 840 G8", "Windows")]


def _serial(i: int) -> str:
    return f"SN{i:09d}X"


def _mac(i: int, prefix: int = 0xA4) -> str:
    return f"{prefix:02x}{(i * 2654435761) & 0xFFFFFFFFFF:010x}"


def _colon(m: str) -> str:
    return ":".join(m[j:j + 2] for j in range(0, 12, 2))


def records(source: str, n: int, rng: random.Random, version: int, changed: set[int]) -> object:
    """Yield one source's raw records; `changed` device indexes get a different payload in `version` > 0."""
    for i in range(n):
        man, model, os_name = MODELS[i % len(MODELS)]
        bump = version if i in changed else 0
        user = f"person{(i + bump) % max(1, n // 2)}@example.com"
        serial = _serial(i)
        day = 1 + (i + bump) % 27
        if source == "mdm":
            yield {"id": f"mdm-{i}", "deviceName": f"LT-{i:07d}", "serialNumber": serial,
                   "wiFiMacAddress": _colon(_mac(i)), "ethernetMacAddress": "3c:18:a0:0b:7c:11" if i % 500 == 7 else "",
                   "manufacturer": man, "model": model, "operatingSystem": os_name,
                   "osVersion": f"14.{bump % 9}.{i % 5}", "userPrincipalName": user.upper() if i % 7 == 0 else user,
                   "complianceState": "compliant" if i % 11 else "noncompliant",
                   "lastSyncDateTime": f"2026-11-{day:02d}T08:{i % 60:02d}:00Z"}
        elif source == "edr":
            junk = i % 200 == 3
            s = "To Be Filled By O.E.M." if junk else (serial.lower() if i % 3 == 0 else
                                                         f"{serial[:4]} {serial[4:]}" if i % 10 == 1 else serial)
            mac = _mac(i)
            yield {"device_id": f"cs-{i}", "hostname": f"lt-{i:07d}.corp.example.com", "serial_number": s,
                   "mac_address": "-".join(mac[j:j + 2] for j in range(0, 12, 2)).upper(),
                   "os_version": f"Windows 11 23H2 build {bump}", "agent_version": f"7.{18 + bump % 3}.18601",
                   "last_seen": f"2026-11-{day:02d}T09:{i % 60:02d}:00Z"}
        elif source == "procurement":
            yield {"line_id": f"PO-{i // 10}-{i % 10}", "serial": serial + (" " if i % 4 == 0 else ""),
                   "manufacturer": man, "model": model, "cost": f"${1000 + i % 1500:,}.00", "currency": "USD",
                   "po_number": f"PO-{i // 10}", "vendor": ("CDW", "SHI", "Insight")[i % 3],
                   "purchase_date": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                   "warranty_end": f"2027-{1 + i % 12:02d}-{1 + i % 28:02d}", "assigned_to": user,
                   "status": "deployed", "updated": f"2026-{1 + (i + bump) % 10:02d}-01T00:00:00Z"}
        else:
            yield {"id": f"guo{i}", "status": "ACTIVE", "lastUpdated": f"2026-11-{day:02d}T10:00:00.000Z",
                   "profile": {"displayName": f"LT-{i:07d}", "platform": os_name.upper(), "manufacturer": man,
                               "model": model, "osVersion": f"14.{bump % 9}", "serialNumber": serial.lower()},
                   "_embedded": {"users": [{"user": {"profile": {"email": user}}}]}}


def write_sources(d: Path, n: int, version: int, changed: set[int]) -> None:
    for src in SOURCES:
        rng = random.Random(f"{src}-{n}")
        with (d / f"{src}.jsonl").open("w") as fh:
            for rec in records(src, n, rng, version, changed):
                fh.write(json.dumps(rec))
                fh.write("\n")


def settings_for(d: Path, store_url: str | None = None, workers: int | None = None) -> Settings:
    streams = {"mdm": "devices", "edr": "hosts", "procurement": "orders", "idp": "devices"}
    # The demo's precedence shape: device sources first, procurement owns what was bought and for how much.
    procurement = FieldRuleConfig(order=["procurement"])
    precedence = PrecedenceConfig(default=["mdm", "edr", "idp", "procurement"], asset=EntityPrecedence(fields={
        "purchase_cost": procurement, "purchase_date": procurement, "vendor": procurement,
        "order_number": procurement, "warranty_end": procurement,
        "assigned_to": FieldRuleConfig(order=["procurement", "mdm"], freshness="90d"),
        "last_seen": FieldRuleConfig(strategy="latest")}))
    return Settings(
        store=StoreConfig(url=store_url or f"sqlite:///{d / 'bench.db'}"),
        sync=SyncConfig(batch_size=5000, workers=workers),
        precedence=precedence,
        connectors=[ConnectorConfig(name=s, type="jsonl", mapping=str(ROOT / "bench" / "mappings" / f"{s}.yaml"),
                                    settings={"path": str(d / f"{s}.jsonl"), "stream": streams[s]})
                    for s in SOURCES])


def sync_all(settings: Settings, full: bool) -> float:
    """What `itam-sync run [--full]` does: stage every connector, then merge the touched entities once."""
    registry = Registry()
    store = Store.open(settings.store.url)
    t0 = time.perf_counter()
    with WorkerPool(settings.sync.workers) as pool:  # one pool for every connector and the merge, as the CLI
        for c in settings.connectors:
            res = run_connector(settings, c.name, full=full, store=store, registry=registry, merge=False, pool=pool)
            assert res.status == "success", res.message
        merge_pending(settings, store, pool=pool)
    elapsed = time.perf_counter() - t0
    store.close()
    return elapsed


def floor_seconds(db: Path, out: Path) -> float:
    """Raw sqlite3 executemany of the same source rows into the same (migrated, empty) table."""
    Store.open(f"sqlite:///{out}").close()
    src = sqlite3.connect(db)
    dst = sqlite3.connect(out)
    dst.execute("PRAGMA journal_mode=WAL")
    dst.execute("PRAGMA synchronous=NORMAL")
    cur = src.execute("SELECT id, connector, stream, source_key, entity_type, entity_id, content_hash, raw, fields, "
                      "match_keys, observed_at, first_seen_run, last_seen_run, missing FROM source_records")
    sql = ("INSERT INTO source_records (id, connector, stream, source_key, entity_type, entity_id, content_hash, raw, "
           "fields, match_keys, observed_at, first_seen_run, last_seen_run, missing) "
           "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
    spent = 0.0
    dst.execute("BEGIN")
    while True:
        rows = cur.fetchmany(5000)
        if not rows:
            break
        t0 = time.perf_counter()
        dst.executemany(sql, rows)
        spent += time.perf_counter() - t0
    t0 = time.perf_counter()
    dst.commit()
    spent += time.perf_counter() - t0
    src.close()
    dst.close()
    return spent


def floor_seconds_pg(url: str) -> float:
    """PostgreSQL's floor: the same source rows executemany'd (psycopg) into an empty copy of the table."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    q = dict(u.query)
    conn = psycopg.connect(dbname=u.database, user=u.username, password=u.password, host=u.host or q.get("host"),
                           port=u.port or q.get("port"))
    cols = ("id, connector, stream, source_key, entity_type, entity_id, content_hash, raw, fields, match_keys, "
            "observed_at, first_seen_run, last_seen_run, missing")
    rows = conn.execute(f"SELECT {cols} FROM source_records").fetchall()
    conn.execute("CREATE TEMP TABLE floor_records (LIKE source_records INCLUDING ALL)")
    conn.commit()
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        for i in range(0, len(rows), 5000):
            cur.executemany(f"INSERT INTO floor_records ({cols}) VALUES ({', '.join(['%s'] * 14)})",
                            rows[i:i + 5000])
    conn.commit()
    spent = time.perf_counter() - t0
    conn.close()
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=25_000, help="synthetic devices (each seen by 4 sources)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep files here (default: a temp dir)")
    ap.add_argument("--store-url", default=None,
                    help="run on this store instead of a temp SQLite file: the URL of an EMPTY database, e.g. "
                         "postgresql+psycopg://user@/bench?host=/run/postgresql, or `postgres` to start a "
                         "throwaway PostgreSQL server (needs initdb; see bench/throwaway_pg.py)")
    ap.add_argument("--workers", type=int, default=None,
                    help="worker processes for per-record work (default: sync.workers' default, one per core)")
    args = ap.parse_args()
    if args.store_url == "postgres":
        from throwaway_pg import throwaway_postgres

        with throwaway_postgres() as url:
            run_bench(args, url)
    else:
        run_bench(args, args.store_url)


def run_bench(args: argparse.Namespace, store_url: str | None) -> None:
    """The four syncs and the figures, on `store_url` (None: a temp SQLite file)."""
    n = args.devices
    tmp = tempfile.TemporaryDirectory(prefix="itam-bench-") if args.workdir is None else None
    d = Path(tmp.name) if tmp else args.workdir
    d.mkdir(parents=True, exist_ok=True)
    (d / "bench.db").unlink(missing_ok=True)
    if store_url is not None:
        with Store.open(store_url).begin() as repo:
            if repo.runs.list_runs(1):
                raise SystemExit(f"{store_url}: the database is not empty; give the benchmark an empty one")
    write_sources(d, n, 0, set())
    settings = settings_for(d, store_url, args.workers)
    gc.collect()
    full_s = sync_all(settings, full=True)
    noop_s = sync_all(settings, full=True)
    noop_inc_s = sync_all(settings, full=False)
    changed = set(random.Random(42).sample(range(n), max(1, n // 100)))
    time.sleep(0.01)  # a new mtime for the rewritten files
    write_sources(d, n, 1, changed)
    change_s = sync_all(settings, full=True)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store = Store.open(settings.store.url)
    with store.engine.connect() as db:
        source_records = db.exec_driver_sql("SELECT count(*) FROM source_records").scalar()
        assets = db.exec_driver_sql("SELECT count(*) FROM entities WHERE status='active'").scalar()
        conflicts = db.exec_driver_sql("SELECT count(*) FROM conflicts").scalar()
        log_rows = db.exec_driver_sql("SELECT count(*) FROM merge_log").scalar()
    backend = store.engine.dialect.name
    store.close()
    floor_s = (floor_seconds(d / "bench.db", d / "floor.db") if backend == "sqlite"
               else floor_seconds_pg(settings.store.url))
    result = {"store": backend, "devices": n, "source_records": source_records, "full_s": round(full_s, 2),
              "full_records_per_s": round(source_records / full_s), "noop_s": round(noop_s, 2),
              "noop_incremental_s": round(noop_inc_s, 3), "change_s": round(change_s, 2),
              "noop_pct_of_full": round(100 * noop_s / full_s, 1),
              "change_pct_of_full": round(100 * change_s / full_s, 1),
              "peak_rss_mb": round(peak_rss_mb), "floor_s": round(floor_s, 2), "assets": assets,
              "conflicts": conflicts, "merge_log_rows": log_rows, "workers": settings.sync.workers or default_workers()}
    width = max(map(len, result))
    print("itam-sync bench_merge")
    for k, v in result.items():
        print(f"  {k:<{width}}  {v}")
    print(json.dumps(result))
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
