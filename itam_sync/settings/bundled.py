"""The mapping files that ship with itam-sync: the repository's mappings/ folder, installed as itam_sync/mappings.

A config that names no mapping and has no mappings/<type>.yaml of its own uses the bundled one, so
`itam-sync init` + `validate` + `run` work in any folder, not only in a clone of the repository.
"""

from __future__ import annotations

from pathlib import Path


def bundled_mappings_dir() -> Path | None:
    """The folder of bundled mappings: itam_sync/mappings in an installed wheel, the repository's mappings/
    in a source checkout or an editable install; None if neither exists."""
    package = Path(__file__).resolve().parents[1]  # .../itam_sync
    for folder in (package / "mappings", package.parent / "mappings"):
        if folder.is_dir():
            return folder
    return None


def bundled_mapping(name: str) -> Path | None:
    """The bundled mappings/<name>.yaml, or None when itam-sync ships no such mapping."""
    folder = bundled_mappings_dir()
    path = folder / f"{name}.yaml" if folder is not None else None
    return path if path is not None and path.is_file() else None
