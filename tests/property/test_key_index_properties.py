"""The per-run key index never changes what identity writes: hypothesis' messy fleets (placeholder serials,
shared docks, re-imaged laptops, cloned VMs, weak host names, shared mailbox aliases) synced one record per
batch, in a random source order, then again with a third of the records changed or gone, give exactly the same
entities, entity_keys, conflicts, ambiguous identifiers, record entities and merge-log rows with an index of
any bound (0 to 200,000 keys) as without one."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itam_sync import clock
from itam_sync.engine import runner
from itam_sync.settings import IdentityConfig, Settings
from tests.engine.identity_world import World
from tests.engine.test_key_index import PerRun, dump, without_index
from tests.property.test_identity_order_properties import SOURCES, fleets

Fleet = dict[str, dict[str, list[dict[str, Any]]]]


def _later(data: Fleet, seed: int) -> Fleet:
    """The fleet a while later: some records gone (marked missing), some with a MAC or serial swapped."""
    r = random.Random(seed)
    out: Fleet = {}
    for s, streams in data.items():
        out[s] = {}
        for name, recs in streams.items():
            kept = []
            for i, rec in enumerate(recs):
                x = r.random()
                if x < 0.15 and i:  # a source never empties (the deletion guard would stop the run)
                    continue
                if x < 0.35 and name == "devices":
                    rec = {**rec, "macs": [f"a4{r.getrandbits(40):010x}"]} if "macs" in rec else \
                        {**rec, "serial": f"SN9{r.randint(0, 99):02d}Z"}
                kept.append(rec)
            out[s][name] = kept
    return out


class _World(World):
    """A world whose later pulls may drop what a field was filled in (records go, identifiers change)."""

    @property
    def settings(self) -> Settings:
        s = super().settings
        return s.model_copy(update={"sync": s.sync.model_copy(update={"fill_rate_drop": 1.0})})


def _play(w: World, history: list[tuple[list[str], Fleet]]) -> list[dict[str, list[tuple[Any, ...]]]]:
    out = []
    for order, data in history:
        for s in order:
            w.sync(s, devices=data[s]["devices"], people=data[s]["people"])
            out.append(dump(w))
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=fleets(), order=st.permutations(SOURCES), seed=st.integers(0, 10_000),
       max_keys=st.sampled_from([0, 1, 3, 8, 200_000]))
def test_an_index_of_any_bound_gives_the_same_identity_state(data: Fleet, order: list[str], seed: int,
                                                             max_keys: int) -> None:
    history = [(list(order), data), (list(reversed(order)), _later(data, seed))]
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setenv(clock.NOW_ENV, clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"))  # timestamps compare too
        root = Path(tmp)
        worlds = []
        for name in ("plain", "indexed"):
            (root / name).mkdir()
            worlds.append(_World(root / name, SOURCES, identity=IdentityConfig(hostname_weak_key=True), batch_size=1))
        mp.setattr(runner, "Resolver", without_index)
        expected = _play(worlds[0], history)
        per_run = PerRun(max_keys)
        mp.setattr(runner, "Resolver", per_run)
        got = _play(worlds[1], history)
    assert got == expected
    assert not per_run.sizes or max(per_run.sizes) <= max_keys
