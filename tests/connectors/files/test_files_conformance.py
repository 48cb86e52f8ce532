"""The file connectors through the shared conformance suite."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from itam_sync.connectors.files.connector import CsvConnector, JsonlConnector

from itam_sync.testing import conformance_suite

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "config" / "demo"


def _hide(path: Path):  # type: ignore[no-untyped-def]
    @contextlib.contextmanager
    def mock(fail: bool) -> Iterator[None]:
        if not fail:
            yield
            return
        moved = path.with_suffix(path.suffix + ".hidden")
        path.rename(moved)  # the source disappears: the run must fail, not mark everything missing
        try:
            yield
        finally:
            moved.rename(path)
    return mock


TestCsvConformance = conformance_suite(
    CsvConnector, {"path": str(DEMO / "procurement.csv"), "stream": "orders"}, mock=_hide(DEMO / "procurement.csv"),
    mapping=ROOT / "mappings" / "demo" / "procurement.yaml")
TestJsonlConformance = conformance_suite(
    JsonlConnector, {"path": str(DEMO / "mdm_devices.jsonl"), "stream": "devices"},
    mock=_hide(DEMO / "mdm_devices.jsonl"), mapping=ROOT / "mappings" / "demo" / "mdm.yaml")
