"""Optional dependencies: which `pip install itam-sync[EXTRA]` brings what a connector or command is missing.

The core install carries the engine, the HTTP connectors (requests, msal), SQLite and the CLI. The vendor
SDKs, XLSX, the web UI, the service and PostgreSQL come with extras (pyproject.toml
[project.optional-dependencies]); `all` brings every one. A connector or command whose extra is missing
says so in one line (`needs `pip install itam-sync[aws]``), never with an ImportError traceback.
"""

from __future__ import annotations

import importlib.util

# Built-in connector types that need an extra (the others need only the core install). By type, not by the
# missing module: `gcp` and `google_workspace` need the same Google client libraries from different extras.
CONNECTOR_EXTRAS: dict[str, str] = {
    "aws": "aws",
    "azure": "azure",
    "gcp": "gcp",
    "google_workspace": "google",
}

# Top-level module -> the extra that installs it (for commands, and for connectors not in the table above).
MODULE_EXTRAS: dict[str, str] = {
    "boto3": "aws", "botocore": "aws",
    "azure": "azure",
    "google": "gcp", "googleapiclient": "gcp", "google_auth_httplib2": "gcp", "httplib2": "gcp",
    "openpyxl": "xlsx",
    "fastapi": "web", "starlette": "web", "uvicorn": "web", "jinja2": "web",
    "prometheus_client": "serve",
    "psycopg": "postgres",
}


def install_hint(extra: str) -> str:
    """The one phrase every missing-extra message uses."""
    return f"needs `pip install itam-sync[{extra}]`"


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""

    def __init__(self, extra: str, what: str | None = None, module: str | None = None) -> None:
        self.extra = extra
        super().__init__(f"{what} {install_hint(extra)}" if what else install_hint(extra), name=module)


def extra_for_module(module: str | None) -> str | None:
    """The extra that installs `module` (a dotted name is looked up by its top-level package)."""
    return MODULE_EXTRAS.get((module or "").split(".")[0])


def extra_for_error(exc: ImportError, connector_type: str | None = None) -> str | None:
    """The extra that would have avoided `exc`: None unless a module that an extra brings is missing (a
    version clash or a broken plugin is not cured by an extra); then the connector type's declared extra,
    else the missing module's."""
    if isinstance(exc, MissingExtra):
        return exc.extra
    by_module = extra_for_module(exc.name) if isinstance(exc, ModuleNotFoundError) else None
    if by_module is None:
        return None
    return CONNECTOR_EXTRAS.get(connector_type or "", by_module)


def installed(*modules: str) -> bool:
    """Whether every module can be imported (checked without importing it)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):
        return False


def require(extra: str, *modules: str, what: str | None = None) -> None:
    """Raise MissingExtra unless every module is importable (checked without importing it)."""
    for module in modules:
        if not installed(module):
            raise MissingExtra(extra, what, module)
