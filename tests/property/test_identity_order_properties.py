"""Order never matters: the same records give the same entity partition whatever the order of connectors, of
records within a pull, of batches, and whether they arrive in one full run or in many incremental ones (through
the real runner on SQLite).

Hypothesis makes small messy fleets: placeholder serials, laptops behind shared docks (some with placeholder
serials), host names as a weak key (some a shared default name), duplicate MDM enrolments, re-imaged laptops
(a new Entra device id beside the stale enrolment), cloned VMs sharing an SMBIOS UUID, identifiers in random
spellings, records missing from some sources, and people with a shared mailbox alias. Each fleet is synced four ways:
  reference    sources in order, one full run each, default batches
  shuffled     sources permuted, records shuffled, one record per batch
  incremental  the shuffled records in three slices, each source run incrementally after each slice
  no shortcut  the reference order with the resolver's fast path turned off
and the partitions (which record references are one entity) must be identical.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itam_sync.engine import resolution
from itam_sync.settings import IdentityConfig
from itam_sync.store import Store
from tests.engine.identity_world import World

SOURCES = ("mdm", "edr", "idp", "okta")
PLACEHOLDERS = ("To Be Filled By O.E.M.", "Default string", "0", "System Serial Number")
DOCKS = ("64:4b:f0:10:20:30", "3c:7c:3f:aa:bb:cc")


def _spell_mac(h: str, r: random.Random) -> str:
    pairs = [h[i:i + 2] for i in range(0, 12, 2)]
    return r.choice([h, h.upper(), ":".join(pairs), "-".join(pairs).upper()])


@st.composite
def fleets(draw: st.DrawFn) -> dict[str, dict[str, list[dict[str, Any]]]]:
    r = random.Random(draw(st.integers(0, 2**32)))
    out: dict[str, dict[str, list[dict[str, Any]]]] = {s: {"devices": [], "people": []} for s in SOURCES}
    devices = []
    for i in range(r.randint(2, 7)):
        h = f"{r.getrandbits(128):032x}"
        devices.append({
            "serial": r.choice(PLACEHOLDERS) if r.random() < 0.3 else f"SN{i:03d}{r.choice('ABCDEF')}",
            "macs": [f"a4{r.getrandbits(40):010x}"],
            "dock": r.choice(DOCKS) if r.random() < 0.45 else None,
            "entra": f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}",
            "reimaged": r.random() < 0.25, "uuid": None,
            "host": "DESKTOP-SETUP" if r.random() < 0.15 else f"LT-{i:03d}"})
    if len(devices) > 2 and r.random() < 0.5:  # two cloned VMs: one SMBIOS UUID, their own MACs
        u = f"{r.getrandbits(128):032x}"
        for d in devices[-2:]:
            d["uuid"] = f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}"
    def some(rec: dict[str, Any]) -> dict[str, Any]:
        """A source reports a random part of what it could (records missing identifiers link only through
        others, or by host name alone)."""
        kept = {k: v for k, v in rec.items() if k == "id" or r.random() < 0.75}
        return kept if len(kept) > 1 else rec

    for i, d in enumerate(devices):
        macs = [_spell_mac(m, r) for m in d["macs"]]
        if r.random() < 0.85:
            rec = {"id": f"mdm-{i}", "serial": d["serial"], "macs": macs, "entra": d["entra"], "host": d["host"]}
            if d["uuid"]:
                rec["uuid"] = d["uuid"]
            out["mdm"]["devices"].append(some(rec))
            if d["reimaged"]:  # the stale enrolment stays beside the new one, with the old Entra device id
                old = f"{r.getrandbits(128):032x}"
                out["mdm"]["devices"].append({**rec, "id": f"mdm-{i}-old", "entra": f"{old[:8]}-{old[8:12]}-4"
                                              f"{old[13:16]}-a{old[17:20]}-{old[20:]}"})
        if r.random() < 0.85:
            rec = {"id": f"edr-{i}", "serial": d["serial"] if r.random() < 0.8 else r.choice(PLACEHOLDERS),
                   "macs": macs + ([d["dock"]] if d["dock"] else []), "host": d["host"].lower()}
            if d["uuid"]:
                rec["uuid"] = d["uuid"]
            out["edr"]["devices"].append(some(rec))
        if r.random() < 0.6:
            out["idp"]["devices"].append(some({"id": f"idp-{i}", "entra": d["entra"].upper(), "host": d["host"],
                                               **({"serial": d["serial"].lower()} if r.random() < 0.5 else {})}))
        if r.random() < 0.5:  # an IdP device: the serial only (a purchase line would look the same)
            out["okta"]["devices"].append({"id": f"okta-{i}", "serial": d["serial"].lower()})
    for i in range(r.randint(0, 4)):
        mail = f"person{i}@example.com"
        shared = ["it-desk@example.com"] if r.random() < 0.4 else []
        out["idp"]["people"].append({"id": f"u{i}", "mail": mail.upper() if r.random() < 0.3 else mail,
                                     "aliases": shared})
        if r.random() < 0.8:
            out["mdm"]["people"].append({"id": f"E{i}", "emp": f"E{i}", "mail": mail})
    return out


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    Store.open(f"sqlite:///{path}").close()
    return path


def _world(template: Path, root: Path, name: str, batch_size: int = 5000) -> World:
    d = root / name
    d.mkdir()
    # Host names as a weak key too: they join records no strong key matched, which order must not change either.
    w = World(d, sources=SOURCES, batch_size=batch_size, identity=IdentityConfig(hostname_weak_key=True))
    shutil.copy(template, w.db)
    return w


def _partitions(w: World) -> tuple[set[frozenset[str]], set[frozenset[str]]]:
    return w.partition("asset"), w.partition("person")


def _shuffled(data: dict[str, dict[str, list[dict[str, Any]]]], seed: int) -> dict[str, dict[str, list[Any]]]:
    r = random.Random(seed)
    return {s: {k: r.sample(v, len(v)) for k, v in streams.items()} for s, streams in data.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=fleets(), order=st.permutations(SOURCES), seed=st.integers(0, 10_000))
def test_any_order_any_batching_and_incremental_histories_give_one_partition(
        template_db: Path, data: dict[str, dict[str, list[dict[str, Any]]]], order: list[str], seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ref = _world(template_db, root, "reference")
        for s in SOURCES:
            ref.sync(s, devices=data[s]["devices"], people=data[s]["people"], merge=False)
        expected = _partitions(ref)

        shuffled = _shuffled(data, seed)
        one = _world(template_db, root, "shuffled", batch_size=1)
        for s in order:
            one.sync(s, devices=shuffled[s]["devices"], people=shuffled[s]["people"])
        assert _partitions(one) == expected

        inc = _world(template_db, root, "incremental", batch_size=2)
        for part in (1, 2, 3):
            for s in order:
                devs, ppl = shuffled[s]["devices"], shuffled[s]["people"]
                inc.sync(s, devices=devs[:len(devs) * part // 3], people=ppl[:len(ppl) * part // 3], full=False)
        assert _partitions(inc) == expected

        slow = _world(template_db, root, "no-shortcut")
        resolution.FAST = False
        try:
            for s in SOURCES:
                slow.sync(s, devices=data[s]["devices"], people=data[s]["people"], merge=False)
        finally:
            resolution.FAST = True
        assert _partitions(slow) == expected
