"""Relative paths in a config file start from the config file's folder, wherever the command runs from.

That holds for the SQLite store (`sqlite:///itam.db` is the file next to the config), mappings and the data
files connectors read (settings typed `ConfigPath`). A relative path that exists only from the working
directory is still found there, so configs written for the old rule keep their data and their database.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo

BASE_DIR_CONTEXT = "base_dir"  # the validation-context key build_connector passes: the config file's folder


def resolve_config_path(path: str | Path, base: Path) -> Path:
    """`path` from the config folder `base`: absolute paths as they are; a relative one under `base`, unless it
    exists only from the working directory (an older config), then there. Globs count as existing when
    something matches."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    mine = Path(os.path.normpath(base / p))  # config/../demo.db -> demo.db beside config/
    if _exists(mine) or not _exists(p):
        return mine
    return p.resolve()


def _exists(p: Path) -> bool:
    text = str(p)
    return bool(glob.glob(text)) if any(ch in text for ch in "*?[") else p.exists()


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for another backend or an in-memory database)."""
    if not url.startswith("sqlite:///"):
        return None
    db = url[len("sqlite:///"):].split("?", 1)[0]
    return None if db in ("", ":memory:") else Path(db)


def resolve_store_url(url: str, base: Path) -> str:
    """A SQLite URL whose relative file path is made absolute from `base` (other URLs unchanged)."""
    db = sqlite_path(url)
    if db is None or db.is_absolute():
        return url
    query = url.split("?", 1)[1] if "?" in url else ""
    full = resolve_config_path(db, base)
    return f"sqlite:///{full}" + (f"?{query}" if query else "")


def _resolve_setting(value: str, info: ValidationInfo) -> str:
    base = (info.context or {}).get(BASE_DIR_CONTEXT)
    if base is None or not value:
        return value
    return str(resolve_config_path(value, Path(base)))


# A connector setting that names a local file, folder or glob: relative values start from the config folder.
ConfigPath = Annotated[str, AfterValidator(_resolve_setting)]
