"""The REST API (/api/v1) on the demo store: exact data, filters, pagination, auth and the OpenAPI schema."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from itam_sync.settings import ConfigError, load_settings
from itam_sync.store import Store
from itam_sync.web import create_app
from itam_sync.web.auth import ENV_TOKENS, RedactTokenFilter, configured_tokens

TOKEN = "tok-3f9a1c2e-web-tests"


@pytest.fixture
def synced(demo):  # type: ignore[no-untyped-def]
    result = demo.cli("run", "--full", "-q")
    assert result.exit_code == 0, result.output
    return demo


@pytest.fixture
def api(synced, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """A client of an app with no tokens (local-only: addressed to 127.0.0.1)."""
    monkeypatch.delenv(ENV_TOKENS, raising=False)
    store = synced.store()
    with TestClient(create_app(synced.settings(), tokens=[], store=store), base_url="http://127.0.0.1") as client:
        yield client
    store.close()


@pytest.fixture
def secured(synced) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """A client of an app with one API token configured."""
    store = synced.store()
    with TestClient(create_app(synced.settings(), tokens=[TOKEN], store=store)) as client:
        yield client
    store.close()


def _get(client: TestClient, url: str, status: int = 200) -> Any:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.text[:500])
    return r.json()


def _serials(page: dict[str, Any]) -> list[str | None]:
    return [i["fields"].get("serial_number") for i in page["items"]]


def _all(client: TestClient, url: str) -> list[dict[str, Any]]:
    """Every item of a list, following next_after."""
    items: list[dict[str, Any]] = []
    sep = "&" if "?" in url else "?"
    page = _get(client, url)
    while True:
        items += page["items"]
        if page["next_after"] is None:
            return items
        page = _get(client, f"{url}{sep}after={page['next_after']}")


# -- one asset, explained ---------------------------------------------------------------------------------
def test_asset_page_explains_every_field(api: TestClient) -> None:
    a = _get(api, "/api/v1/assets/C02FK1ABQ6L4")
    assert a["type"] == "asset" and a["status"] == "active"
    fields = {f["field"]: f for f in a["fields"]}
    owner = fields["assigned_to"]
    assert (owner["value"], owner["source"], owner["rule"]) == ("bob.li@example.com", "mdm", "freshness:90d")
    assert owner["observed_at"] == "2026-11-25T07:45:00Z"
    assert owner["rule_detail"] == "order manual > procurement > mdm, freshness 90d"
    assert [(c["source"], c["value"], c["observed_at"], c["why_lost"]) for c in owner["competitors"]] == [
        ("procurement", "ana.souza@example.com", "2023-02-20T10:00:00Z", "older than 90d")]
    bob = _get(api, "/api/v1/people/bob.li@example.com")
    assert owner["link"] == f"/people/{bob['id']}"
    model = fields["model"]
    assert (model["value"], model["source"], model["rule"]) == ("MacBook Pro 14 (2021)", "procurement",
                                                                "precedence:field")
    assert [(c["source"], c["value"]) for c in model["competitors"]] == [("mdm", "MacBookPro18,3")]
    assert fields["mac_addresses"]["value"] == ["a483e7123456"] and fields["mac_addresses"]["rule"] == "union"
    assert fields["serial_number"]["description"].startswith("Manufacturer serial number")
    # Fields come in the canonical model's order: kind first.
    assert a["fields"][0]["field"] == "kind"
    records = {f"{r['connector']}/{r['stream']}/{r['source_key']}": r for r in a["records"]}
    assert sorted(records) == ["edr/hosts/cs-a1", "mdm/devices/mdm-001",
                               "procurement/orders/PO-2023-0142/C02FK1ABQ6L4"]
    assert records["edr/hosts/cs-a1"]["raw"]["serial_number"] == "c02f k1ab q6l4"
    assert records["edr/hosts/cs-a1"]["fields"]["serial_number"] == "C02FK1ABQ6L4"
    assert "serial_number:C02FK1ABQ6L4" in records["mdm/devices/mdm-001"]["match_keys"]
    assert a["conflicts"] == []
    hist = a["history"]["items"]
    assert [h["id"] for h in hist] == sorted((h["id"] for h in hist), reverse=True)  # newest first
    set_owner = [h for h in hist if h["field"] == "assigned_to"]
    assert [(h["action"], h["old"], h["new"], h["source"], h["rule"]) for h in set_owner] == [
        ("set", None, "bob.li@example.com", "mdm", "freshness:90d")]
    # The same record by id, by match key and by bare serial in any case.
    assert _get(api, f"/api/v1/assets/{a['id']}")["fields"] == a["fields"]
    assert _get(api, "/api/v1/assets/serial_number:C02FK1ABQ6L4")["id"] == a["id"]
    assert _get(api, "/api/v1/assets/c02fk1abq6l4")["id"] == a["id"]


def test_person_with_assets_held_and_terminated_status(api: TestClient) -> None:
    bob = _get(api, "/api/v1/people/bob.li@example.com")
    assert {f["field"]: f["value"] for f in bob["fields"]}["display_name"] == "Bob Li"
    assert [h["fields"]["serial_number"] for h in bob["assets_held"]] == ["C02FK1ABQ6L4"]
    carla = _get(api, "/api/v1/people/E1003")
    status = {f["field"]: f for f in carla["fields"]}["status"]
    assert (status["value"], status["source"]) == ("terminated", "hr")
    assert [(c["source"], c["value"]) for c in status["competitors"]] == [("okta-users", "active")]
    assert [h["fields"]["serial_number"] for h in carla["assets_held"]] == ["FVFXC2ABJ1WK"]


def test_history_pages_newest_first(api: TestClient) -> None:
    a = _get(api, "/api/v1/assets/C02FK1ABQ6L4?history_limit=500")
    everything = [h["id"] for h in a["history"]["items"]]
    assert len(everything) >= 20 and a["history"]["next_before"] is None
    seen: list[int] = []
    page = _get(api, "/api/v1/assets/C02FK1ABQ6L4/history?limit=6")
    while True:
        # Up to 6 entries, or more to finish one log row: a first merge's fields share its id, never split.
        assert len(page["items"]) <= 6 or {h["id"] for h in page["items"][5:]} == {page["items"][5]["id"]}
        seen += [h["id"] for h in page["items"]]
        if page["next_before"] is None:
            break
        page = _get(api, f"/api/v1/assets/C02FK1ABQ6L4/history?limit=6&before={page['next_before']}")
    assert seen == everything


def test_wrong_type_and_unknown_refs_are_404(api: TestClient) -> None:
    a = _get(api, "/api/v1/assets/C02FK1ABQ6L4")
    r = api.get(f"/api/v1/people/{a['id']}")
    assert r.status_code == 404 and r.json() == {"detail": f"entity {a['id']} is an asset, not a person"}
    assert api.get("/api/v1/assets/NO-SUCH-SERIAL").status_code == 404
    assert api.get("/api/v1/assets/999999").status_code == 404
    assert api.get("/api/v1/runs/999999").json() == {"detail": "no sync run 999999"}


# -- lists: search, filters, pagination -------------------------------------------------------------------
def test_asset_filters(api: TestClient) -> None:
    everything = _get(api, "/api/v1/assets?limit=500")
    assert everything["total"] == 10 and not everything["total_is_lower_bound"]
    assert len(everything["items"]) == 10 and everything["next_after"] is None
    assert _serials(_get(api, "/api/v1/assets?kind=mobile")) == ["F17ZK3LMN0D8"]
    assert _serials(_get(api, "/api/v1/assets?kind=server")) == ["VMWARE-421D5C3E8A9B7C6D-1E2F3A4B5C6D7E8F"]
    ordered = _get(api, "/api/v1/assets?status=ordered")
    assert sorted(map(str, _serials(ordered))) == ["None", "PF9NEW001"] and ordered["total"] == 2
    assert [i["fields"]["model"] for i in ordered["items"]] == ["ThinkPad X1 Carbon Gen 12", "Latitude 5440"]
    in_conflict = _get(api, "/api/v1/assets?conflict=true")
    assert _serials(in_conflict) == ["PF3ABCDE", "PF3ZZZZZ"]
    assert all(i["in_conflict"] for i in in_conflict["items"])
    assert _get(api, "/api/v1/assets?conflict=false")["total"] == 8
    edr = _get(api, "/api/v1/assets?source=edr")
    assert edr["total"] == 6
    assert all(any(s["connector"] == "edr" for s in i["sources"]) for i in edr["items"])
    assert _serials(_get(api, "/api/v1/assets?source=edr&kind=server&conflict=false")) == [
        "VMWARE-421D5C3E8A9B7C6D-1E2F3A4B5C6D7E8F"]
    assert _get(api, "/api/v1/assets?presence=active")["total"] == 10
    assert _get(api, "/api/v1/assets?presence=missing") == {
        "items": [], "limit": 50, "next_after": None, "prev_before": None, "total": 0,
        "total_is_lower_bound": False}
    assert api.get("/api/v1/assets?presence=gone").status_code == 422


def test_asset_search(api: TestClient) -> None:
    assert _serials(_get(api, "/api/v1/assets?q=c02f")) == ["C02FK1ABQ6L4"]  # serial prefix, any case
    assert _serials(_get(api, "/api/v1/assets?q=c02f k1ab")) == ["C02FK1ABQ6L4"]  # spaces as in the EDR export
    assert _serials(_get(api, "/api/v1/assets?q=lt-bob")) == ["5CG1234XYZ"]  # host name prefix
    assert _serials(_get(api, "/api/v1/assets?q=LT-BOB-W11")) == ["5CG1234XYZ"]
    assert _serials(_get(api, "/api/v1/assets?q=dev.patel@")) == ["5CG1234XYZ", "PF3ABCDE"]  # assigned-to
    assert _serials(_get(api, "/api/v1/assets?q=A4-83-E7-12-34-56")) == ["C02FK1ABQ6L4"]  # a MAC, any format
    assert _serials(_get(api, "/api/v1/assets?q=352099001761481")) == ["F17ZK3LMN0D8"]  # IMEI
    asset_id = _get(api, "/api/v1/assets/PF9NEW001")["id"]
    assert _serials(_get(api, f"/api/v1/assets?q={asset_id}")) == ["PF9NEW001"]
    assert _get(api, "/api/v1/assets?q=nothing-like-this")["items"] == []
    # Search and filters combine.
    assert _serials(_get(api, "/api/v1/assets?q=lt-&conflict=true")) == ["PF3ABCDE", "PF3ZZZZZ"]
    assert _get(api, "/api/v1/assets?q=lt-&kind=mobile")["items"] == []


def test_people_search_and_filters(api: TestClient) -> None:
    def names(url: str) -> list[str]:
        return [i["fields"]["display_name"] for i in _get(api, url)["items"]]

    assert names("/api/v1/people?q=souza") == ["Ana Souza"]  # any part of the name
    assert names("/api/v1/people?q=ana.souza@example.com") == ["Ana Souza"]
    assert names("/api/v1/people?q=E1004") == ["Dev Patel"]
    assert names("/api/v1/people?status=terminated") == ["Carla Diaz"]
    assert names("/api/v1/people?source=hr&q=bob") == ["Bob Li"]
    assert _get(api, "/api/v1/people")["total"] == 6


def test_keyset_pagination_forward_and_back(api: TestClient) -> None:
    full = [i["id"] for i in _get(api, "/api/v1/assets?limit=500")["items"]]
    paged = [i["id"] for i in _all(api, "/api/v1/assets?limit=3")]
    assert paged == full
    p1 = _get(api, "/api/v1/assets?limit=3")
    assert p1["prev_before"] is None and p1["total"] == 10
    p2 = _get(api, f"/api/v1/assets?limit=3&after={p1['next_after']}")
    assert [i["id"] for i in p2["items"]] == full[3:6]
    back = _get(api, f"/api/v1/assets?limit=3&before={p2['prev_before']}")
    assert [i["id"] for i in back["items"]] == full[:3] and back["prev_before"] is None
    assert back["next_after"] == full[2]
    last = _get(api, f"/api/v1/assets?limit=3&after={full[8]}")
    assert [i["id"] for i in last["items"]] == full[9:] and last["next_after"] is None
    # Filters hold across pages.
    laptops = _all(api, "/api/v1/assets?kind=laptop&limit=2")
    assert len(laptops) == 8 and {i["fields"]["kind"] for i in laptops} == {"laptop"}
    assert api.get("/api/v1/assets?limit=0").status_code == 422
    assert api.get("/api/v1/assets?limit=501").status_code == 422


# -- conflicts, runs, overview, reports -------------------------------------------------------------------
def test_conflicts_runs_and_overview(api: TestClient) -> None:
    conflicts = _get(api, "/api/v1/conflicts")
    assert [(c["key"], c["record"], c["status"]) for c in conflicts["items"]] == [
        ("mac:3c18a00b7c11", "edr/hosts/cs-a5", "open")]
    pf3a = _get(api, "/api/v1/assets/PF3ABCDE")["id"]
    pf3z = _get(api, "/api/v1/assets/PF3ZZZZZ")["id"]
    c = conflicts["items"][0]
    assert (c["other_entity_id"], c["entity_id"]) == (pf3a, pf3z)
    assert _get(api, "/api/v1/conflicts?status=resolved")["items"] == []
    assert [x["key"] for x in _get(api, f"/api/v1/assets/{pf3z}")["conflicts"]] == ["mac:3c18a00b7c11"]
    runs = _get(api, "/api/v1/runs")
    assert {r["connector"] for r in runs["items"]} >= {"hr", "okta-users", "procurement", "mdm", "edr"}
    assert {r["status"] for r in runs["items"]} == {"success"}
    ids = [r["id"] for r in runs["items"]]
    assert ids == sorted(ids, reverse=True)
    edr = _get(api, "/api/v1/runs?connector=edr")["items"]
    assert len(edr) == 1 and edr[0]["mode"] == "full" and edr[0]["counts"]["hosts"]["seen"] == 6
    assert _get(api, f"/api/v1/runs/{edr[0]['id']}") == edr[0]
    older = _get(api, f"/api/v1/runs?limit=2&before={ids[1]}")
    assert [r["id"] for r in older["items"]] == ids[2:4]
    o = _get(api, "/api/v1/overview")
    assert (o["assets"], o["people"], o["open_conflicts"], o["quarantined"]) == (10, 6, 1, 1)
    assert o["merge_log_rows"] > 40  # each entity's first merge is one create row


def test_reports(api: TestClient) -> None:
    names = [r["name"] for r in _get(api, "/api/v1/reports")]
    assert {"coverage-gaps", "stale-devices", "offboarding", "kpis"} <= set(names)
    gaps = _get(api, "/api/v1/reports/coverage-gaps")
    assert gaps["columns"][:3] == ["gap", "asset_id", "serial_number"]
    by_gap = {(r["gap"], r["serial_number"]) for r in gaps["rows"]}
    assert ("mdm-without-edr", "FVFXC2ABJ1WK") in by_gap and ("procured-never-seen", "PF9NEW001") in by_gap
    off = _get(api, "/api/v1/reports/offboarding")
    assert [(r["serial_number"], r["assigned_to"], r["holder_status"]) for r in off["rows"]] == [
        ("FVFXC2ABJ1WK", "carla.diaz@example.com", "terminated")]
    csv_resp = api.get("/api/v1/reports/offboarding?format=csv")
    assert csv_resp.status_code == 200 and csv_resp.headers["content-type"].startswith("text/csv")
    lines = csv_resp.text.splitlines()
    assert lines[0].split(",")[:2] == ["asset_id", "serial_number"] and "FVFXC2ABJ1WK" in lines[1]
    assert _get(api, "/api/v1/reports/stale-devices?days=7")["summary"]["params"] == {"days": 7}
    assert api.get("/api/v1/reports/no-such-report").status_code == 404
    assert api.get("/api/v1/reports/kpis?days=3").status_code == 400  # kpis takes no window


# -- the schema -----------------------------------------------------------------------------------------
def test_openapi_schema(api: TestClient) -> None:
    schema = _get(api, "/openapi.json")
    paths = schema["paths"]
    for p in ("/api/v1/assets", "/api/v1/assets/{ref}", "/api/v1/assets/{ref}/history", "/api/v1/people",
              "/api/v1/people/{ref}", "/api/v1/subscriptions", "/api/v1/subscriptions/{ref}", "/api/v1/conflicts",
              "/api/v1/runs", "/api/v1/runs/{run_id}", "/api/v1/reports", "/api/v1/reports/{name}",
              "/api/v1/overview"):
        assert "get" in paths[p], p
    assert not [p for p in paths if not p.startswith("/api/v1/")]  # HTML pages stay out of the schema
    params = {p["name"] for p in paths["/api/v1/assets"]["get"]["parameters"]}
    assert params == {"q", "kind", "status", "source", "presence", "conflict", "after", "before", "limit"}
    ok = paths["/api/v1/assets/{ref}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/EntityDetail"}
    detail = schema["components"]["schemas"]["EntityDetail"]["properties"]
    assert {"fields", "records", "history", "conflicts", "assets_held"} <= set(detail)
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert paths["/api/v1/assets"]["get"]["security"] == [{"HTTPBearer": []}]


# -- auth -----------------------------------------------------------------------------------------------
def test_api_needs_a_token_when_tokens_are_configured(secured: TestClient) -> None:
    r = secured.get("/api/v1/assets")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["detail"].startswith("missing bearer token")
    r = secured.get("/api/v1/assets", headers={"Authorization": "Bearer wrong-token"})
    assert r.status_code == 401 and r.json() == {"detail": "invalid token"}
    assert secured.get("/api/v1/assets", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    r = secured.get("/api/v1/assets/C02FK1ABQ6L4", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.json()["type"] == "asset"
    # The schema too needs the token (it names every route and filter).
    assert secured.get("/openapi.json").status_code == 401
    r = secured.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and "/api/v1/assets" in r.json()["paths"]
    # With tokens the server answers on any host name (it may sit behind a proxy).
    assert secured.get("http://itam.example.com/api/v1/overview",
                       headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_without_tokens_only_loopback_host_names_are_answered(api: TestClient) -> None:
    assert api.get("/api/v1/overview").status_code == 200
    assert api.get("http://localhost:8080/api/v1/overview").status_code == 200
    r = api.get("http://attacker.example/api/v1/overview")
    assert r.status_code == 403 and "127.0.0.1" in r.text


def test_tokens_come_from_secret_references_and_the_environment(synced, tmp_path,  # type: ignore[no-untyped-def]
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "web_token"
    secret.write_text("from-a-file\n")
    text = synced.config.read_text() + (
        "\nweb:\n  api_tokens: [\"${env:ITAM_TEST_WEB_TOKEN}\", \"${file:" + str(secret) + "}\"]\n")
    synced.config.write_text(text)
    monkeypatch.setenv("ITAM_TEST_WEB_TOKEN", "from-the-env")
    monkeypatch.setenv(ENV_TOKENS, " extra-1 ,extra-2,, ")
    settings = load_settings(synced.config).settings
    assert settings.web.api_tokens[0] == "${env:ITAM_TEST_WEB_TOKEN}"  # still a reference in the settings
    assert configured_tokens(settings) == ["from-the-env", "from-a-file", "extra-1", "extra-2"]
    store = synced.store()
    with TestClient(create_app(settings, store=store)) as client:
        for tok in ("from-the-env", "from-a-file", "extra-2"):
            assert client.get("/api/v1/overview", headers={"Authorization": f"Bearer {tok}"}).status_code == 200
        assert client.get("/api/v1/overview", headers={"Authorization": "Bearer other"}).status_code == 401
    store.close()
    # A literal token in the config is refused: config files end up in version control.
    synced.config.write_text(text.replace("${env:ITAM_TEST_WEB_TOKEN}", "plain-text-token"))
    with pytest.raises(ConfigError, match="secret references"):
        load_settings(synced.config)
    # A reference to an unset variable fails at startup with the variable's name.
    synced.config.write_text(text)
    monkeypatch.delenv("ITAM_TEST_WEB_TOKEN")
    with pytest.raises(ConfigError, match="ITAM_TEST_WEB_TOKEN is not set"):
        configured_tokens(load_settings(synced.config).settings)


def test_web_command_refuses_a_public_bind_without_tokens(synced, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
                                                          ) -> None:
    monkeypatch.delenv(ENV_TOKENS, raising=False)
    result = synced.cli("web", "--host", "0.0.0.0", "--port", "0")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: refusing to listen on 0.0.0.0 without API tokens: set web.api_tokens in the config or "
        "ITAM_SYNC_WEB_TOKENS, or use --host 127.0.0.1"]


def test_access_log_lines_never_carry_a_token() -> None:
    rec = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                            ("127.0.0.1:5000", "GET", "/assets?q=x&token=s3cret&kind=laptop", "1.1", 303), None)
    assert RedactTokenFilter().filter(rec)
    line = rec.getMessage()
    assert "s3cret" not in line and "/assets?q=x&kind=laptop&token=[redacted]" in line


@pytest.mark.postgres
def test_lists_and_search_on_postgres(synced, postgres_url: str,  # type: ignore[no-untyped-def]
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The dialect-specific queries (JSON field expressions, prefix search) give the SQLite answers."""
    monkeypatch.delenv(ENV_TOKENS, raising=False)
    urls = ["/api/v1/assets?kind=server", "/api/v1/assets?status=ordered", "/api/v1/assets?conflict=true",
            "/api/v1/assets?q=c02f", "/api/v1/assets?q=lt-bob", "/api/v1/assets?q=dev.patel@",
            "/api/v1/assets?q=lt-&conflict=true", "/api/v1/people?q=souza", "/api/v1/people?status=terminated",
            "/api/v1/assets?source=edr&limit=2", "/api/v1/assets?q=a_b%25"]

    def answers(settings: Any) -> dict[str, Any]:
        store = Store.open(settings.store.url)
        with TestClient(create_app(settings, tokens=[], store=store), base_url="http://127.0.0.1") as client:
            out: dict[str, Any] = {u: [(i["fields"].get("serial_number"), i["fields"].get("display_name"))
                                       for i in _get(client, u)["items"]] for u in urls}
            bob = _get(client, "/api/v1/people/bob.li@example.com")
            out["held"] = [h["fields"]["serial_number"] for h in bob["assets_held"]]
            owner = {f["field"]: f for f in _get(client, "/api/v1/assets/C02FK1ABQ6L4")["fields"]}["assigned_to"]
            assert owner.pop("link") == f"/people/{bob['id']}"
            out["owner"] = json.dumps(owner, sort_keys=True)
        store.close()
        return out

    on_sqlite = answers(synced.settings())
    synced.config.write_text(synced.config.read_text().replace(f"sqlite:///{synced.db}", postgres_url))
    assert synced.cli("run", "--full", "-q").exit_code == 0
    on_postgres = answers(synced.settings())
    assert on_postgres == on_sqlite
    assert on_postgres["/api/v1/assets?q=lt-bob"] == [("5CG1234XYZ", None)]
    assert on_postgres["/api/v1/assets?q=a_b%25"] == []  # LIKE wildcards in a search are literal text


# -- audit: the hash chain and time travel ----------------------------------------------------------------
def test_verify_catches_a_hand_edited_log_row(api: TestClient, synced) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    ok = _get(api, "/api/v1/audit/verify")
    assert ok["ok"] is True and ok["broken_row"] is None and ok["checked"] > 40
    page = api.get(f"/audit?verify=1&anchor={ok['head_id']}:{ok['head_hash']}").text
    assert "The chain holds" in page and f"{ok['head_id']}:{ok['head_hash']}" in page
    row = next(h for h in _get(api, "/api/v1/assets/C02FK1ABQ6L4")["history"]["items"]
               if h["field"] == "assigned_to")
    with sqlite3.connect(synced.db) as db:  # someone edits the log behind the engine's back
        db.execute("UPDATE merge_log SET new_value=? WHERE id=?", ('"mallory@example.com"', row["id"]))
    bad = _get(api, "/api/v1/audit/verify")
    assert (bad["ok"], bad["broken_row"], bad["break_kind"]) == (False, row["id"], "altered")
    assert bad["message"] == f"row {row['id']} was altered: its content does not match its row_hash"
    page = api.get("/audit?verify=1").text
    assert "broken" in page and f"Row {row['id']}: altered" in page
    assert api.get("/api/v1/audit/verify?anchor=not-an-anchor").status_code == 400


def test_time_travel(api: TestClient, synced) -> None:  # type: ignore[no-untyped-def]
    import time

    first = _get(api, "/api/v1/assets/C02FK1ABQ6L4")
    t1 = next(h for h in first["history"]["items"] if h["field"] == "assigned_to")["at"]
    time.sleep(1.1)  # log times have one-second resolution
    result = synced.cli("override", "C02FK1ABQ6L4", "location", "Lisbon", "--reason", "office move")
    assert result.exit_code == 0, result.output
    now = {f["field"]: f for f in _get(api, "/api/v1/assets/C02FK1ABQ6L4")["fields"]}
    assert (now["location"]["value"], now["location"]["source"]) == ("Lisbon", "manual")
    then = _get(api, f"/api/v1/assets/C02FK1ABQ6L4/as-of?at={t1}")
    assert then["id"] == first["id"] and then["as_of"] == t1 and then["status"] == "active"
    fields = {f["field"]: f for f in then["fields"]}
    assert "location" not in fields
    assert (fields["assigned_to"]["value"], fields["assigned_to"]["source"], fields["assigned_to"]["rule"]) == (
        "bob.li@example.com", "mdm", "freshness:90d")
    assert then["records"] == ["edr/hosts/cs-a1", "mdm/devices/mdm-001",
                               "procurement/orders/PO-2023-0142/C02FK1ABQ6L4"]
    later = {f["field"]: f["value"] for f in _get(api, "/api/v1/assets/C02FK1ABQ6L4/as-of?at=2099-01-01")["fields"]}
    assert later["location"] == "Lisbon"
    r = api.get("/api/v1/assets/C02FK1ABQ6L4/as-of?at=2001-01-01")
    assert r.status_code == 400 and "did not exist yet" in r.json()["detail"]
    assert api.get("/api/v1/assets/C02FK1ABQ6L4/as-of?at=last-tuesday").status_code == 400
    page = api.get(f"/assets/{first['id']}?as_of={t1}").text
    assert f"as it stood at {t1}" in page and "bob.li@example.com" in page and "Lisbon" not in page
