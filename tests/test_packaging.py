"""Packaging rules that hold in the repository (issue 18); .ci/install-test checks the built wheel itself."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import itam_sync
from itam_sync.sdk.extras import CONNECTOR_EXTRAS, MODULE_EXTRAS

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OLD_IMPORT = re.compile(r"^\s*(from|import)\s+connectors\b", re.MULTILINE)


def test_built_in_connectors_are_imported_as_itam_sync_connectors() -> None:
    """connectors/ installs as itam_sync.connectors: `import connectors...` works in a clone only."""
    offenders = [str(p.relative_to(ROOT)) for folder in ("itam_sync", "connectors", "tests", "bench")
                 for p in (ROOT / folder).rglob("*.py") if OLD_IMPORT.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
    for group, eps in PYPROJECT["project"]["entry-points"].items():
        assert all(v.startswith("itam_sync.") for v in eps.values()), group


def test_every_extra_the_code_names_exists_and_all_brings_them() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    named = set(CONNECTOR_EXTRAS.values()) | set(MODULE_EXTRAS.values())
    assert named <= set(extras), named - set(extras)
    all_extra = extras["all"][0]
    assert all_extra.startswith("itam-sync[") and named <= set(all_extra[len("itam-sync["):-1].split(","))
    # The connectors needing an extra are built-in types.
    assert set(CONNECTOR_EXTRAS) <= set(PYPROJECT["project"]["entry-points"]["itam_sync.connectors"])


def test_the_version_has_one_source() -> None:
    assert "version" in PYPROJECT["project"]["dynamic"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "itam_sync.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", itam_sync.__version__)


def test_the_lock_pins_every_dependency_exactly() -> None:
    lines = [ln.split(";")[0].strip() for ln in (ROOT / "requirements-lock.txt").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines and all(re.fullmatch(r"[a-z0-9][a-z0-9._-]*==[^=\s]+", ln) for ln in lines), lines
    pinned = {ln.split("==")[0] for ln in lines}
    assert {"boto3", "azure-mgmt-compute", "google-api-python-client", "openpyxl", "fastapi", "pytest"} <= pinned
