"""Fuzzing both HTTP servers: no request, however odd, gets a 500 (issue 20).

- Hypothesis builds requests against every route of the web UI/API (with and without tokens) and of `serve`
  (health, metrics, runs, each webhook kind): path parameters and query values drawn from huge and negative
  numbers, Unicode digits, control characters, dates and text; bodies of random bytes, random JSON and deep
  JSON; odd headers (content types, Origin, Authorization with right and wrong secrets).
- Sweeps, deterministic: every parameter of every API route (read from the app's own OpenAPI schema) and of
  the pages at every edge value, and every `serve` route with every odd body and content type, authenticated.

The store is the demo, synced, so entity, history and report routes reach real rows. Each answer must be
below 500. Syncs are stubbed out in `serve` (accepted events and runs would otherwise start real runs).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itam_sync.service.server import Service
from itam_sync.settings import load_settings
from itam_sync.web import create_app
from tests.tests_helpers import make_demo

TOKEN = "tok-fuzz-7d2e"
FUZZ = settings(max_examples=600, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Hypothesis favours small numbers: the edges (a database integer's, a date's, a report window's) are drawn
# on purpose, as often as the rest.
EDGES = [0, -1, 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**20, 999999999, 36500, 36501, 10**6]
numbers = st.one_of(st.sampled_from(EDGES), st.integers(-(2**70), 2**70))
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
odd = st.sampled_from(["", " ", "²", "١٢٣", "0x10", "1e9", "NaN", "-0", "00000000000000000001", "%00", "..",
                       "../../etc/passwd", "<script>", "'; DROP TABLE x;--", "2026-02-30", "2026-06-30T25:00:00Z",
                       "9999-12-31", "0001-01-01", "99999-01-01", "C02FK1ABQ6L4", "bob.li@example.com",
                       "serial_number:C02FK1ABQ6L4", "1:" + "a" * 64, "\u202e", "\x7f", "a" * 700])
values = st.one_of(numbers.map(str), odd, texts)
# Header values as a client puts them on the wire: any UTF-8 bytes but line breaks and NUL.
header_texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30).map(
    str.encode)
PARAMS = ["after", "before", "limit", "q", "kind", "status", "source", "presence", "conflict", "days", "format",
          "as_of", "at", "anchor", "verify", "history_limit", "token", "next", "connector", "part", "fresh",
          "department", "location", "validationToken"]
queries = st.lists(st.tuples(st.sampled_from(PARAMS), values), max_size=4).map(lambda kv: urlencode(kv))
json_values = st.recursive(st.none() | st.booleans() | numbers | texts,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
                           max_leaves=12)
bodies = st.one_of(st.none(), st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                   st.integers(1, 200).map(lambda n: b"[" * n + b"]" * n),
                   st.sampled_from([b'{"data":[]}', b'{"data":"x"}', b'{"value":[{"clientState":123}]}',
                                    b'{"value":[{"clientState":"graph-state"}]}', b'{"connector":null}',
                                    b'{"connector":"hr","full":"yes"}', b"token=" + TOKEN.encode() + b"&next=//x",
                                    b'{"webhook":{}}', b'{"data":{"events":[1,2]}}']))
content_types = st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", "",
                                 "application/json; charset=latin-1", "multipart/form-data"])
header_sets = st.fixed_dictionaries({}, optional={
    "Origin": st.sampled_from(["http://testserver", "https://evil.example", "null", "http://127.0.0.1"]),
    "Referer": st.sampled_from(["http://testserver/login", "https://evil.example/", "::::"]),
    "Authorization": st.sampled_from([f"Bearer {TOKEN}", "Bearer wrong", "Basic !!!", "Basic am9objp4",
                                      "okta-secret", "Bearer", "", "Basic " + "A" * 300]),
    "X-Jamf-Secret": st.sampled_from(["jamf-secret", "nope"]),
    "x-okta-verification-challenge": header_texts,
    "Cookie": st.sampled_from(["itam_sync_session=abc", "itam_sync_session=", "x=1"]),
})


def _request(method: str, path: str, query: str, body: bytes | None, ctype: str,
             headers: dict[str, Any]) -> tuple[str, str, dict[str, Any], bytes | None]:
    url = path + ("?" + query if query else "")
    hdrs = {**headers, **({"Content-Type": ctype} if ctype and body is not None else {})}
    return method, url, hdrs, body


@pytest.fixture(scope="module")
def demo_synced(tmp_path_factory: pytest.TempPathFactory) -> Any:
    demo = make_demo(tmp_path_factory.mktemp("fuzz"))
    result = demo.cli("run", "--full", "-q")
    assert result.exit_code == 0, result.output
    return demo


@pytest.fixture(scope="module")
def web_clients(demo_synced: Any) -> Iterator[tuple[TestClient, TestClient]]:
    store = demo_synced.store()
    local = TestClient(create_app(demo_synced.settings(), tokens=[], store=store), base_url="http://127.0.0.1",
                       follow_redirects=False, raise_server_exceptions=False)
    secured = TestClient(create_app(demo_synced.settings(), tokens=[TOKEN], store=store), follow_redirects=False,
                         raise_server_exceptions=False)
    with local, secured:
        yield local, secured
    store.close()


def _web_paths() -> st.SearchStrategy[str]:
    colls = st.sampled_from(["assets", "people", "subscriptions"])
    refs = st.one_of(values, st.sampled_from(["1", "2", "7", "C02FK1ABQ6L4", "email:bob.li@example.com"]))
    reports = st.sampled_from(["coverage-gaps", "stale-devices", "offboarding", "unowned", "warranty", "renewals",
                               "seats", "spend", "kpis", "nope"])
    q = lambda s: quote(s, safe="")  # noqa: E731
    return st.one_of(
        st.sampled_from(["/", "/search", "/conflicts", "/runs", "/audit", "/reports", "/login", "/logout",
                         "/healthz", "/openapi.json", "/static/itam.js", "/api/v1/overview", "/api/v1/conflicts",
                         "/api/v1/runs", "/api/v1/audit/verify", "/api/v1/reports"]),
        colls.map(lambda c: f"/{c}"), colls.map(lambda c: f"/api/v1/{c}"),
        st.tuples(colls, refs).map(lambda t: f"/{t[0]}/{q(t[1])}"),
        st.tuples(colls, refs, st.sampled_from(["", "/history", "/as-of"])).map(
            lambda t: f"/api/v1/{t[0]}/{q(t[1])}{t[2]}"),
        values.map(lambda v: f"/runs/{q(v)}"), values.map(lambda v: f"/api/v1/runs/{q(v)}"),
        reports.map(lambda r: f"/reports/{r}"), reports.map(lambda r: f"/api/v1/reports/{r}"),
        values.map(lambda v: f"/static/{q(v)}"))


@FUZZ
@given(secured=st.booleans(), method=st.sampled_from(["GET", "GET", "GET", "POST", "HEAD", "PUT"]),
       path=_web_paths(), query=queries, body=bodies, ctype=content_types, headers=header_sets)
def test_no_web_request_is_a_500(web_clients: tuple[TestClient, TestClient], secured: bool, method: str, path: str,
                                 query: str, body: bytes | None, ctype: str, headers: dict[str, Any]) -> None:
    client = web_clients[1] if secured else web_clients[0]
    method, url, hdrs, content = _request(method, path, query, body, ctype, headers)
    r = client.request(method, url, content=content, headers=hdrs)
    assert r.status_code < 500, (method, url, hdrs, content, r.status_code, r.text[:500])
    assert r.headers.get("x-content-type-options") == "nosniff"


@pytest.fixture(scope="module")
def serve_client(demo_synced: Any) -> Iterator[TestClient]:
    env = {"ITAM_FUZZ_API_TOKEN": TOKEN, "ITAM_FUZZ_OKTA": "okta-secret", "ITAM_FUZZ_JAMF": "jamf-secret",
           "ITAM_FUZZ_JAMF_PW": "jamf-pw", "ITAM_FUZZ_GRAPH": "graph-state"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        cfg = yaml.safe_load(demo_synced.config.read_text())
        for c in cfg["connectors"]:
            c.pop("schedule", None)
        cfg["service"] = {"api_tokens": ["${env:ITAM_FUZZ_API_TOKEN}"], "webhooks": {
            "okta-users": {"kind": "okta", "secret": "${env:ITAM_FUZZ_OKTA}"},
            "mdm": {"kind": "jamf", "header": "X-Jamf-Secret", "secret": "${env:ITAM_FUZZ_JAMF}"},
            "procurement": {"kind": "jamf", "username": "jamf", "secret": "${env:ITAM_FUZZ_JAMF_PW}"},
            "edr": {"kind": "graph", "secret": "${env:ITAM_FUZZ_GRAPH}"}}}
        config = demo_synced.config.with_name("serve.yaml")
        config.write_text(yaml.safe_dump(cfg))
        svc = Service(load_settings(config).settings)
    svc.request_run = lambda connector, full, reason="api": True  # type: ignore[method-assign]
    svc.on_event = lambda connector, source: "queued"  # type: ignore[method-assign]
    with TestClient(svc.app, raise_server_exceptions=False) as client:
        yield client
    svc.shutdown(grace_s=1)


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "POST", "POST", "PUT"]),
       path=st.one_of(st.sampled_from(["/healthz", "/metrics", "/runs", "/hooks/okta-users", "/hooks/mdm",
                                       "/hooks/procurement", "/hooks/edr", "/hooks/hr"]),
                      values.map(lambda v: "/hooks/" + quote(v, safe=""))),
       query=queries, body=bodies, ctype=content_types, headers=header_sets)
def test_no_serve_request_is_a_500(serve_client: TestClient, method: str, path: str, query: str, body: bytes | None,
                                   ctype: str, headers: dict[str, Any]) -> None:
    method, url, hdrs, content = _request(method, path, query, body, ctype, headers)
    r = serve_client.request(method, url, content=content, headers=hdrs)
    assert r.status_code < 500, (method, url, hdrs, content, r.status_code, r.text[:500])
    assert r.headers.get("x-content-type-options") == "nosniff"


# -- every parameter of every route, at every edge --------------------------------------------------------
SWEEP = [str(n) for n in EDGES] + ["-5", "1.5", "abc", "", "²", "١", "2026-02-30", "0001-01-01", "9999-12-31T23:59:59Z",
                                   "a" * 700, "\u202e", "%", "../x", "true", "null"]


def test_every_web_parameter_at_every_edge(web_clients: tuple[TestClient, TestClient]) -> None:
    """The API's routes and parameters come from its own OpenAPI schema, the pages' from their routes; each
    parameter gets every edge value while the others keep a valid one."""
    local, _ = web_clients
    schema = local.get("/openapi.json").json()
    urls: list[str] = []
    for template, ops in schema["paths"].items():
        params = ops["get"].get("parameters", [])
        path_names = [p["name"] for p in params if p["in"] == "path"]
        base = {"ref": "1", "run_id": "1", "name": "stale-devices"}
        for param in params:
            for value in SWEEP:
                path = template
                for n in path_names:
                    path = path.replace("{" + n + "}", quote(value if n == param["name"] else base.get(n, "1"),
                                                             safe=""))
                query = urlencode({param["name"]: value}) if param["in"] == "query" else ""
                if "as-of" in template and param["name"] != "at":
                    query += ("&" if query else "") + "at=2026-06-30"
                urls.append(path + ("?" + query if query else ""))
    pages = {"/assets": ["after", "before", "limit", "q", "kind", "status", "presence", "conflict", "source"],
             "/people": ["after", "before", "limit", "q"], "/search": ["q"], "/conflicts": ["after", "status"],
             "/runs": ["before", "limit", "connector", "status"], "/audit": ["anchor", "verify"],
             "/reports/stale-devices": ["days", "fresh"], "/reports/warranty": ["days"],
             "/assets/1": ["before", "as_of"], "/people/1": ["before", "as_of"], "/login": ["next"]}
    for page, names in pages.items():
        for name in names:
            urls += [f"{page}?{urlencode({name: v} if name != 'verify' else {name: '1', 'anchor': v})}"
                     for v in SWEEP]
    urls += [f"/{c}/{quote(v, safe='')}" for c in ("assets", "people", "subscriptions", "runs", "reports")
             for v in SWEEP]
    assert len(urls) > 1000
    failures = [(url, r.status_code) for url in urls if (r := local.get(url)).status_code >= 500]
    assert failures == []


ODD_BODIES = [b"", b"\x80", b"\xff\xfe{}", b"null", b"[]", b"{}", b"1e999", b'"x"', b"[" * 40 + b"]" * 40,
              b'{"connector": 5}', b'{"connector": "hr", "full": []}', b'{"data": []}', b'{"data": "x"}',
              b'{"data": {"events": {}}}', b'{"value": [{"clientState": 123}]}', b'{"value": [null, 1]}',
              b'{"value": {}}', b'{"webhook": []}', b"token=x&next=%ff", "{\"a\": \"\u00e9\"}".encode("latin-1")]


def test_every_serve_route_with_every_odd_body(serve_client: TestClient) -> None:
    auth = {"/runs": f"Bearer {TOKEN}", "/hooks/okta-users": "okta-secret", "/hooks/procurement":
            "Basic amFtZjpqYW1mLXB3", "/hooks/edr": "", "/hooks/mdm": ""}
    failures = []
    for path, authorization in auth.items():
        for body in ODD_BODIES:
            for ctype in ("application/json", "application/x-www-form-urlencoded", "text/plain", None):
                headers = {"Authorization": authorization, "X-Jamf-Secret": "jamf-secret",
                           **({"Content-Type": ctype} if ctype else {})}
                r = serve_client.post(path, content=body, headers=headers)
                if r.status_code >= 500:
                    failures.append((path, body, ctype, r.status_code))
    assert failures == []
