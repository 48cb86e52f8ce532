"""Procurement files: CSV and XLSX purchase records dropped in a watched folder, each file imported once.

Every file in `folder` whose name matches `pattern` ("*.csv,*.xlsx") is a batch of purchase lines. A line
becomes one raw record: its header names normalised to snake_case ("PO Number" -> `po_number`, "Serial #"
-> `serial`), every value as text (XLSX dates as ISO dates, numbers without a spurious ".0"), plus `_file`
and `_row` saying where it came from (shown in the quarantine and `explain`). mappings/procurement.yaml maps
the columns; its source key is the order number and serial (or line id), never the file, so a line that a
later export repeats updates the same record instead of duplicating it.

Imported once: the cursor (`state.new_cursor`) is the sorted list of SHA-256 hashes of the files already
imported. An incremental run reads only files whose content hash is not in it, so a finance export dropped
each month is read once; a renamed copy is skipped, and a file edited in place (new content, new hash) is read
again. The hash is of the exact bytes parsed, so a file still being copied when the run started is re-read,
whole, once the copy completes. A full run reads every file in the folder again: lines of files still there
are seen, so nothing of theirs is marked missing; removing a file and running with --full marks its lines
missing (behind the deletion guard, as any full run).

Lines that cannot be read are quarantined as `BadRecord`s naming `file:row` (wrong number of CSV columns, an
Excel error value such as #REF!, a file that is not valid XLSX or not in `encoding`); the rest of the file
is imported. A file that cannot be read to its end makes a full run mark nothing missing and end `degraded`
(what could not be read is not gone).
A file without a column for the mapping's source key or a match-key field (a serial column) is refused
whole, naming its header line, and stays unimported so the next run reports it again. Values the mapping
cannot convert (a cost of "tbd") are quarantined by the engine with the raw record, whose `_file`/`_row` say
where to fix them.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from itam_sync.sdk.connector import BadRecord, Connector, ConnectorError, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.required import Required, header_unmet, refusal
from itam_sync.sdk.tabular import EXCEL_ERRORS, cell_text, csv_rows, header_names, normalize_header, xlsx_rows
from itam_sync.settings.paths import ConfigPath

__all__ = ["ProcurementConnector", "ProcurementSettings", "normalize_header"]
log = logging.getLogger(__name__)

XLSX_SUFFIXES = (".xlsx", ".xlsm")  # read as workbooks; anything else matching the pattern is read as CSV


class ProcurementSettings(ConnectorSettings):
    """Settings of the `procurement` connector."""

    folder: ConfigPath = Field(description="The watched folder (not searched recursively); relative to the config "
                               "file's folder")
    pattern: str = Field(default="*.csv,*.xlsx", description="Comma-separated file name globs to import")
    sheet: str | None = Field(default=None, description="XLSX sheet to read; default the workbook's first sheet")
    stream: str = Field(default="purchases", description="Stream name; the mapping's streams key")
    encoding: str = Field(default="utf-8-sig", description="Text encoding of CSV files")
    delimiter: str = Field(default=",", min_length=1, max_length=1, description="CSV delimiter (; for many "
                                                                               "European Excel exports)")
    normalize_headers: bool = Field(default=True, description="Header names to snake_case (PO Number -> "
                                                              "po_number); false keeps them verbatim")

    @field_validator("pattern")
    @classmethod
    def _patterns(cls, v: str) -> str:
        if not [p for p in v.split(",") if p.strip()]:
            raise ValueError("give at least one glob, e.g. *.csv,*.xlsx")
        return v

    def globs(self) -> list[str]:
        return [p.strip() for p in self.pattern.split(",") if p.strip()]


class PurchaseFiles(Stream):
    """Purchase lines of every not-yet-imported file (every file on a full run), in file-name order."""

    name = "purchases"
    connector: ProcurementConnector

    def __init__(self, connector: ProcurementConnector) -> None:
        super().__init__(connector)
        self.name = connector.settings.stream  # type: ignore[misc]
        self._where, self._refused = "", False

    def position(self) -> str | None:
        return self._where or None

    def files(self) -> list[Path]:
        s = self.connector.settings
        folder = Path(s.folder)
        if not folder.is_dir():  # a vanished share must fail the run, not read as "no purchases"
            raise ConnectorError(f"procurement folder not found: {folder} (fix: settings.folder)", kind="config")
        return sorted(p for p in folder.iterdir()
                      if p.is_file() and not p.name.startswith((".", "~$"))  # hidden files, Excel lock files
                      and any(fnmatch.fnmatch(p.name.lower(), g.lower()) for g in s.globs()))

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        imported: set[str] = set() if state.full or not state.cursor else set(state.cursor)
        for path in self.files():
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest in imported:
                log.info("%s: %s already imported (same content); skipped", self.connector.name, path.name)
                continue
            log.info("%s: importing %s", self.connector.name, path.name)
            self._refused = False
            yield from self.lines(path, data, state.required)
            if not self._refused:  # a refused file is reported again until it is fixed or removed
                imported.add(digest)
        state.new_cursor = sorted(imported)

    def lines(self, path: Path, data: bytes, required: Required = ()) -> Iterator[dict[str, Any] | BadRecord]:
        s = self.connector.settings
        n = 0
        try:
            rows = (xlsx_rows(data, s.sheet) if path.suffix.lower() in XLSX_SUFFIXES
                    else csv_rows(data, s.encoding, s.delimiter))
            header: list[str] | None = None
            for n, cells in rows:
                if all(cell_text(c).strip() == "" for c in cells):
                    continue
                if header is None:
                    header = header_names(cells, s.normalize_headers)
                    missing = header_unmet(required, header, ("_file", "_row"))
                    if missing:
                        self._refused, self._where = True, f"{path.name}:{n}"
                        yield BadRecord(refusal(self._where, missing, f"the header has: {', '.join(header)}"),
                                        incomplete=True, position=self._where)
                        return
                    continue
                self._where = f"{path.name}:{n}"
                yield self.record(path.name, n, header, cells)
        except (UnicodeDecodeError, zipfile.BadZipFile, KeyError, OSError, ValueError, csv.Error) as exc:
            # The lines before the failure are kept; the file's hash is recorded, since the same bytes would
            # fail again: a corrected export is a new file. The run is degraded: the rest was not read.
            line = data[:exc.start].count(b"\n") + 1 if isinstance(exc, UnicodeDecodeError) else n + 1
            self._where = f"{path.name}:{line}" if isinstance(exc, UnicodeDecodeError | csv.Error) else path.name
            yield BadRecord(f"{self._where}: cannot read the file ({type(exc).__name__}: {str(exc)[:200]}); the rest "
                            "of it was not read", incomplete=True, position=self._where)

    @staticmethod
    def record(file: str, n: int, header: list[str], cells: list[Any]) -> dict[str, Any] | BadRecord:
        where = f"{file}:{n}"
        raw = ",".join(cell_text(c) for c in cells)[:2000]
        extra = cells[len(header):]
        if len(cells) < len(header) or any(cell_text(c).strip() for c in extra):
            return BadRecord(f"{where}: {len(cells)} columns, the header has {len(header)}", raw, position=where)
        rec: dict[str, Any] = {}
        for name, value in zip(header, cells, strict=False):
            text = cell_text(value)
            if isinstance(value, str) and value in EXCEL_ERRORS:
                return BadRecord(f"{where}: column {name!r} holds the Excel error {value}", raw, position=where)
            if not name:
                if text.strip():
                    return BadRecord(f"{where}: a value in a column without a header", raw, position=where)
                continue
            rec[name] = text
        return {**rec, "_file": file, "_row": n}


class ProcurementConnector(Connector):
    """CSV/XLSX purchase records (-> assets: order, vendor, cost, dates, warranty) from a watched folder."""

    type_name = "procurement"
    description = "Procurement files: CSV/XLSX purchase records from a watched folder, each file imported once"
    settings_model = ProcurementSettings
    example_settings: ClassVar[dict[str, Any]] = {"folder": "/srv/itam/procurement", "pattern": "*.csv,*.xlsx"}
    settings: ProcurementSettings

    def streams(self) -> list[Stream]:
        return [PurchaseFiles(self)]
