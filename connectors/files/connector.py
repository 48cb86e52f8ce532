"""File connectors (`csv`, `jsonl`): procurement records and inventory exports dropped as files.

One connector instance reads one file (or every file matching a glob, in name order) as one stream.
Incremental runs skip the read when no file changed since the last run (size and mtime fingerprint);
full runs always read everything. A line that cannot be parsed is quarantined, not fatal; with a truncated
file, bytes not in `encoding` or an oversized CSV value it is named by file and line, and a file without a
column for its mapping's source key or a match-key field is refused whole (itam_sync/sdk/textfiles.py). A
full run that met any of these marks nothing of the stream missing and ends `degraded`.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from itam_sync import clock
from itam_sync.sdk.connector import BadRecord, Connector, ConnectorError, ConnectorSettings, Stream, StreamState
from itam_sync.sdk.dates import shift_record
from itam_sync.sdk.required import Required
from itam_sync.sdk.textfiles import csv_records, jsonl_records
from itam_sync.settings.paths import ConfigPath

log = logging.getLogger(__name__)


class FileSettings(ConnectorSettings):
    """Settings shared by the file connectors."""

    path: ConfigPath = Field(description="File path or glob; relative to the config file's folder")
    stream: str = Field(default="records", description="Stream name; the mapping's streams key")
    encoding: str = "utf-8-sig"
    dates_relative_to: datetime | None = Field(
        default=None, description="Demo and test data only: the instant the file was written at. Every ISO "
        "date-time in its records moves by (now - this instant), dates by as many days: the same story on any day.")


class CsvSettings(FileSettings):
    path: ConfigPath = Field(description="CSV file or glob, relative to the config file's folder "
                             "(e.g. exports/procurement-*.csv)")
    delimiter: str = ","


class JsonlSettings(FileSettings):
    path: ConfigPath = Field(description="JSON Lines file or glob, relative to the config file's folder "
                             "(e.g. exports/inventory-*.jsonl)")


def _files(pattern: str) -> list[Path]:
    matches = sorted(glob.glob(pattern)) if any(ch in pattern for ch in "*?[") else [pattern]
    paths = [Path(m) for m in matches]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise ConnectorError(f"file not found: {missing[0] if missing else pattern} "
                             "(fix: check settings.path; relative paths start from the config file's folder)",
                             kind="config")
    return paths


def _fingerprint(paths: list[Path]) -> str:
    parts = []
    for p in paths:
        st = os.stat(p)
        parts.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


class FileStream(Stream):
    """All records of the configured file(s)."""

    name = "records"
    json_records = True  # JSON/JSONL values and CSV text

    def __init__(self, connector: FileConnector) -> None:
        super().__init__(connector)
        self.file_connector = connector
        self.name = connector.settings.stream  # type: ignore[misc,attr-defined]
        self._where: tuple[Path | None, int] = (None, 0)

    def position(self) -> str | None:
        path, line = self._where
        return None if path is None else f"{path}:{line}"

    def records(self, state: StreamState) -> Iterator[dict[str, Any] | BadRecord]:
        settings: FileSettings = self.file_connector.settings  # type: ignore[assignment]
        paths = _files(settings.path)
        fingerprint = _fingerprint(paths)
        state.new_cursor = fingerprint
        if not state.full and state.cursor == fingerprint:
            log.info("%s: files unchanged since the last run; nothing to read", self.connector.name)
            return
        anchor = settings.dates_relative_to
        delta = None
        if anchor:  # whole hours: data read a few seconds apart (or by several workers) shifts the same way
            elapsed = clock.now() - (anchor if anchor.tzinfo else anchor.replace(tzinfo=UTC))
            delta = timedelta(hours=round(elapsed / timedelta(hours=1)))
        for path in paths:
            for line, rec in self.file_connector.read(path, state.required):
                self._where = (path, line)
                yield shift_record(rec, delta) if delta and isinstance(rec, dict) else rec


class FileConnector(Connector):
    """Base of the file connectors: one stream, read by `read()`."""

    def streams(self) -> list[Stream]:
        return [FileStream(self)]

    def read(self, path: Path, required: Required) -> Iterator[tuple[int, dict[str, Any] | BadRecord]]:
        """(line number, record) of one file; a file without a `required` column yields only its refusal."""
        raise NotImplementedError


class CsvConnector(FileConnector):
    """CSV with a header row; every column becomes a key of the raw record."""

    type_name = "csv"
    description = "CSV files (procurement records, inventory exports)"
    settings_model = CsvSettings
    example_settings: ClassVar[dict[str, Any]] = {"path": "exports/procurement.csv", "stream": "records"}

    def read(self, path: Path, required: Required) -> Iterator[tuple[int, dict[str, Any] | BadRecord]]:
        settings: CsvSettings = self.settings  # type: ignore[assignment]
        return csv_records(path, settings.encoding, settings.delimiter, required)


class JsonlConnector(FileConnector):
    """JSON Lines: one JSON object per line."""

    type_name = "jsonl"
    description = "JSON Lines files (one JSON object per line)"
    settings_model = JsonlSettings
    example_settings: ClassVar[dict[str, Any]] = {"path": "exports/inventory.jsonl", "stream": "records"}

    def read(self, path: Path, required: Required) -> Iterator[tuple[int, dict[str, Any] | BadRecord]]:
        settings: FileSettings = self.settings  # type: ignore[assignment]
        return jsonl_records(path, settings.encoding, required)
