"""Identity resolution and merging are order-independent: the same records, in any order, give the same
golden records (through the real runner on SQLite).

Hypothesis makes a few devices and people, and for each of three sources a record per thing it sees: a random
subset of the thing's identifiers (so joins are sometimes transitive: one source links the serial to a MAC,
another the MAC to an Entra device id), each in a random spelling, junk serials now and then, timestamps with
ties. The records are synced once in one order (sources in order, one merge at the end) and once in another
(sources permuted, records shuffled, a merge after every source); the golden records (fields, the source of
each, status) and which records feed each must be identical.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import merge_pending, run_connector
from itam_sync.settings import ConnectorConfig, PrecedenceConfig, Settings, StoreConfig
from itam_sync.store import Store
from tests.engine.identity_world import MemoryConnector

SOURCES = ("mdm", "edr", "idp")
MAPPING = """streams:
  devices:
    entity: asset
    key: id
    observed_at: seen
    fields:
      serial_number: {from: serial, transforms: [serial]}
      mac_addresses: {from: macs, transforms: [mac]}
      entra_device_id: {from: entra, transforms: [uuid]}
      hostname: {from: host, transforms: [hostname]}
      model: {from: model, transforms: [strip]}
      assigned_to: {from: user, transforms: [email]}
      last_seen: {from: seen, transforms: [datetime]}
  people:
    entity: person
    key: id
    observed_at: seen
    fields:
      employee_id: {from: emp, transforms: [strip]}
      email: {from: mail, transforms: [email]}
      title: {from: title, transforms: [strip]}
"""


def _spell_serial(s: str, r: random.Random) -> str:
    return r.choice([s, s.lower(), f" {s} ", f"{s[:3]} {s[3:]}"])


def _spell_mac(h: str, r: random.Random) -> str:
    pairs = [h[i:i + 2] for i in range(0, 12, 2)]
    return r.choice([h, h.upper(), ":".join(pairs), "-".join(pairs).upper(), f"{h[:4]}.{h[4:8]}.{h[8:]}"])


def _spell_uuid(u: str, r: random.Random) -> str:
    return r.choice([u, u.upper(), f"{{{u}}}", u.replace("-", "")])


@st.composite
def populations(draw: st.DrawFn) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per source: its thing and people records (consistent: every record describes one real thing)."""
    r = random.Random(draw(st.integers(0, 2**32)))
    n_devices, n_people = draw(st.integers(1, 6)), draw(st.integers(0, 4))
    devices = []
    for i in range(n_devices):
        h = f"{r.getrandbits(128):032x}"
        devices.append({"serial": f"SN{i:03d}{r.choice('ABCDEFGH')}{r.randint(10, 99)}",
                        "macs": [f"a4{r.getrandbits(40):010x}" for _ in range(r.randint(1, 2))],
                        "entra": f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}", "host": f"lt-{i:03d}"})
    people = [{"emp": f"E{100 + i}", "mail": f"person{i}@example.com"} for i in range(n_people)]
    out: dict[str, dict[str, list[dict[str, Any]]]] = {s: {"devices": [], "people": []} for s in SOURCES}
    for src in SOURCES:
        for i, d in enumerate(devices):
            if r.random() < 0.25:
                continue
            kinds = [k for k in ("serial", "macs", "entra", "host") if r.random() < 0.6] or ["macs"]
            rec: dict[str, Any] = {"id": f"{src}-{i}", "model": f"{src} model {i}",
                                   "user": r.choice(["a.b@example.com", "A.B@Example.com ", "c.d@example.com"]),
                                   "seen": f"2026-11-{r.randint(1, 3):02d}T08:00:00Z"}  # ties on purpose
            if "serial" in kinds:
                rec["serial"] = "To Be Filled By O.E.M." if r.random() < 0.15 else _spell_serial(d["serial"], r)
            if "macs" in kinds:
                rec["macs"] = [_spell_mac(m, r) for m in d["macs"]]
            if "entra" in kinds:
                rec["entra"] = _spell_uuid(d["entra"], r)
            if "host" in kinds:
                rec["host"] = d["host"].upper()
            out[src]["devices"].append(rec)
        for i, p in enumerate(people):
            if r.random() < 0.3:
                continue
            rec = {"id": f"{src}-p{i}", "title": f"{src} title {i}", "seen": f"2026-11-{r.randint(1, 2):02d}T00:00:00Z"}
            if r.random() < 0.7:
                rec["emp"] = f" {p['emp']} " if r.random() < 0.3 else p["emp"]
            if "emp" not in rec or r.random() < 0.7:
                rec["mail"] = p["mail"].upper() if r.random() < 0.3 else p["mail"]
            out[src]["people"].append(rec)
    return out


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty store to copy (migrating a new SQLite file for every example would dominate)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    Store.open(f"sqlite:///{path}").close()
    return path


def _sync(template: Path, workdir: Path, data: dict[str, dict[str, list[dict[str, Any]]]], order: list[str],
          merge_each: bool) -> list[str]:
    db = workdir / f"{'-'.join(order)}-{merge_each}.db"
    shutil.copy(template, db)
    mapping = workdir / "memory.yaml"
    mapping.write_text(MAPPING)
    settings = Settings(store=StoreConfig(url=f"sqlite:///{db}"), precedence=PrecedenceConfig(default=list(SOURCES)),
                        connectors=[ConnectorConfig(name=s, type="memory", mapping=str(mapping), settings=data[s])
                                    for s in SOURCES])
    registry = Registry(extra={"memory": MemoryConnector})
    store = Store.open(settings.store.url)
    try:
        for src in order:
            assert run_connector(settings, src, full=True, store=store, registry=registry,
                                 merge=merge_each).status == "success"
        merge_pending(settings, store)
        out = []
        with store.begin() as repo:
            for etype in ("asset", "person"):
                items = list(repo.entities.iter_entities(etype))
                feeds = repo.entities.source_keys_of([eid for eid, _, _ in items])
                for eid, golden, status in items:
                    if status == "merged":
                        continue
                    out.append(json.dumps({"type": etype, "status": status, "sources": sorted(feeds.get(eid, [])),
                                           "fields": {f: v[:2] for f, v in sorted(golden.items())}}, sort_keys=True))
    finally:
        store.close()
    return sorted(out)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=populations(), order=st.permutations(SOURCES), shuffle_seed=st.integers(0, 1000))
def test_same_records_in_any_order_give_the_same_golden_records(
        template_db: Path, data: dict[str, dict[str, list[dict[str, Any]]]], order: list[str],
        shuffle_seed: int) -> None:
    shuffled = {s: {k: random.Random(shuffle_seed).sample(v, len(v)) for k, v in streams.items()}
                for s, streams in data.items()}
    with tempfile.TemporaryDirectory() as tmp:
        first = _sync(template_db, Path(tmp), data, list(SOURCES), merge_each=False)
        second = _sync(template_db, Path(tmp), shuffled, list(order), merge_each=True)
    assert first == second
