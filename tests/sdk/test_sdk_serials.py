"""Serial lists for look-up connectors: settings, text files, export CSVs with a manufacturer filter, batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from itam_sync.sdk.connector import ConnectorError
from itam_sync.sdk.serials import batches, load_serials


def test_settings_are_normalised_deduplicated_and_junk_dropped() -> None:
    assert load_serials([" abc123 ", "ABC123", "0", "To Be Filled By O.E.M.", "xyz-9"]) == ["ABC123", "XYZ-9"]


def test_text_file_skips_blank_lines_and_comments(tmp_path: Path) -> None:
    f = tmp_path / "tags.txt"
    f.write_text("\ufeff# comment\n7qk2lm3\n\n  8RL3MN4  \n")
    assert load_serials(["5ZZ9AB1"], str(f)) == ["5ZZ9AB1", "7QK2LM3", "8RL3MN4"]


def test_export_csv_filters_by_manufacturer_and_finds_the_serial_column(tmp_path: Path) -> None:
    f = tmp_path / "assets.csv"
    f.write_text("id,Serial Number,Manufacturer\n1,A1B2C3D,Dell Inc.\n2,PF5XYZ12,LENOVO\n3,Q9Q9Q9Q,\n")
    assert load_serials(serials_file=str(f), manufacturer="dell") == ["A1B2C3D"]
    assert load_serials(serials_file=str(f), manufacturer=None) == ["A1B2C3D", "PF5XYZ12", "Q9Q9Q9Q"]
    no_maker = tmp_path / "tags.csv"
    no_maker.write_text("service_tag\nA1B2C3D\n")
    assert load_serials(serials_file=str(no_maker), manufacturer="dell") == ["A1B2C3D"]


def test_file_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="cannot read serials_file") as err:
        load_serials(serials_file=str(tmp_path / "missing.txt"))
    assert err.value.kind == "config"
    f = tmp_path / "x.csv"
    f.write_text("id,hostname\n1,pc\n")
    with pytest.raises(ConnectorError, match="no serial column"):
        load_serials(serials_file=str(f))


def test_batches() -> None:
    assert [list(b) for b in batches(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batches([], 100)) == []
