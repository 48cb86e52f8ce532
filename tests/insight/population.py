"""A small population for report tests: jsonl sources with their mappings, synced into a real SQLite store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from itam_sync.engine.runner import merge_pending, run_connector
from itam_sync.settings import Settings, load_settings
from itam_sync.store import Store

ASSET_FIELDS = {
    "serial_number": {"from": "serial", "transforms": ["serial"]},
    "hostname": {"from": "host", "transforms": ["hostname"]},
    "kind": "kind", "model": "model", "department": "dept", "location": "site",
    "os_name": "os", "os_version": "osv",
    "purchase_cost": {"from": "cost", "transforms": ["number"]}, "currency": "currency",
    "purchase_date": {"from": "bought", "transforms": ["date"]},
    "warranty_end": {"from": "warranty", "transforms": ["date"]},
    "lifecycle_state": "state",
    "assigned_to": {"from": "user", "transforms": ["email"]},
    "last_seen": {"from": "seen", "transforms": ["datetime"]},
    "mdm_managed": "mdm", "edr_protected": "edr",
}
PERSON_FIELDS = {
    "employee_id": "id", "email": {"from": "email", "transforms": ["email"]}, "display_name": "name",
    "department": "dept", "location": "site", "status": "status",
    "end_date": {"from": "end", "transforms": ["date"]},
}


@dataclass
class Source:
    """One jsonl source: its entity type, role and records."""

    entity: str
    rows: list[dict[str, Any]]
    role: str | None = None
    fields: dict[str, Any] | None = None


def build(d: Path, sources: dict[str, Source], extra: dict[str, Any] | None = None,
          precedence: list[str] | None = None) -> tuple[Store, Settings]:
    """Write the sources and a config (plus `extra` top-level sections), sync every source, merge."""
    connectors = []
    for name, src in sources.items():
        fields = src.fields or (ASSET_FIELDS if src.entity == "asset" else PERSON_FIELDS)
        mapping = {"streams": {"records": {"entity": src.entity, "key": "key", "fields": fields}}}
        (d / f"{name}.yaml").write_text(yaml.safe_dump(mapping))
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in src.rows))
        conn: dict[str, Any] = {"name": name, "type": "jsonl", "mapping": str(d / f"{name}.yaml"),
                                "settings": {"path": str(d / f"{name}.jsonl"), "stream": "records"}}
        if src.role:
            conn["role"] = src.role
        connectors.append(conn)
    config: dict[str, Any] = {"store": {"url": f"sqlite:///{d / 'r.db'}"}, "connectors": connectors,
                              "precedence": {"default": precedence or list(sources)}, **(extra or {})}
    (d / "c.yaml").write_text(yaml.safe_dump(config, default_flow_style=False))
    settings = load_settings(d / "c.yaml").settings
    store = Store.open(settings.store.url)
    sync(store, settings)
    return store, settings


def sync(store: Store, settings: Settings) -> None:
    """Run every connector in full, then merge."""
    for c in settings.connectors:
        assert run_connector(settings, c.name, full=True, store=store, merge=False).status == "success"
    merge_pending(settings, store)


def rewrite(d: Path, name: str, rows: list[dict[str, Any]]) -> None:
    """Replace a source's records (for a second sync)."""
    (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
