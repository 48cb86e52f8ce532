"""Make installed modules look uninstalled, as on a core install without an extra (`pip install itam-sync`)."""

from __future__ import annotations

import sys

import pytest


def hide_modules(monkeypatch: pytest.MonkeyPatch, *names: str, reload: tuple[str, ...] = ()) -> None:
    """`import NAME` (and its submodules) raises ModuleNotFoundError until the test ends; the modules in
    `reload` (and their submodules) are dropped from the import cache so that they import again, and fail."""
    for mod in list(sys.modules):
        if any(mod == n or mod.startswith(n + ".") for n in (*names, *reload)):
            monkeypatch.delitem(sys.modules, mod)
    for n in names:
        monkeypatch.setitem(sys.modules, n, None)  # None: "not importable"
