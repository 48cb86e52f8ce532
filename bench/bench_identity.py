"""Identity-quality benchmark: how often does itam-sync join records of one real thing, and never of two?

    python bench/bench_identity.py --devices 10000

Starts `itam-sync sandbox` (a child process) with its messy population (`--identity-mess`): placeholder
serials, laptops behind shared USB-C docks (some with placeholder serials), duplicate MDM enrolments, re-imaged
laptops (a new Entra device id beside the stale enrolment, a second Defender machine and EDR agent), a shared
default host name, e-mail aliases, renamed people, identifier case and format noise, records missing from some
sources, Defender machines known only by Entra device id, FQDN and adapter MACs, desktops whose EDR reports the
Ethernet MAC the MDM list leaves out. Writes a procurement CSV for part of the fleet, runs every connector of
config/sandbox.yaml plus the procurement connector through the same path as `itam-sync run --full`, and scores
the result against the population's ground truth (which device or person each source record describes):

  pairwise precision  of the pairs of records put in one entity, the share that are one real thing
  pairwise recall     of the pairs of records of one real thing, the share put in one entity
  field accuracy      golden identifier and descriptive fields equal to the truth (serial, IMEI, UDID,
                      manufacturer, model; employee id, e-mail, name), over the entities matched to a thing

for assets and people. Prints a table, then one JSON line as the last line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from itam_sync import sandbox  # noqa: E402
from itam_sync.engine.registry import Registry  # noqa: E402
from itam_sync.engine.runner import merge_pending, run_connector  # noqa: E402
from itam_sync.model.identifiers import normalize_serial  # noqa: E402
from itam_sync.sandbox.population import Population  # noqa: E402
from itam_sync.sandbox.vendors import bamboohr, crowdstrike, jamf, kandji, microsoft, okta, sentinelone  # noqa: E402
from itam_sync.settings import load_settings  # noqa: E402
from itam_sync.store import Store  # noqa: E402

Truth = dict[tuple[str, str, str], str]  # (connector, stream, source key) -> "D12" (device) or "P7" (person)


def truth_of(pop: Population) -> Truth:
    """Which device or person every record the sandbox serves describes, by rendering each vendor's records."""
    t: Truth = {}

    def add(conn: str, stream: str, render: Callable[[Population, int], dict[str, Any]], key: str,
            items: list[int], thing: Callable[[int], str]) -> None:
        for i in items:
            rec = render(pop, i)
            if rec.get(key):
                t[(conn, stream, str(rec[key]))] = thing(i)

    def dev(i: int) -> str:
        return f"D{i}"

    def per(i: int) -> str:
        return f"P{i}"

    people = range(len(pop.people))
    add("okta", "users", okta.user, "id", list(people), per)
    add("okta", "devices", okta.device, "id", pop.devices_of("okta"), dev)
    add("entra", "users", lambda p, i: microsoft.user(p, i, False), "id", pop.people_of("entra"), per)
    add("entra", "devices", microsoft.device, "id", pop.devices_of("entra"), dev)
    add("bamboohr", "employees", bamboohr.employee, "id", pop.people_of("bamboohr"), per)
    add("intune", "managed_devices", microsoft.managed_device, "id", pop.devices_of("intune"), dev)
    add("defender", "machines", microsoft.machine, "id", pop.devices_of("defender"), dev)
    add("jamf", "computers", jamf.computer, "id", pop.devices_of("jamf", ("mac",)), dev)
    add("jamf", "mobile_devices", jamf.mobile_device, "mobileDeviceId", pop.devices_of("jamf", ("ios", "ipados")),
        dev)
    add("kandji", "devices", kandji.device, "device_id", pop.devices_of("kandji"), dev)
    add("crowdstrike", "hosts", crowdstrike.host_record, "device_id", pop.devices_of("crowdstrike"), dev)
    agents = [2 * i + 1 for i in pop.devices_of("sentinelone")]
    agents += [2 * i for i in pop.devices_of("sentinelone") if pop.devices[i].s1_reinstalled]
    add("sentinelone", "agents", sentinelone.agent, "id", agents, lambda k: f"D{k // 2}")
    # The messy population's extra records (stale and duplicate enrolments, old agents) say whose they are.
    for (conn, stream, key), i in pop.extra_records().items():
        t[(conn, stream, key)] = f"D{i}"
    return t


def write_purchases(pop: Population, folder: Path, seed: int) -> Truth:
    """A finance export: one purchase line for most laptops, desktops and phones (serials in finance's
    spelling: upper case, sometimes with a trailing space)."""
    rng = random.Random(f"{seed}:procurement")
    folder.mkdir(parents=True, exist_ok=True)
    t: Truth = {}
    with (folder / "purchases.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["PO Number", "Vendor", "Manufacturer", "Model", "Serial #", "Unit Price", "Currency",
                    "Order Date", "Warranty End", "Category"])
        for d in pop.devices:
            # A machine whose firmware has no serial is a custom build, bought as parts: no purchase line names it.
            if d.kind not in ("laptop", "desktop", "mobile", "tablet") or d.junk_serial or rng.random() > 0.7:
                continue
            po = f"PO-{2023 + d.idx % 3}-{d.idx // 10:05d}"
            serial = d.serial + (" " if d.idx % 9 == 0 else "")
            w.writerow([po, rng.choice(["Atea", "Dustin AB", "CDW"]), d.manufacturer, d.model, serial,
                        f"{900 + d.idx % 1500}.00", "EUR", f"{2023 + d.idx % 3}-0{1 + d.idx % 9}-1{d.idx % 9}",
                        f"{2026 + d.idx % 3}-0{1 + d.idx % 9}-1{d.idx % 9}",
                        {"laptop": "Notebook", "desktop": "Desktop", "mobile": "Phone", "tablet": "Tablet"}[d.kind]])
            t[("procurement", "purchases", f"{po}/{normalize_serial(d.serial) or d.serial}")] = f"D{d.idx}"
    return t


def pairwise(pairs: Counter[tuple[int, str]]) -> tuple[float, float, int, int]:
    """Pairwise precision and recall from (predicted entity, true thing) record counts."""
    def c2(n: int) -> int:
        return n * (n - 1) // 2
    same_both = sum(c2(n) for n in pairs.values())
    pred, true = Counter[int](), Counter[str]()
    for (e, thing), n in pairs.items():
        pred[e] += n
        true[thing] += n
    same_pred = sum(c2(n) for n in pred.values())
    same_true = sum(c2(n) for n in true.values())
    return (same_both / same_pred if same_pred else 1.0, same_both / same_true if same_true else 1.0,
            same_pred - same_both, same_true - same_both)


def expected_fields(pop: Population, thing: str) -> dict[str, Any]:
    """The truth of the fields scored: identifiers and names every source agrees on once normalised."""
    i = int(thing[1:])
    if thing[0] == "D":
        d = pop.devices[i]
        out: dict[str, Any] = {"manufacturer": d.manufacturer, "model": d.model}
        if d.serial and d.kind not in ("cloud",):
            out["serial_number"] = normalize_serial(d.serial)
        if d.imei:
            out["imei"] = d.imei
        if d.udid:
            out["udid"] = d.udid.upper()
        return out
    p = pop.people[i]
    out = {"email": p.email, "display_name": f"{p.first} {p.last}"}
    if not p.contractor:
        out["employee_id"] = p.employee_id
    return out


def score(store: Store, truth: Truth, pop: Population) -> dict[str, Any]:
    with store.engine.connect() as db:
        rows = db.exec_driver_sql("SELECT connector, stream, source_key, entity_type, entity_id FROM source_records "
                                  "WHERE missing=0").fetchall()
        goldens = {r[0]: json.loads(r[1]) for r in db.exec_driver_sql("SELECT id, golden FROM entities")}
    cells: dict[str, Counter[tuple[int, str]]] = {"asset": Counter(), "person": Counter()}
    unknown = Counter[str]()
    for conn, stream, key, etype, eid in rows:
        thing = truth.get((conn, stream, key))
        if etype not in cells:
            continue
        if thing is None:
            unknown[f"{conn}/{stream}"] += 1
            continue
        cells[etype][(eid, thing)] += 1
    out: dict[str, Any] = {}
    for etype, cell in cells.items():
        p, r, fp, fn = pairwise(cell)
        # Each entity is scored against the thing most of its records describe.
        by_entity: dict[int, Counter[str]] = {}
        for (e, thing), n in cell.items():
            by_entity.setdefault(e, Counter())[thing] += n
        right = compared = 0
        wrong: Counter[str] = Counter()
        for e, things in by_entity.items():
            thing = things.most_common(1)[0][0]
            golden = goldens.get(e, {})
            for f, want in expected_fields(pop, thing).items():
                have = golden.get(f, [None])[0]
                if have is None:
                    continue
                compared += 1
                if str(have).lower() == str(want).lower():
                    right += 1
                else:
                    wrong[f] += 1
        out[etype] = {"precision": round(p, 5), "recall": round(r, 5), "false_pairs": fp, "missed_pairs": fn,
                      "entities": len(by_entity), "things": len({t for _, t in cell}),
                      "field_accuracy": round(right / compared, 5) if compared else 1.0, "fields_compared": compared,
                      "fields_wrong": dict(wrong.most_common())}
    out["unscored_records"] = dict(unknown)
    return out


def suggestion_quality(repo: Any, store: Store, truth: Truth) -> dict[str, int]:
    """How many suggested matches there are, and how many of them pair two entities of one real thing."""
    from itam_sync.engine.suggestions import find

    things: dict[int, Counter[str]] = {}
    with store.engine.connect() as db:
        for c, st, k, e in db.exec_driver_sql("SELECT connector, stream, source_key, entity_id FROM source_records "
                                              "WHERE missing=0"):
            t = truth.get((c, st, k))
            if t is not None:
                things.setdefault(e, Counter())[t] += 1

    def thing(e: int) -> str | None:
        return things[e].most_common(1)[0][0] if e in things else None
    found = find(repo)
    right = sum(1 for s in found if thing(s.a) is not None and thing(s.a) == thing(s.b))
    return {"suggestions": len(found), "suggestions_right": right}


def partition(store: Store) -> set[frozenset[str]]:
    """Which live records are one entity, as sets of record references (entity ids depend on order)."""
    groups: dict[int, set[str]] = {}
    with store.engine.connect() as db:
        for c, st, k, e in db.exec_driver_sql("SELECT connector, stream, source_key, entity_id FROM source_records "
                                              "WHERE missing=0"):
            groups.setdefault(e, set()).add(f"{c}/{st}/{k}")
    return {frozenset(g) for g in groups.values()}


def _synced(cfg: Path, db: Path, connectors: Any, batch: int | None = None) -> set[frozenset[str]]:
    """Sync the sandbox with `connectors` in the order given into a fresh store at `db`; its partition."""
    settings = load_settings(cfg).settings
    settings.store.url = f"sqlite:///{db}"
    if batch:
        settings.sync.batch_size = batch
    store = Store.open(settings.store.url)
    try:
        for conn in connectors:
            run_connector(settings, conn.name, full=True, store=store, registry=Registry(), merge=False)
        merge_pending(settings, store)
        return partition(store)
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=10_000, help="devices in the sandbox population")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tidy", action="store_true", help="the sandbox's default population, not the messy one")
    ap.add_argument("--keep", type=Path, default=None, help="keep the store and files in this folder")
    ap.add_argument("--check-order", action="store_true",
                    help="also sync the connectors in reverse order with small batches into a second store, and "
                         "the first store incrementally after the records changed (content only) against a fresh "
                         "full sync of the changed records: the partitions must be identical")
    args = ap.parse_args()
    t0 = time.perf_counter()
    messy = not args.tidy
    tmp = tempfile.TemporaryDirectory(prefix="itam-bench-identity-") if args.keep is None else None
    work = Path(tmp.name) if tmp else args.keep
    work.mkdir(parents=True, exist_ok=True)
    (work / "bench.db").unlink(missing_ok=True)
    with sandbox.start(devices=args.devices, seed=args.seed, process=True, identity_mess=messy) as sb:
        os.environ.update(sb.env())
        text = (ROOT / "config" / "sandbox.yaml").read_text().replace("sqlite:///../sandbox.db",
                                                                        f"sqlite:///{work}/bench.db")
        text = text.replace("      api_token: ${env:ITAM_SANDBOX_SECRET}\n\n  - name: crowdstrike",
                            "      api_token: ${env:ITAM_SANDBOX_SECRET}\n"
                            f"      details_cache: {work}/kandji-details.sqlite\n      requests_per_hour: null\n\n"
                            "  - name: crowdstrike")
        text = text.replace("  default: [jamf, intune,", "  default: [procurement, jamf, intune,", 1)
        # Host names as a weak key: a Defender machine of a VM or cloud instance has nothing else (its MACs are
        # virtual); a weak key joins only records without a strong key, and never two entities.
        text = text.replace("\nmappings_dir:", "\nidentity:\n  hostname_weak_key: true\n\nmappings_dir:", 1)
        text += (f"\n  - name: procurement\n    type: procurement\n    settings:\n      folder: {work}/purchases\n")
        cfg = work / "sandbox.yaml"
        cfg.write_text(text)
        os.chdir(ROOT)
        pop = Population(seed=args.seed, n_devices=args.devices, identity_mess=messy)
        truth = truth_of(pop)
        truth.update(write_purchases(pop, work / "purchases", args.seed))
        settings = load_settings(cfg).settings
        registry = Registry()
        store = Store.open(settings.store.url)
        t_sync = time.perf_counter()
        for conn in settings.connectors:
            result = run_connector(settings, conn.name, full=True, store=store, registry=registry, merge=False)
            if result.status not in ("success", "degraded"):
                print(f"warning: {conn.name}: {result.status}: {result.message}", file=sys.stderr)
        merge_pending(settings, store)
        sync_s = time.perf_counter() - t_sync
        scores = score(store, truth, pop)
        with store.begin() as repo:
            ambiguous = Counter(a["origin"] for a in repo.identity.list_ambiguous())
            suggested = suggestion_quality(repo, store, truth)
        order: dict[str, bool] = {}
        if args.check_order:
            order["reversed_order_small_batches"] = partition(store) == _synced(
                cfg, work / "reversed.db", reversed(settings.connectors), batch=997)
            sb.advance(content_only=True)
            for conn in settings.connectors:
                run_connector(settings, conn.name, full=False, store=store, registry=registry, merge=False)
            merge_pending(settings, store)
            order["incremental_equals_full"] = partition(store) == _synced(cfg, work / "fresh.db",
                                                                          settings.connectors)
        store.close()
    a, p = scores["asset"], scores["person"]
    print(f"itam-sync bench_identity: {args.devices:,} devices, {len(pop.people):,} people, seed {args.seed}, "
          f"{'messy' if messy else 'tidy'} population; sync {sync_s:.1f} s")
    for name, s in (("assets", a), ("people", p)):
        print(f"  {name:<7} precision {s['precision']:.5f}  recall {s['recall']:.5f}  field accuracy "
              f"{s['field_accuracy']:.5f}  ({s['entities']:,} entities for {s['things']:,} things; "
              f"{s['false_pairs']:,} false pairs, {s['missed_pairs']:,} missed; wrong fields {s['fields_wrong']})")
    print(f"  ambiguous identifiers: {dict(ambiguous)}; records without ground truth: {scores['unscored_records']}")
    print(f"  suggested matches: {suggested['suggestions']} ({suggested['suggestions_right']} of them one real thing)")
    if order:
        print(f"  same partition: {order}")
    result_line = {
        "devices": args.devices, "people": len(pop.people), "seed": args.seed, "messy": messy,
        "asset_precision": a["precision"], "asset_recall": a["recall"], "asset_field_accuracy": a["field_accuracy"],
        "person_precision": p["precision"], "person_recall": p["recall"],
        "person_field_accuracy": p["field_accuracy"], "asset_entities": a["entities"], "asset_things": a["things"],
        "person_entities": p["entities"], "person_things": p["things"],
        "ambiguous_identifiers": sum(ambiguous.values()), **suggested,
        **{f"same_partition_{k}": v for k, v in order.items()},
        "sync_s": round(sync_s, 1), "total_s": round(time.perf_counter() - t0, 1)}
    print(json.dumps(result_line))
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
