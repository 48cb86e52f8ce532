"""The layout's rules (issue 13): the layer contract, no import cycles, small modules and small connectors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
REASON_MARK = "Longer than 500 lines because"


def test_import_linter_contracts_hold() -> None:
    """The layers, the CLI's independent command modules and the connectors' SDK-only rule (pyproject.toml)."""
    out = subprocess.run([sys.executable, "-m", "importlinter.cli", "--no-cache"], cwd=ROOT, capture_output=True,
                         text=True)
    if out.returncode != 0 and "No module named importlinter.cli" in out.stderr:
        out = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=ROOT,
                             capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Every elementary cycle's start, found by DFS over direct imports between `modules`."""
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.find_modules_directly_imported_by(m) & modules):
            if state.get(n) == 1:
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m)
    return found


def test_no_import_cycles_between_modules() -> None:
    graph = grimp.build_graph("itam_sync", cache_dir=None)
    modules = set(graph.modules)
    # A package's __init__ re-exporting its own submodules is not a cycle of the design.
    for m in list(modules):
        for n in graph.find_modules_directly_imported_by(m):
            if n.startswith(m + "."):
                graph.remove_import(importer=m, imported=n)
    assert _cycles(graph, modules) == []


def test_modules_stay_small_or_say_why() -> None:
    too_long = []
    for f in sorted((ROOT / "itam_sync").rglob("*.py")):
        text = f.read_text()
        if text.count("\n") > 500 and REASON_MARK not in text[:2000]:
            too_long.append(f"{f.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert too_long == [], f"over 500 lines without '{REASON_MARK} ...' at the top"


def test_every_connector_fits_in_200_lines() -> None:
    connectors = sorted((ROOT / "connectors").glob("*/connector.py"))
    big = [f"{f.relative_to(ROOT)}: {f.read_text().count(chr(10))}" for f in connectors
           if f.read_text().count("\n") > 200]
    assert big == []
