"""Okta, Entra ID and Google Workspace synced into one store: people merge by employee id and e-mail.

Each connector runs for real (its HTTP faked: `responses` for Okta and Graph/msal, an httplib2 stand-in for
Google) over the recorded-shape fixtures beside each connector's tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import httplib2
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from itam_sync.connectors.entra.connector import EntraConnector
from itam_sync.connectors.google_workspace.connector import GoogleWorkspaceConnector
from itam_sync.connectors.okta.connector import OktaConnector

from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import run_connector
from itam_sync.settings import ConnectorConfig, PrecedenceConfig, Settings, StoreConfig
from itam_sync.store import Store

ROOT = Path(__file__).resolve().parents[3]
FIX = ROOT / "tests" / "connectors"
ORG, GRAPH, LOGIN, TENANT = ("https://acme.okta.com", "https://graph.microsoft.com",
                             "https://login.microsoftonline.com", "contoso.onmicrosoft.com")
TOKEN_URI = "https://oauth2.googleapis.com/token"


def fx(path: str) -> Any:
    return json.loads((FIX / path).read_text())


def okta_pages() -> dict[str, Any]:
    return {"/api/v1/users": fx("okta/fixtures/users_page1.json") + fx("okta/fixtures/users_page3.json"),
            "/api/v1/devices": fx("okta/fixtures/devices_page1.json"), "/api/v1/apps": []}


def graph_pages() -> dict[str, Any]:
    users = fx("entra/fixtures/users_delta_page1.json")["value"] + fx("entra/fixtures/users_delta_page3.json")["value"]
    return {"/v1.0/users/delta": {"value": users, "@odata.deltaLink": f"{GRAPH}/v1.0/users/delta?$deltatoken=x"},
            "/v1.0/devices": fx("entra/fixtures/devices_page1.json") | {"@odata.nextLink": None},
            "/v1.0/subscribedSkus": fx("entra/fixtures/subscribed_skus.json")}


def google_pages() -> dict[str, Any]:
    users = fx("google_workspace/fixtures/users_page1.json")["users"] + fx(
        "google_workspace/fixtures/users_page2.json")["users"]
    olle = next(u for u in users if u.get("primaryEmail") == "olle.svensson@example.com")
    del olle["externalIds"]  # Google knows Olle only by e-mail
    return {"/admin/directory/v1/users": {"users": users},
            "/admin/directory/v1/customer/my_customer/devices/chromeos":
                {"chromeosdevices": fx("google_workspace/fixtures/chromeos_page1.json")["chromeosdevices"]},
            "/admin/directory/v1/customer/my_customer/devices/mobile":
                fx("google_workspace/fixtures/mobile_page1.json")}


def serve_json(pages: dict[str, Any]) -> Any:
    def serve(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = pages.get(urlsplit(str(request.url)).path)
        return (404, {}, "{}") if body is None else (200, {"Content-Type": "application/json"}, json.dumps(body))
    return serve


class FakeGoogle:
    def __init__(self) -> None:
        self.pages = google_pages()

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None,
                redirections: int = 5, connection_type: Any = None) -> tuple[httplib2.Response, bytes]:
        if uri == TOKEN_URI:
            payload: Any = {"access_token": "ya29.t", "expires_in": 3599, "token_type": "Bearer"}
        else:
            payload = self.pages[urlsplit(uri).path]
        return httplib2.Response({"status": "200", "content-type": "application/json"}), json.dumps(payload).encode()


@pytest.fixture
def google_key() -> Iterator[str]:
    """Serves all three sources for the test; yields the Google service account key (JSON)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    fake_google = FakeGoogle()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps, \
            mock.patch.object(GoogleWorkspaceConnector, "transport", lambda self: fake_google):
        rsps.add_callback(responses.GET, re.compile(re.escape(ORG) + r"/api/v1/.*"), callback=serve_json(okta_pages()))
        rsps.get(f"{LOGIN}/{TENANT}/v2.0/.well-known/openid-configuration", json={
            "token_endpoint": f"{LOGIN}/{TENANT}/oauth2/v2.0/token",
            "authorization_endpoint": f"{LOGIN}/{TENANT}/oauth2/v2.0/authorize", "issuer": f"{LOGIN}/{TENANT}/v2.0"})
        rsps.post(f"{LOGIN}/{TENANT}/oauth2/v2.0/token", json={"access_token": "g", "expires_in": 3599,
                                                              "token_type": "Bearer"})
        rsps.add_callback(responses.GET, re.compile(re.escape(GRAPH) + r"/v1\.0/.*"),
                          callback=serve_json(graph_pages()))
        yield json.dumps({"type": "service_account", "client_email": "itam@p.iam.gserviceaccount.com",
                          "private_key": pem, "private_key_id": "k1", "token_uri": TOKEN_URI})


def settings(tmp: Path, google_key: str) -> Settings:
    maps = ROOT / "mappings"
    return Settings(
        store=StoreConfig(url=f"sqlite:///{tmp / 'idp.db'}"),
        precedence=PrecedenceConfig(default=["okta", "entra", "google"]),
        connectors=[
            ConnectorConfig(name="okta", type="okta", mapping=str(maps / "okta.yaml"),
                            settings={"org_url": ORG, "api_token": "t"}),
            ConnectorConfig(name="entra", type="entra", mapping=str(maps / "entra.yaml"),
                            settings={"tenant_id": TENANT, "client_id": "c", "client_secret": "s"}),
            ConnectorConfig(name="google", type="google_workspace", mapping=str(maps / "google_workspace.yaml"),
                            settings={"credentials_json": google_key, "subject": "admin@example.com"})])


def test_people_from_three_identity_providers_merge_into_one_golden_record_each(google_key: str,
                                                                                 tmp_path: Path) -> None:
    s = settings(tmp_path, google_key)
    registry = Registry(extra={"okta": OktaConnector, "entra": EntraConnector,
                               "google_workspace": GoogleWorkspaceConnector})
    for name in ("okta", "entra", "google"):
        result = run_connector(s, name, full=True, registry=registry)
        assert result.status == "success", result.message
        assert result.counts["users"]["quarantined"] == 1  # each fixture set has one broken user
    store = Store.open(s.store.url)
    with store.begin() as repo:
        people = {g["email"][0]: (eid, g) for eid, g, _ in repo.entities.iter_entities("person")}
        sources_of = repo.entities.source_keys_of([eid for eid, _ in people.values()])
        conflicts = repo.conflicts.list_conflicts()
    store.close()
    assert sorted(people) == ["anna.berg@example.com", "lars.ek@example.com", "olle.svensson@example.com"]
    for _email, (eid, _) in people.items():
        # One person, three identity providers: joined on employee id, and on e-mail where Google has none.
        assert sorted(k.split("/")[0] for k in sources_of[eid]) == ["entra", "google", "okta"]
    anna = people["anna.berg@example.com"][1]
    assert anna["employee_id"][:2] == ["E10442", "okta"] and anna["status"][:2] == ["active", "okta"]
    assert anna["title"][:2] == ["Controller", "okta"]
    lars = people["lars.ek@example.com"][1]
    assert lars["status"][:2] == ["suspended", "okta"]  # suspended, and the golden record says by whom
    olle = people["olle.svensson@example.com"][1]
    assert olle["status"][:2] == ["terminated", "okta"] and olle["employee_id"][0] == "E10311"
    assert conflicts == []
