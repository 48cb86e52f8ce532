"""A procurement file without a column for the mapping's source key or serial is refused whole (issue #14): it
names file and header line, stages nothing, degrades the run and stays unimported until fixed or removed."""

from __future__ import annotations

from pathlib import Path

from itam_sync.connectors.procurement.connector import ProcurementConnector

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import run_connector
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store

ROOT = Path(__file__).resolve().parents[3]
GOOD = "PO Number,Supplier,Model,Serial Number,Cost\nPO-1,CDW,MacBook Air,FVFH1234Q6L5,1299\n"
NO_SERIAL = "PO Number,Supplier,Model,Line,Cost\nPO-2,CDW,Dock,1,199\nPO-2,CDW,Dock,2,199\n"


def _run(tmp: Path, folder: Path, full: bool) -> object:
    settings = Settings(store=StoreConfig(url=f"sqlite:///{tmp / 'p.db'}"),
                        connectors=[ConnectorConfig(name="finance", type="procurement",
                                                    settings={"folder": str(folder)},
                                                    mapping=str(ROOT / "mappings" / "procurement.yaml"))])
    return run_connector(settings, "finance", full=full, registry=Registry(extra={"procurement": ProcurementConnector}))


def test_a_file_without_a_serial_column_is_refused_and_reported_again(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.csv").write_text(GOOD)
    (folder / "b.csv").write_text(NO_SERIAL)

    first = _run(tmp_path, folder, full=True)

    assert first.status == "degraded"  # type: ignore[attr-defined]
    assert first.counts["purchases"]["new"] == 1  # type: ignore[attr-defined]  # a.csv only
    (warning,) = first.warnings  # type: ignore[attr-defined]
    assert warning.startswith("finance purchases: b.csv:1: file refused, nothing of it was staged: no serial_number "
                              "(one of serial_number, serial, serial_no, service_tag); the header has: po_number, "
                              "supplier, model, line, cost")
    assert warning.endswith("; nothing of this stream was marked missing")
    store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")
    with store.begin() as repo:
        (row,) = repo.quarantine.list_quarantine()
        assert row[6] == "b.csv:1"
        assert len(repo.runs.get_cursors("finance")["purchases"]) == 1  # only a.csv counts as imported
    store.close()
    # The next incremental run reads b.csv again (and refuses it again) instead of forgetting it.
    again = _run(tmp_path, folder, full=False)
    assert again.status == "degraded" and again.counts["purchases"]["seen"] == 1  # type: ignore[attr-defined]
