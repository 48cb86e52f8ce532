"""Serial numbers a look-up connector asks about (warranty APIs): from settings, a text file or an export CSV.

Enrichment connectors (Dell, Lenovo warranty) look assets up by serial rather than list them. Their serials come
from the connector's settings, never from the store directly: a connector gets its settings and nothing else,
so reading the engine's database would tie it to the schema. To enrich what the store already knows, write
the known assets out with `itam-sync export --entity assets --format csv -o assets.csv` (e.g. before each run)
and name that file as the connector's `serials_file`; its `manufacturer` column narrows it to one vendor.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from itam_sync.model.identifiers import normalize_serial
from itam_sync.sdk.connector import ConnectorError

T = TypeVar("T")
SERIAL_COLUMNS = ("serial_number", "serial", "serialnumber", "service_tag", "servicetag", "serial number",
                  "service tag")


def load_serials(serials: Iterable[str] = (), serials_file: str | None = None,
                 manufacturer: str | None = None) -> list[str]:
    """The serials to look up, normalised (upper case, junk such as "0" or "To Be Filled" dropped), de-duplicated,
    in first-seen order: `serials` first, then `serials_file`.

    `serials_file` is either plain text, one serial per line (blank lines and `#` comments skipped), or a CSV
    (a `.csv` name or a first line with a comma) with a header naming a serial column (serial_number, serial,
    service_tag, ...). In a CSV with a `manufacturer` column, only rows whose manufacturer contains
    `manufacturer` (case-insensitive; None = every row) are used, so the full asset export can be given as is.
    """
    out: dict[str, None] = {}
    for value in [*serials, *(_read_file(Path(serials_file), manufacturer) if serials_file else ())]:
        s = normalize_serial(value)
        if s is not None:
            out.setdefault(s, None)
    return list(out)


def _read_file(path: Path, manufacturer: str | None) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConnectorError(f"cannot read serials_file {path} ({type(exc).__name__}); fix settings.serials_file",
                             kind="config") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return []
    if path.suffix.lower() != ".csv" and "," not in lines[0]:
        return [ln.strip() for ln in lines]
    reader = csv.DictReader(io.StringIO(text))
    columns = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
    serial_col = next((columns[c] for c in SERIAL_COLUMNS if c in columns), None)
    if serial_col is None:
        raise ConnectorError(f"serials_file {path} has no serial column (one of {', '.join(SERIAL_COLUMNS[:5])}); "
                             f"columns: {', '.join(columns)}", kind="config")
    maker_col = columns.get("manufacturer")
    wanted = manufacturer.lower() if manufacturer else None
    return [row.get(serial_col) or "" for row in reader
            if wanted is None or maker_col is None or wanted in (row.get(maker_col) or "").lower()]


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
