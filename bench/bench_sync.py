"""Load benchmark: the real connectors syncing N devices from the sandbox over loopback HTTP.

    python bench/bench_sync.py --devices 10000

Starts `itam-sync sandbox` in a child process (its own interpreter: the server's JSON work does not share
this process's GIL), points config/sandbox.yaml at it with the store in a temp dir, and times, through the
same code path as `itam-sync run`:
  full     every connector's first full run (HTTP, paging, tokens, mapping, staging, identity), one after
           the other, then the one merge of every touched entity into golden records
  resync   a full resync where nothing changed (every record fetched again, skipped by its content hash)
  change   an incremental run after ~2% of the records changed, devices and people were added and removed
  pull     each connector alone, its records read and thrown away: HTTP, auth, paging and parsing only
records/s per connector = records the connector yielded / its time: `pull` measures the connector over
loopback HTTP, `full` adds mapping, staging and identity resolution (merge excluded); end to end = all
records / (all staging + the merge). HTTP requests are counted by the sandbox. Prints a table, then one
JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from itam_sync import sandbox  # noqa: E402
from itam_sync.engine.registry import Registry  # noqa: E402
from itam_sync.engine.runner import build_connector, merge_pending, run_connector  # noqa: E402
from itam_sync.engine.workers import WorkerPool  # noqa: E402
from itam_sync.sdk.connector import BadRecord, StreamState  # noqa: E402
from itam_sync.settings import load_settings  # noqa: E402
from itam_sync.store import Store  # noqa: E402


def _rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process, in MB; 0 when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _requests(sb: sandbox.SandboxHandle) -> int:
    return sum(v for k, v in sb.status()["requests"].items() if k != "admin")


def sync_pass(settings: Any, store: Store, registry: Registry, sb: sandbox.SandboxHandle, full: bool
              ) -> tuple[dict[str, dict[str, float]], float]:
    """Run every connector once (staging only), then merge, with one worker pool as `itam-sync run` does;
    per-connector figures and the merge time."""
    with WorkerPool(settings.sync.workers) as pool:
        return _sync_pass(settings, store, registry, sb, full, pool)


def _sync_pass(settings: Any, store: Store, registry: Registry, sb: sandbox.SandboxHandle, full: bool,
               pool: WorkerPool) -> tuple[dict[str, dict[str, float]], float]:
    per: dict[str, dict[str, float]] = {}
    for conn in settings.connectors:
        before = _requests(sb)
        t0 = time.perf_counter()
        result = run_connector(settings, conn.name, full=full, store=store, registry=registry, merge=False,
                               pool=pool)
        seconds = time.perf_counter() - t0
        seen = sum(v.get("seen", 0) for k, v in result.counts.items() if not k.startswith("_"))
        per[conn.name] = {"records": seen, "seconds": seconds, "requests": _requests(sb) - before,
                          "records_per_s": seen / seconds if seconds else 0.0}
        if result.status != "success":
            print(f"warning: {conn.name}: {result.status}: {result.message}", file=sys.stderr)
    t0 = time.perf_counter()
    merge_pending(settings, store, pool=pool)
    return per, time.perf_counter() - t0


def pull_pass(settings: Any, registry: Registry, sb: sandbox.SandboxHandle) -> dict[str, dict[str, Any]]:
    """Read every connector's streams without the engine: the connector's own speed over loopback HTTP."""
    per: dict[str, dict[str, Any]] = {}
    for conn_cfg in settings.connectors:
        before = _requests(sb)
        connector = build_connector(settings, conn_cfg, registry)
        streams: dict[str, float] = {}
        seen = 0
        t0 = time.perf_counter()
        try:
            for stream in connector.streams():
                t1, n = time.perf_counter(), 0
                for record in stream.records(StreamState(full=True)):
                    n += not isinstance(record, BadRecord)
                streams[stream.name] = round(n / (time.perf_counter() - t1))
                seen += n
        finally:
            connector.close()
        seconds = time.perf_counter() - t0
        per[conn_cfg.name] = {"records": seen, "seconds": seconds, "requests": _requests(sb) - before,
                              "records_per_s": seen / seconds, "streams_records_per_s": streams}
    return per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=10_000, help="devices in the sandbox population")
    ap.add_argument("--people", type=int, default=None, help="people (default: two thirds of --devices)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--faults", default="", help="a sandbox fault spec, e.g. 429:0.01,5xx:0.01")
    ap.add_argument("--skip-kandji-details", action="store_true",
                    help="kandji fetch_details: false (Kandji's API needs one request per device for MACs)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="itam-bench-sync-") as tmp, \
            sandbox.start(devices=args.devices, people=args.people, seed=args.seed, faults=args.faults,
                          process=True) as sb:
        os.environ.update(sb.env())
        text = (ROOT / "config" / "sandbox.yaml").read_text().replace("sqlite:///../sandbox.db",
                                                                        f"sqlite:///{tmp}/bench.db")
        # Kandji remembers device details between runs (its resync asks none again) and is not paced to the
        # real tenant's 10,000 requests/hour: the sandbox has no quota.
        text = text.replace("      api_token: ${env:ITAM_SANDBOX_SECRET}\n\n  - name: crowdstrike",
                            "      api_token: ${env:ITAM_SANDBOX_SECRET}\n"
                            f"      details_cache: {tmp}/kandji-details.sqlite\n      requests_per_hour: null\n\n"
                            "  - name: crowdstrike")
        if args.skip_kandji_details:
            text = text.replace("      requests_per_hour: null\n\n  - name: crowdstrike",
                                "      requests_per_hour: null\n      fetch_details: false\n\n"
                                "  - name: crowdstrike")
        cfg = Path(tmp) / "sandbox.yaml"
        cfg.write_text(text)
        os.chdir(ROOT)  # mappings_dir is relative to the repository root
        settings = load_settings(cfg).settings
        registry = Registry()
        store = Store.open(settings.store.url)
        build_s = time.perf_counter() - t_start
        pull = pull_pass(settings, registry, sb)
        (Path(tmp) / "kandji-details.sqlite").unlink(missing_ok=True)  # the full pass is a first run
        sb.reset_stats()
        full, merge_s = sync_pass(settings, store, registry, sb, full=True)
        resync, resync_merge_s = sync_pass(settings, store, registry, sb, full=True)
        sb.advance()
        change, change_merge_s = sync_pass(settings, store, registry, sb, full=False)
        status = sb.status()
        sandbox_rss = _rss_mb(sb.pid)
        store.close()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    records = sum(int(v["records"]) for v in full.values())
    stage_s = sum(v["seconds"] for v in full.values())
    requests = sum(int(v["requests"]) for v in full.values())
    resync_records = sum(int(v["records"]) for v in resync.values())
    resync_s = sum(v["seconds"] for v in resync.values()) + resync_merge_s

    print(f"itam-sync bench_sync: {args.devices:,} devices, {status['people']:,} people, sandbox seed {args.seed}"
          + (f", faults {args.faults}" if args.faults else ""))
    head = f"  {'connector':<12} {'pull rec/s':>10} {'records':>8} {'requests':>8} {'full s':>7} {'rec/s':>8}" \
           f" {'resync rec/s':>12} {'change recs':>11} {'change s':>8}"
    print(head)
    print("  " + "-" * (len(head) - 2))
    for name, v in full.items():
        r, c = resync[name], change[name]
        print(f"  {name:<12} {pull[name]['records_per_s']:>10,.0f} {int(v['records']):>8,} {int(v['requests']):>8,} "
              f"{v['seconds']:>7.2f} "
              f"{v['records_per_s']:>8,.0f} {r['records_per_s']:>12,.0f} {int(c['records']):>11,} "
              f"{c['seconds']:>8.2f}")
    print("  " + "-" * (len(head) - 2))
    pull_rate = sum(v["records"] for v in pull.values()) / sum(v["seconds"] for v in pull.values())
    print(f"  {'staging':<12} {pull_rate:>10,.0f} {records:>8,} {requests:>8,} {stage_s:>7.2f} "
          f"{records / stage_s:>8,.0f} {resync_records / resync_s:>12,.0f}")
    print(f"  {'merge':<12} {'':>10} {'':>8} {'':>8} {merge_s:>7.2f}")
    total_s = stage_s + merge_s
    print(f"  {'end to end':<12} {'':>10} {records:>8,} {requests:>8,} {total_s:>7.2f} {records / total_s:>8,.0f}")
    print(f"  peak RSS: sync {peak_rss_mb:.0f} MB, sandbox {sandbox_rss:.0f} MB; sandbox start {build_s:.1f} s;"
          f" faults injected: {status['injected'] or 'none'}")
    result = {
        "devices": args.devices, "people": status["people"], "records": records,
        "records_per_s": round(records / total_s),
        "requests": requests, "peak_rss_mb": round(peak_rss_mb), "sandbox_peak_rss_mb": round(sandbox_rss),
        "full_s": round(total_s, 2), "merge_s": round(merge_s, 2),
        "staging_records_per_s": round(records / stage_s),
        "resync_s": round(resync_s, 2), "resync_records_per_s": round(resync_records / resync_s),
        "change_s": round(sum(v["seconds"] for v in change.values()) + change_merge_s, 2),
        "change_records": sum(int(v["records"]) for v in change.values()),
        "pull_records_per_s": round(pull_rate),
        "per_connector": {name: {"records": int(v["records"]), "requests": int(v["requests"]),
                                 "pull_records_per_s": round(pull[name]["records_per_s"]),
                                 "pull_streams_records_per_s": pull[name]["streams_records_per_s"],
                                 "records_per_s": round(v["records_per_s"]),
                                 "resync_records_per_s": round(resync[name]["records_per_s"])}
                          for name, v in full.items()},
        "faults": args.faults, "injected": status["injected"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
