"""A tiny world for identity tests: connectors whose records are handed in through their settings, synced by the
real runner into a real SQLite store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import merge_pending, run_connector
from itam_sync.model.canonical import EntityType
from itam_sync.model.keys import KeyKind, KeyScope
from itam_sync.sdk.connector import Connector, ConnectorSettings, Stream, StreamState
from itam_sync.settings import ConnectorConfig, IdentityConfig, PrecedenceConfig, Settings, StoreConfig, SyncConfig
from itam_sync.store import Store

MAPPING = """streams:
  devices:
    entity: asset
    key: id
    observed_at: seen
    fields:
      serial_number: {from: serial, transforms: [serial], optional: true}
      hardware_uuid: {from: uuid, transforms: [uuid], optional: true}
      instance_id: {from: instance, transforms: [strip], optional: true}
      mac_addresses: {from: macs, transforms: [mac], optional: true}
      entra_device_id: {from: entra, transforms: [uuid], optional: true}
      hostname: {from: host, transforms: [hostname], optional: true}
      model: {from: model, transforms: [strip], optional: true}
      assigned_to: {from: user, transforms: [email], optional: true}
      last_seen: {from: seen, transforms: [datetime], optional: true}
      asset_tag: {from: tag, transforms: [strip], optional: true}
  people:
    entity: person
    key: id
    observed_at: seen
    fields:
      employee_id: {from: emp, transforms: [strip], optional: true}
      email: {from: mail, transforms: [email], optional: true}
      email_aliases: {from: aliases, transforms: [email], optional: true}
      display_name: {from: name, transforms: [strip], optional: true}
      department: {from: dept, transforms: [strip], optional: true}
      manager: {from: manager, transforms: [email], optional: true}
"""


class MemorySettings(ConnectorSettings):
    devices: list[dict[str, Any]] = []
    people: list[dict[str, Any]] = []


class _Records(Stream):
    def records(self, state: StreamState) -> Iterator[dict[str, Any]]:
        yield from getattr(self.connector.settings, self.name)


class Devices(_Records):
    name = "devices"


class People(_Records):
    name = "people"


class MemoryConnector(Connector):
    """Records handed in through the settings (tests only)."""

    type_name = "memory"
    settings_model = MemorySettings

    def streams(self) -> list[Stream]:
        return [Devices(self), People(self)]


class TaggedConnector(MemoryConnector):
    """A third-party connector that adds a key kind: the asset tag stuck on the device names the hardware."""

    type_name = "tagged"
    key_kinds = (KeyKind("asset_tag", EntityType.ASSET, KeyScope.HARDWARE, ("asset_tag",), "The label."),)


REGISTRY = Registry(extra={"memory": MemoryConnector, "tagged": TaggedConnector})


class World:
    """Named sources over one store; `sync(source, devices=[...])` runs that source once (full)."""

    def __init__(self, tmp: Path, sources: tuple[str, ...] = ("mdm", "edr", "hr", "okta"),
                 identity: IdentityConfig | None = None, batch_size: int = 5000, template: Path | None = None,
                 url: str | None = None, types: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.db = tmp / "itam.db"
        self.url = url or f"sqlite:///{self.db}"
        self.types = types or {}
        if template is not None:
            shutil.copy(template, self.db)
        self.mapping = tmp / "memory.yaml"
        self.mapping.write_text(MAPPING)
        self.sources = sources
        self.data: dict[str, dict[str, list[dict[str, Any]]]] = {s: {"devices": [], "people": []} for s in sources}
        self.identity = identity or IdentityConfig()
        self.batch_size = batch_size

    @property
    def settings(self) -> Settings:
        return Settings(store=StoreConfig(url=self.url), identity=self.identity,
                        sync=SyncConfig(batch_size=self.batch_size),
                        precedence=PrecedenceConfig(default=list(self.sources)),
                        connectors=[ConnectorConfig(name=s, type=self.types.get(s, "memory"), mapping=str(self.mapping),
                                                    settings=self.data[s], deletion_guard=1.0)
                                    for s in self.sources])

    def sync(self, source: str, *, devices: list[dict[str, Any]] | None = None,
             people: list[dict[str, Any]] | None = None, full: bool = True, merge: bool = True) -> None:
        if devices is not None:
            self.data[source]["devices"] = devices
        if people is not None:
            self.data[source]["people"] = people
        settings = self.settings
        store = Store.open(settings.store.url)
        try:
            result = run_connector(settings, source, full=full, store=store, registry=REGISTRY, merge=False)
            assert result.status == "success", result.message
            if merge:
                merge_pending(settings, store)
        finally:
            store.close()

    def store(self) -> Store:
        return Store.open(self.url)

    def entity_of(self, ref: str) -> int:
        conn, stream, key = ref.split("/", 2)
        store = self.store()
        try:
            with store.begin() as repo:
                return int(repo.records.find_record(conn, stream, key)[0][4])
        finally:
            store.close()

    def partition(self, entity_type: str = "asset") -> set[frozenset[str]]:
        """Which records are one entity: the sets of record references (no entity ids: they depend on order)."""
        store = self.store()
        try:
            with store.begin() as repo:
                ids = repo.entities.entity_ids(entity_type)
                feeds = repo.entities.source_keys_of(ids)
        finally:
            store.close()
        return {frozenset(s.split(" (")[0] for s in refs) for refs in feeds.values() if refs}

    def log(self, run: str = "last", actions: tuple[str, ...] = ("link", "split", "merge", "ambiguous",
                                                                  "unambiguous", "conflict")) -> list[tuple[Any, ...]]:
        """Identity rows of the last staging run (or of every run): (entity, action, old, new, source, rule)."""
        store = self.store()
        try:
            with store.begin() as repo:
                runs = [r for r in repo.runs.list_runs(50) if r["connector"] != "(merge)"]
                where = {"run_id": runs[0]["id"]} if run == "last" else {}
                rows = repo.log.log_rows(limit=100_000, **where)
        finally:
            store.close()
        return [(r["entity_id"], r["action"], r["old"], r["new"], r["source"], r["rule"]) for r in rows
                if r["action"] in actions]
