"""The procurement connector on real files: CSV and XLSX (written by openpyxl), import-once cursor, mapping."""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from itam_sync.connectors.procurement.connector import ProcurementConnector, ProcurementSettings, normalize_header
from pydantic import ValidationError

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import SyncFailed, run_connector
from itam_sync.mapping.loader import load_mapping
from itam_sync.sdk.connector import BadRecord, ConnectorError, StreamState
from itam_sync.settings import ConnectorConfig, Settings, StoreConfig
from itam_sync.store import Store
from itam_sync.testing import conformance_suite

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
CSV_NAME = "2024-05-purchases.csv"
XLSX_HEADER = ["PO Number", "Supplier", "Make", "Model", "Serial Number", "Cost", "Currency", "Purchase Date",
               "Warranty End Date", "Asset Type"]
XLSX_ROWS: list[list[Any]] = [
    ["PO-2024-0533", "CDW", "Lenovo", "ThinkPad X1 Carbon Gen 12", "PF5XYZ12", 1899.0, "SEK",
     dt.datetime(2024, 6, 3), dt.date(2027, 6, 2), "Laptop"],
    ["PO-2024-0533", "CDW", "Jabra", "Evolve2 85", 123456789012, 279.5, "SEK", dt.datetime(2024, 6, 3), None,
     "Headset"],
    [None, None, None, None, None, None, None, None, None, None],
    ["PO-2024-0534", "CDW", "Dell", "Latitude 7440", "9TX4PQ5", "#REF!", "SEK", dt.datetime(2024, 6, 4), None,
     "Laptop"],
    # The Dell line of the May CSV, exported again in June: the same purchase line, not a new asset.
    ["PO-2024-0419", "Dustin AB", "Dell", "Latitude 7440", "7QK2LM3", 1349, "EUR", dt.datetime(2024, 5, 6),
     dt.datetime(2027, 5, 5), "Laptop"],
]


def write_xlsx(path: Path, rows: list[list[Any]] | None = None, sheets: tuple[str, ...] = ("Purchases",)) -> Path:
    book = openpyxl.Workbook()
    first = book.active
    assert first is not None
    for i, title in enumerate(sheets):
        ws = first if i == 0 else book.create_sheet(title)
        ws.title = title
        if title == "Purchases":
            ws.append(XLSX_HEADER)
            for row in XLSX_ROWS if rows is None else rows:
                ws.append(row)
        else:
            ws.append(["Total", 4])
    book.save(path)
    return path


def make_folder(folder: Path, reexport: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / CSV_NAME, folder / CSV_NAME)
    write_xlsx(folder / "2024-06-purchases.xlsx", rows=None if reexport else XLSX_ROWS[:-1])
    return folder


# The conformance suite needs its settings when the module loads: a folder of its own, removed at exit.
CONFORMANCE_DIR = Path(tempfile.mkdtemp(prefix="itam-procurement-"))
atexit.register(shutil.rmtree, CONFORMANCE_DIR, True)
make_folder(CONFORMANCE_DIR / "drop", reexport=False)  # one pull's source keys must be unique


def hide_folder(fail: bool) -> contextlib.AbstractContextManager[Any]:
    @contextlib.contextmanager
    def ctx() -> Iterator[None]:
        if not fail:
            yield
            return
        folder = CONFORMANCE_DIR / "drop"
        folder.rename(CONFORMANCE_DIR / "gone")  # the share disappears: the run must fail, not shrink
        try:
            yield
        finally:
            (CONFORMANCE_DIR / "gone").rename(folder)
    return ctx()


TestProcurementConformance = conformance_suite(ProcurementConnector, {"folder": str(CONFORMANCE_DIR / "drop")},
                                               mock=hide_folder)


# ------------------------------------------------------------------------------------------ helpers

@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "drop")


def connector(folder: Path, **overrides: Any) -> ProcurementConnector:
    return ProcurementConnector("procurement", ProcurementSettings.model_validate({"folder": str(folder),
                                                                                   **overrides}))


def pull(folder: Path, state: StreamState | None = None, **overrides: Any) -> list[Any]:
    (stream,) = connector(folder, **overrides).streams()
    return list(stream.records(state or StreamState()))


def make_settings(tmp: Path, folder: Path, guard: float | None = None) -> Settings:
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp / 'procurement.db'}"),
                    connectors=[ConnectorConfig(name="finance", type="procurement", deletion_guard=guard,
                                                settings={"folder": str(folder)},
                                                mapping=str(ROOT / "mappings" / "procurement.yaml"))])


def run(settings: Settings, full: bool = True, allow_shrink: bool = False) -> Any:
    return run_connector(settings, "finance", full=full, allow_shrink=allow_shrink,
                         registry=Registry(extra={"procurement": ProcurementConnector}))


def db(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        out = repo.entities.counts(), repo.runs.get_cursors("finance")
    store.close()
    return out


# -------------------------------------------------------------------------------------------- tests

def test_csv_and_xlsx_lines_become_text_records_with_provenance(folder: Path) -> None:
    got = [r for r in pull(folder) if not isinstance(r, BadRecord)]
    assert [(r["_file"], r["_row"]) for r in got] == [
        (CSV_NAME, 2), (CSV_NAME, 3), (CSV_NAME, 4), (CSV_NAME, 6), (CSV_NAME, 7),
        ("2024-06-purchases.xlsx", 2), ("2024-06-purchases.xlsx", 3), ("2024-06-purchases.xlsx", 6)]
    assert got[0] == {"po_number": "PO-2024-0412", "vendor": "Atea Sverige AB", "manufacturer": "Apple",
                      "model": 'MacBook Pro 14" M3', "serial": "c02fk1abq6l4", "unit_price": "$2,499.00",
                      "currency": "usd", "order_date": "2024-05-02", "warranty_end": "2027-05-01",
                      "category": "Notebook", "_file": CSV_NAME, "_row": 2}
    x1, headset = got[5], got[6]
    assert (x1["cost"], x1["purchase_date"], x1["warranty_end_date"]) == ("1899", "2024-06-03", "2027-06-02")
    assert (headset["serial_number"], headset["cost"], headset["warranty_end_date"]) == ("123456789012", "279.5", "")


def test_unparseable_lines_are_bad_records_naming_file_and_row(folder: Path) -> None:
    bad = [r for r in pull(folder) if isinstance(r, BadRecord)]
    assert [b.reason for b in bad] == [
        f"{CSV_NAME}:8: 7 columns, the header has 10",
        "2024-06-purchases.xlsx:5: column 'cost' holds the Excel error #REF!"]
    assert bad[0].raw.startswith("PO-2024-0422,Dustin AB")


def test_unreadable_files_are_bad_records_and_the_others_are_imported(folder: Path) -> None:
    (folder / "broken.xlsx").write_bytes(b"PK\x03\x04 this is not a workbook")
    (folder / "latin1.csv").write_bytes("PO Number,Vendor\nPO-1,Åhléns\n".encode("latin-1"))
    got = pull(folder)
    reasons = [r.reason for r in got if isinstance(r, BadRecord)]
    assert any(r.startswith("broken.xlsx: cannot read the file (BadZipFile") for r in reasons)
    assert any(r.startswith("latin1.csv:2: cannot read the file (UnicodeDecodeError") for r in reasons)  # the line
    assert len([r for r in got if not isinstance(r, BadRecord)]) == 8
    assert pull(folder, encoding="latin-1", pattern="latin1.csv")[0]["vendor"] == "Åhléns"


def test_pattern_hidden_and_excel_lock_files(folder: Path) -> None:
    shutil.copy(FIXTURES / CSV_NAME, folder / "~$2024-06-purchases.xlsx")
    shutil.copy(FIXTURES / CSV_NAME, folder / ".partial.csv")
    shutil.copy(FIXTURES / CSV_NAME, folder / "notes.txt")
    files = {r["_file"] for r in pull(folder) if not isinstance(r, BadRecord)}
    assert files == {CSV_NAME, "2024-06-purchases.xlsx"}
    assert {r["_file"] for r in pull(folder, pattern="*.XLSX") if not isinstance(r, BadRecord)} == {
        "2024-06-purchases.xlsx"}


def test_named_sheet_and_a_missing_sheet_is_a_config_error(tmp_path: Path) -> None:
    folder = tmp_path / "sheets"
    folder.mkdir()
    write_xlsx(folder / "export.xlsx", sheets=("Summary", "Purchases"))
    assert pull(folder) == []  # the first sheet is the summary: one header row, no lines
    assert len([r for r in pull(folder, sheet="Purchases") if not isinstance(r, BadRecord)]) == 3
    with pytest.raises(ConnectorError, match="no sheet 'Lines'.*Summary, Purchases") as err:
        pull(folder, sheet="Lines")
    assert err.value.kind == "config"


def test_cursor_is_the_hashes_of_imported_files_and_incremental_skips_them(folder: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, folder)
    first = run(settings)
    assert first.status == "success" and first.counts["purchases"]["seen"] == 10
    counts, cursors = db(settings)
    assert len(cursors["purchases"]) == 2 and all(len(h) == 64 for h in cursors["purchases"])
    # Nothing new: nothing read. A renamed copy of an imported file is the same content: skipped too.
    shutil.copy(folder / CSV_NAME, folder / "2024-05-purchases (copy).csv")
    again = run(settings, full=False)
    assert again.counts["purchases"]["seen"] == 0 and db(settings)[1] == cursors
    # A new month's file is imported, once.
    write_xlsx(folder / "2024-07-purchases.xlsx", rows=[
        ["PO-2024-0601", "CDW", "Apple", "MacBook Air 13", "FVFH1234Q6L5", 1299, "EUR", dt.date(2024, 7, 1),
         dt.date(2025, 7, 1), "Laptop"]])
    july = run(settings, full=False)
    assert (july.counts["purchases"]["seen"], july.counts["purchases"]["new"]) == (1, 1)
    assert len(db(settings)[1]["purchases"]) == 3
    assert run(settings, full=False).counts["purchases"]["seen"] == 0
    # A file edited in place has new content, so it is read again.
    with (folder / CSV_NAME).open("a", encoding="utf-8") as fh:
        fh.write("PO-2024-0430,Dustin AB,Dell,Latitude 7440,5ZZ9AB1,1349,EUR,2024-05-20,2027-05-19,Laptop\r\n")
    edited = run(settings, full=False)
    assert edited.counts["purchases"]["seen"] == 7 and edited.counts["purchases"]["new"] == 1
    assert edited.counts["_total"]["missing_marked"] == 0


def test_a_reexported_line_updates_the_same_record(folder: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, folder)
    (folder / "2024-06-purchases.xlsx").rename(tmp_path / "june.xlsx")
    run(settings)
    before = db(settings)[0]["source_records"]
    (tmp_path / "june.xlsx").rename(folder / "2024-06-purchases.xlsx")
    june = run(settings, full=False)
    # Two new lines; the repeated Dell line (PO-2024-0419/7QK2LM3) is the existing record, not a third.
    assert june.counts["purchases"]["new"] == 2 and june.counts["purchases"]["changed"] == 1
    assert db(settings)[0]["source_records"] == before + 2


def test_full_run_rereads_every_file_and_only_a_removed_files_lines_go_missing(folder: Path,
                                                                                 tmp_path: Path) -> None:
    settings = make_settings(tmp_path, folder)
    run(settings)
    write_xlsx(folder / "2024-07-purchases.xlsx", rows=[
        ["PO-2024-0601", "CDW", "Apple", "MacBook Air 13", "FVFH1234Q6L5", 1299, "EUR", dt.date(2024, 7, 1),
         None, "Laptop"]])
    run(settings, full=False)
    full = run(settings)  # every file is still there: their lines are all seen again
    assert full.status == "success" and full.counts["_total"]["missing_marked"] == 0
    assert full.counts["purchases"]["seen"] == 11
    (folder / "2024-07-purchases.xlsx").unlink()
    (folder / CSV_NAME).unlink()
    guarded = run(settings)
    assert guarded.status == "guarded" and db(settings)[0]["missing_records"] == 0
    shrunk = run(settings, allow_shrink=True)
    # The May CSV's two Macs (its Dell line lives on in the June export) and July's one line.
    assert shrunk.status == "success" and shrunk.counts["_total"]["missing_marked"] == 2 + 1
    assert len(db(settings)[1]["purchases"]) == 1  # the cursor now holds only the file still present


def test_missing_folder_fails_the_run_and_marks_nothing(folder: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, folder)
    run(settings)
    folder.rename(tmp_path / "elsewhere")
    with pytest.raises(SyncFailed, match="procurement folder not found"):
        run(settings)
    counts, _ = db(settings)
    assert counts["missing_records"] == 0


def test_empty_folder_full_run_is_guarded(folder: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, folder)
    run(settings)
    for f in folder.iterdir():
        f.unlink()
    assert run(settings).status == "guarded"
    assert db(settings)[0]["missing_records"] == 0


def test_unmappable_and_unkeyed_lines_are_quarantined_by_the_engine(folder: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, folder)
    result = run(settings)
    c = result.counts["purchases"]
    # 2 bad lines from the connector, the monitor without serial (no key) and the "tbd" cost from the mapping.
    assert c["quarantined"] == 4 and c["new"] == 5
    store = Store.open(settings.store.url)
    with store.begin() as repo:
        reasons = [r[5] for r in repo.quarantine.list_quarantine(result.run_id)]
    store.close()
    assert any("purchase_cost" in r and "tbd" in r for r in reasons)
    assert any("no source key" in r for r in reasons)


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="at least one glob"):
        ProcurementSettings.model_validate({"folder": "/x", "pattern": " , "})
    with pytest.raises(ValidationError, match="Extra inputs"):
        ProcurementSettings.model_validate({"folder": "/x", "path": "/x/*.csv"})


def test_header_normalisation() -> None:
    assert [normalize_header(h) for h in ["PO Number", " Serial # ", "Unit Price (EUR)", "warranty-end"]] == [
        "po_number", "serial", "unit_price_eur", "warranty_end"]


# ----------------------------------------------------------------------------------- mapping golden

def mapped(record: dict[str, Any]) -> dict[str, Any]:
    obs = load_mapping(ROOT / "mappings" / "procurement.yaml").stream("purchases").map(record)
    return {"key": obs.source_key, "observed_at": obs.observed_at, **obs.fields}


def test_mapping_golden(folder: Path) -> None:
    got = [r for r in pull(folder) if not isinstance(r, BadRecord)]
    assert mapped(got[0]) == {
        "key": "PO-2024-0412/c02fk1abq6l4", "observed_at": None, "order_number": "PO-2024-0412",
        "vendor": "Atea Sverige AB", "manufacturer": "Apple", "model": 'MacBook Pro 14" M3',
        "serial_number": "C02FK1ABQ6L4", "purchase_cost": 2499.0, "currency": "USD", "purchase_date": "2024-05-02",
        "warranty_end": "2027-05-01", "kind": "laptop"}
    assert mapped(got[5]) == {
        "key": "PO-2024-0533/PF5XYZ12", "observed_at": None, "order_number": "PO-2024-0533", "vendor": "CDW",
        "manufacturer": "Lenovo", "model": "ThinkPad X1 Carbon Gen 12", "serial_number": "PF5XYZ12",
        "purchase_cost": 1899.0, "currency": "SEK", "purchase_date": "2024-06-03", "warranty_end": "2027-06-02",
        "kind": "laptop"}
    headset = mapped(got[6])
    assert "kind" not in headset and headset["serial_number"] == "123456789012" and "warranty_end" not in headset
    assert mapped(got[2])["key"] == mapped(got[7])["key"] == "PO-2024-0419/7QK2LM3"  # file-independent
