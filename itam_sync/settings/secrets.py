"""Secret references: `${env:NAME}` and `${file:/path}` stay references in the settings; `resolve_secrets`
turns them into values only when a connector is built, so they never reach the database, the log or logs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from itam_sync.settings.models import SECRET_REF, ConfigError
from itam_sync.settings.redaction import remember


def _secret_refs_at(value: Any, path: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str, str]]:
    """(location, kind, reference) of every secret reference in `value`."""
    if isinstance(value, str):
        return [(path, m.group(1), m.group(2)) for m in SECRET_REF.finditer(value)]
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in _secret_refs_at(v, (*path, k))]
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in _secret_refs_at(v, (*path, i))]
    return []


def _secret_refs(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(m.group(1), m.group(2)) for m in SECRET_REF.finditer(value)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _secret_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _secret_refs(v)]
    return []


def resolve_secrets(value: Any, where: str = "settings") -> Any:
    """Replace ${env:X} and ${file:P} references with their values (at run time only)."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            kind, ref = m.group(1), m.group(2)
            if kind == "env":
                if ref not in os.environ:
                    raise ConfigError([f"{where}: environment variable {ref} is not set "
                                       f"(fix: export {ref}=... before running)"])
                resolved = os.environ[ref]
            else:
                try:
                    resolved = Path(ref).read_text().strip()
                except OSError as exc:
                    raise ConfigError([f"{where}: cannot read secret file {ref}: {exc.strerror}"]) from exc
            remember(resolved)  # from now on redacted from logs and stored errors (settings/redaction.py)
            return resolved
        return SECRET_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: resolve_secrets(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_secrets(v, where) for v in value]
    return value
