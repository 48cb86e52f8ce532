"""Issue 4 "done when": Intune, Jamf, CrowdStrike, SentinelOne and Defender together with a procurement CSV,
synced through the real engine into ONE SQLite store, give one golden asset per real device.

The fleet (fixtures/devices_e2e, consistent across vendors):
- Anna's MacBook Pro C02FK1ABQ6L4: Jamf ("C02FK1ABQ6L4"), CrowdStrike ("c02fk1abq6l4"), SentinelOne
  ("C02F K1AB Q6L4") and the procurement CSV ("C02FK1ABQ6L4 " with a trailing space). Her USB-C dock's
  Ethernet MAC 64:4b:f0:10:20:30 (a vendor OUI not on the built-in non-matching list) shows up on it.
- Bo's HP laptop 5CG1234XYZ: Intune (serial + Entra device id), CrowdStrike ("5cg1234xyz"), Defender (no
  serial: joined by the Entra device id) and procurement. VMware Workstation on it exposes the VMnet8 adapter
  00:50:56:c0:00:08, which every VMware Workstation host has.
- Carl's Dell 7QK2LM3: CrowdStrike, SentinelOne and procurement. It was once docked on Anna's dock (same
  dock MAC, different serial: a refused link, recorded as a conflict), and is re-imaged between two syncs
  (new CrowdStrike agent id and host name).
- Dana's lab workstation: Defender only, not Entra-joined (no serial, no Entra id): its only keys are MACs,
  one of them the same VMware VMnet8 MAC as Bo's laptop. It must stay its own asset.
- A spare ThinkPad PF4ABCDE: bought (procurement) and never seen by any agent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from itam_sync.connectors.crowdstrike.connector import CrowdStrikeConnector
from itam_sync.connectors.defender.connector import DefenderConnector
from itam_sync.connectors.intune.connector import IntuneConnector
from itam_sync.connectors.jamf.connector import JamfConnector
from itam_sync.connectors.procurement.connector import ProcurementConnector
from itam_sync.connectors.sentinelone.connector import SentinelOneConnector

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import merge_pending, run_connector
from itam_sync.settings import (
    ConnectorConfig,
    EntityPrecedence,
    FieldRuleConfig,
    PrecedenceConfig,
    Settings,
    StoreConfig,
)
from itam_sync.store import Store
from itam_sync.store.repos import Repos
from tests.tests_helpers import golden_by_key

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FIXTURES = HERE / "fixtures" / "devices_e2e"

TENANT = "11111111-2222-3333-4444-555555555555"
AUTHORITY = f"https://login.microsoftonline.com/{TENANT}"
GRAPH = "https://graph.microsoft.com"
DEFENDER_API = "https://api.securitycenter.microsoft.com"
JAMF = "https://acme.jamfcloud.com"
FALCON = "https://api.eu-1.crowdstrike.com"
S1 = "https://acme.sentinelone.net"

MBP, HP, DELL, SPARE = "serial_number:C02FK1ABQ6L4", "serial_number:5CG1234XYZ", "serial_number:7QK2LM3", \
    "serial_number:PF4ABCDE"
DANA_MAC = "mac:3c7c3f112233"
DOCK_MAC = "mac:644bf0102030"
VMNET8_MAC = "mac:005056c00008"
ORDER = ["intune", "jamf", "crowdstrike", "sentinelone", "defender", "procurement"]

PURCHASES_CSV = (
    "PO Number,Vendor,Manufacturer,Model,Serial #,Unit Price,Currency,Order Date,Warranty End,Category\n"
    'PO-2023-0107,Atea,Apple,"MacBook Pro 14"" M1 Pro",C02FK1ABQ6L4 ,"2,499.00",USD,2023-01-20,2026-01-19,Notebook\n'
    "PO-2023-0108,Atea,HP,EliteBook 840 G8,5CG1234XYZ,1450,EUR,2023-01-05,2026-01-04,Laptop\n"
    "PO-2024-0419,Dustin AB,Dell,Latitude 7440,7QK2LM3,1349,EUR,2024-05-06,2027-05-05,Laptop\n"
    "PO-2024-0421,Dustin AB,Lenovo,ThinkPad T14 Gen 4,PF4ABCDE,1199,EUR,2024-05-07,2027-05-06,Laptop\n"
)

REGISTRY = Registry(extra={"intune": IntuneConnector, "jamf": JamfConnector, "crowdstrike": CrowdStrikeConnector,
                           "sentinelone": SentinelOneConnector, "defender": DefenderConnector,
                           "procurement": ProcurementConnector})


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _json(body: Any, status: int = 200) -> tuple[int, dict[str, str], str]:
    return status, {"Content-Type": "application/json"}, json.dumps(body)


class FakeVendors:
    """Every vendor API the five connectors call, on one `responses` mock; `falcon_hosts` can be swapped."""

    def __init__(self, rsps: responses.RequestsMock) -> None:
        self.falcon_hosts: list[dict[str, Any]] = load("crowdstrike_hosts.json")
        # msal (Intune and Defender): tenant discovery and the token endpoint.
        rsps.get(f"{AUTHORITY}/v2.0/.well-known/openid-configuration",
                 json={"token_endpoint": f"{AUTHORITY}/oauth2/v2.0/token", "issuer": f"{AUTHORITY}/v2.0",
                       "authorization_endpoint": f"{AUTHORITY}/oauth2/v2.0/authorize"})
        rsps.post(f"{AUTHORITY}/oauth2/v2.0/token",
                  json={"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": "ms-tok"})
        rsps.get(re.compile(re.escape(GRAPH) + r"/v1\.0/deviceManagement/managedDevices(\?.*)?$"),
                 json=load("intune_managed_devices.json"))
        rsps.get(re.compile(re.escape(DEFENDER_API) + r"/api/machines(\?.*)?$"), json=load("defender_machines.json"))
        # Jamf Pro: OAuth client credentials, computers inventory (one page) and no mobile devices.
        rsps.post(f"{JAMF}/api/oauth/token",
                  json={"access_token": "jamf-tok", "token_type": "Bearer", "expires_in": 1799})
        rsps.add_callback(responses.GET, re.compile(re.escape(JAMF) + r"/api/v[123]/.*"), callback=self.jamf)
        # CrowdStrike: OAuth2 token (201), the scroll query and the entities POST.
        rsps.post(f"{FALCON}/oauth2/token", status=201,
                  json={"access_token": "cs-tok", "token_type": "bearer", "expires_in": 1799})
        rsps.add_callback(responses.GET, f"{FALCON}/devices/queries/devices-scroll/v1", callback=self.scroll)
        rsps.add_callback(responses.POST, f"{FALCON}/devices/entities/devices/v2", callback=self.entities)
        # SentinelOne: one page of agents, no next cursor.
        rsps.add_callback(responses.GET, f"{S1}/web/api/v2.1/agents", callback=self.agents)

    def jamf(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        assert request.headers.get("Authorization") == "Bearer jamf-tok"
        path = urlsplit(str(request.url)).path
        if path == "/api/v3/computers-inventory":  # the current inventory version (v1 is deprecated)
            return _json(load("jamf_computers.json"))
        return _json({"totalCount": 0, "results": []})

    def scroll(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        assert request.headers.get("Authorization") == "Bearer cs-tok"
        offset = parse_qs(urlsplit(str(request.url)).query).get("offset")
        ids = [] if offset else [h["device_id"] for h in self.falcon_hosts]
        return _json({"meta": {"pagination": {"offset": "" if offset else "scroll-1", "total": len(ids)}},
                      "resources": ids, "errors": []})

    def entities(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        ids = json.loads(request.body or "{}")["ids"]
        by_id = {h["device_id"]: h for h in self.falcon_hosts}
        return _json({"meta": {}, "resources": [by_id[i] for i in ids if i in by_id], "errors": []})

    def agents(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        assert request.headers.get("Authorization") == "ApiToken s1-token"
        return _json({"data": load("sentinelone_agents.json"), "pagination": {"nextCursor": None, "totalItems": 2}})


@pytest.fixture
def vendors(recorded_sleeps: list[float]) -> Iterator[FakeVendors]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeVendors(rsps)


def make_settings(tmp_path: Path) -> Settings:
    folder = tmp_path / "purchases"
    folder.mkdir()
    (folder / "2024-purchases.csv").write_text(PURCHASES_CSV)
    ms = {"tenant_id": TENANT, "client_id": "itam-reader", "client_secret": "ms-secret"}
    connectors = [
        ConnectorConfig(name="intune", type="intune", settings=ms),
        ConnectorConfig(name="jamf", type="jamf",
                        settings={"base_url": JAMF, "client_id": "itam-sync", "client_secret": "jamf-secret"}),
        # A re-imaged machine's old agent disappears from one of three hosts: above the 10% default guard.
        ConnectorConfig(name="crowdstrike", type="crowdstrike", deletion_guard=0.5,
                        settings={"base_url": FALCON, "client_id": "falcon", "client_secret": "falcon-secret"}),
        ConnectorConfig(name="sentinelone", type="sentinelone", settings={"base_url": S1, "api_token": "s1-token"}),
        ConnectorConfig(name="defender", type="defender", settings=ms),
        ConnectorConfig(name="procurement", type="procurement", settings={"folder": str(folder)}),
    ]
    precedence = PrecedenceConfig(default=ORDER, asset=EntityPrecedence(fields={
        "purchase_cost": FieldRuleConfig(order=["procurement"]),
        "warranty_end": FieldRuleConfig(order=["procurement"]),
        "assigned_to": FieldRuleConfig(order=["intune", "jamf"]),
        # The MDM's marketing model name beats the EDRs' model identifiers ("MacBookPro18,3").
        "model": FieldRuleConfig(order=["jamf", "intune", "procurement"]),
        # Finance writes the maker's plain name ("Dell", not "Dell Inc.").
        "manufacturer": FieldRuleConfig(order=["procurement", "jamf", "intune"]),
    }))
    return Settings(store=StoreConfig(url=f"sqlite:///{tmp_path / 'itam.db'}"), mappings_dir=str(ROOT / "mappings"),
                    connectors=connectors, precedence=precedence)


def sync_all(settings: Settings, names: list[str]) -> None:
    for name in names:
        result = run_connector(settings, name, full=True, registry=REGISTRY, merge=False)
        assert result.status == "success", f"{name}: {result.status} {result.message}"
    store = Store.open(settings.store.url)
    try:
        merge_pending(settings, store)
    finally:
        store.close()


def value(golden: dict[str, Any], field: str) -> Any:
    return golden[field][0]


def source(golden: dict[str, Any], field: str) -> str:
    return golden[field][1]


def set_rows(repo: Repos, eid: int) -> dict[str, dict[str, Any]]:
    """The latest `set` row of each field of entity `eid`."""
    return {r["field"]: r for r in repo.log.log_rows(entity_id=eid, action="set", limit=1000)}


def test_devices_from_five_vendors_and_procurement_become_one_asset_each(tmp_path: Path,
                                                                           vendors: FakeVendors) -> None:
    settings = make_settings(tmp_path)
    sync_all(settings, ORDER)

    store = Store.open(settings.store.url)
    try:
        with store.begin() as repo:
            counts = repo.entities.counts()
            assert counts["entities"].get("asset:active") == 5, (
                f"want one asset per real device (MBP, HP, Dell, Dana's workstation, spare): {counts['entities']}")
            assert counts["quarantined"] == 0

            # -- serials in four spellings, one asset --------------------------------------------------
            mbp = golden_by_key(repo, "asset", MBP)
            sources = repo.entities.source_keys_of([mbp["_id"]])[mbp["_id"]]
            assert {s.split("/")[0] for s in sources} == {"jamf", "crowdstrike", "sentinelone", "procurement"}, sources
            assert value(mbp, "serial_number") == "C02FK1ABQ6L4"
            assert value(mbp, "hostname") == "lt-anna-mbp"

            hp = golden_by_key(repo, "asset", HP)
            hp_sources = {s.split("/")[0] for s in repo.entities.source_keys_of([hp["_id"]])[hp["_id"]]}
            assert hp_sources == {"intune", "crowdstrike", "defender", "procurement"}, hp_sources
            # Defender has no serial: it joined on the Entra device id Intune reports.
            key = "entra_device_id:80fe8ff8-2624-418e-9591-41f0491218f9"
            assert repo.entities.entity_by_key("asset", key) == hp["_id"]

            dell = golden_by_key(repo, "asset", DELL)
            spare = golden_by_key(repo, "asset", SPARE)
            spare_keys = repo.entities.source_keys_of([spare["_id"]])[spare["_id"]]
            assert [s.split("/")[0] for s in spare_keys] == ["procurement"]

            # -- the VMware VMnet8 MAC joins nothing --------------------------------------------------
            dana_id = repo.entities.entity_by_key("asset", DANA_MAC)
            assert dana_id is not None and dana_id != hp["_id"], "Dana's workstation was joined to Bo's laptop"
            assert repo.entities.entity_by_key("asset", VMNET8_MAC) is None, "a VMware virtual MAC became a match key"
            dana = repo.entities.goldens([dana_id])[dana_id][1]
            assert value(dana, "hostname") == "dana-lab-ws"
            # Kept as data (union of every source's MACs), just never used to join.
            assert "005056c00008" in value(hp, "mac_addresses")
            assert "005056c00008" in value(dana, "mac_addresses")

            # -- the dock MAC: the link is refused and recorded -------------------------------------------
            assert len({mbp["_id"], hp["_id"], dell["_id"], dana_id, spare["_id"]}) == 5
            # Two serials hold it: the dock MAC is ambiguous, identifies no one asset and joins nothing, whichever
            # connector ran first (it used to belong to the first laptop seen with it).
            assert repo.entities.entity_by_key("asset", DOCK_MAC) is None
            [amb] = [a for a in repo.identity.list_ambiguous("asset") if a["key"] == DOCK_MAC]
            assert (amb["origin"], amb["entities"]) == ("conflict", 2), amb
            assert amb["reason"] == ("held by records that cannot be one thing: different serial_number "
                                     "(7QK2LM3 vs C02FK1ABQ6L4)"), amb
            dock = [c for c in repo.conflicts.list_conflicts() if c["key"] == DOCK_MAC]
            assert dock, ("no conflict recorded for the dock MAC shared by two serials: "
                          f"{repo.conflicts.list_conflicts()}")
            assert {c["connector"] for c in dock} == {"crowdstrike"}
            assert all(c["other_entity_id"] == mbp["_id"] for c in dock), dock
            assert all("different serial_number" in c["reason"] for c in dock), dock

            # -- precedence decides each field; the merge log says why ----------------------------------
            assert (value(mbp, "model"), source(mbp, "model")) == ("MacBook Pro (14-inch, 2021)", "jamf")
            assert (value(mbp, "manufacturer"), source(mbp, "manufacturer")) == ("Apple", "procurement")
            assert (value(mbp, "assigned_to"), source(mbp, "assigned_to")) == ("anna.berg@example.com", "jamf")
            assert (value(hp, "assigned_to"), source(hp, "assigned_to")) == ("bo.lind@example.com", "intune")
            assert source(mbp, "serial_number") == "jamf"  # four sources agree; the default order names jamf
            assert source(mbp, "purchase_cost") == "procurement"
            assert value(mbp, "purchase_cost") == pytest.approx(2499.0)
            assert value(mbp, "warranty_end") == "2026-01-19"
            assert (value(dell, "manufacturer"), source(dell, "manufacturer")) == ("Dell", "procurement")
            assert (value(hp, "os_version"), source(hp, "os_version")) == ("10.0.22631.3737", "intune")
            assert (value(hp, "hostname"), source(hp, "hostname")) == ("lt-bo-w11", "intune")
            assert value(hp, "mdm_managed") is True and value(hp, "edr_protected") is True

            log = set_rows(repo, mbp["_id"])
            expect = {
                "model": ("jamf", "precedence:field"),
                "manufacturer": ("procurement", "precedence:field"),
                "serial_number": ("jamf", "precedence:default"),
                "hostname": ("jamf", "precedence:default"),
                "os_version": ("jamf", "precedence:default"),
                "purchase_cost": ("procurement", "only-source"),
                "warranty_end": ("procurement", "only-source"),
                "assigned_to": ("jamf", "only-source"),
                "mac_addresses": ("jamf+crowdstrike+sentinelone", "union"),
                "last_seen": ("sentinelone", "latest"),
            }
            got = {f: (log[f]["source"], log[f]["rule"]) for f in expect if f in log}
            assert got == expect, f"merge log of the MacBook: {got}"
            assert log["model"]["new"] == "MacBook Pro (14-inch, 2021)" and log["model"]["old"] is None
            hp_log = set_rows(repo, hp["_id"])
            assert (hp_log["entra_device_id"]["source"], hp_log["entra_device_id"]["rule"]) == (
                "intune", "precedence:default")
            assert (hp_log["risk_level"]["source"], hp_log["risk_level"]["rule"]) == ("defender", "only-source")
            dell_log = set_rows(repo, dell["_id"])
            assert (dell_log["hostname"]["new"], dell_log["hostname"]["source"], dell_log["hostname"]["rule"]) == (
                "lt-carl-old", "crowdstrike", "precedence:default")
    finally:
        store.close()

    # -- Carl's Dell is re-imaged: new CrowdStrike agent id, new host name, same serial ------------------
    vendors.falcon_hosts = load("crowdstrike_hosts_reimaged.json")
    sync_all(settings, ["crowdstrike"])
    store = Store.open(settings.store.url)
    try:
        with store.begin() as repo:
            counts = repo.entities.counts()
            assert counts["entities"].get("asset:active") == 5, counts["entities"]
            assert "asset:missing" not in counts["entities"], counts["entities"]
            assert repo.entities.entity_by_key("asset", DELL) == dell["_id"], "the re-imaged laptop became a new asset"
            after = golden_by_key(repo, "asset", DELL)
            assert (value(after, "hostname"), source(after, "hostname")) == ("lt-carl-new", "crowdstrike")
            assert value(after, "os_version") == "Windows 11"
            dell_keys = repo.entities.source_keys_of([dell["_id"]])[dell["_id"]]
            falcon = [s for s in dell_keys if s.startswith("crowdstrike/")]
            assert falcon == ["crowdstrike/hosts/cs0000000000000000000000000ca410 (missing)",
                              "crowdstrike/hosts/cs0000000000000000000000000ca412"], falcon
            hostname_rows = [r for r in repo.log.log_rows(entity_id=dell["_id"], action="set")
                             if r["field"] == "hostname"]
            assert [(r["old"], r["new"], r["source"], r["rule"]) for r in hostname_rows] == [
                (None, "lt-carl-old", "crowdstrike", "precedence:default"),
                ("lt-carl-old", "lt-carl-new", "crowdstrike", "precedence:default")], hostname_rows
    finally:
        store.close()
