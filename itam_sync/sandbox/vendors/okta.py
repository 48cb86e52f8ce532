"""Okta Management API as connectors/okta calls it: users, devices (expand=user), apps and app users.

Auth `SSWS <api token>` (any value) or `Bearer <token>` from `POST /oauth2/v1/token`; Link-header paging
with an opaque `after` cursor; `X-Rate-Limit-Limit/-Remaining/-Reset` on every response and, when throttled,
429 with errorCode E0000047 and only `X-Rate-Limit-Reset` (epoch seconds) to say when.
"""

from __future__ import annotations

import re
import time
from typing import Any

from itam_sync.sandbox.population import APPS, Population
from itam_sync.sandbox.server import Request, Response, Router, Sandbox, decode_token, encode_token, json_response, url
from itam_sync.sandbox.vendors.common import iso_ms, parse_time, serial_as

P = "/okta"
_SINCE = re.compile(r'lastUpdated\s+(ge|gt)\s+"([^"]+)"')
BUILT_IN = (("saasure", "Okta Admin Console"), ("okta_enduser", "Okta Dashboard"))
LIMIT = 600


def register(router: Router) -> None:
    router.add("GET", P + "/api/v1/users", "okta", users)
    router.add("GET", P + "/api/v1/devices", "okta", devices)
    router.add("GET", P + "/api/v1/apps", "okta", apps)
    router.add("GET", P + r"/api/v1/apps/(?P<app>[^/]+)/users", "okta", app_users)
    router.add("POST", P + "/oauth2/v1/token", "okta", token, faults=False)
    router.throttles["okta"] = throttle


def _headers(sb: Sandbox) -> dict[str, str]:
    n = sb.requests["okta"]
    return {"X-Rate-Limit-Limit": str(LIMIT), "X-Rate-Limit-Remaining": str(LIMIT - 1 - n % LIMIT),
            "X-Rate-Limit-Reset": str(int(time.time()) + 60)}


def throttle(req: Request, wait: float) -> Response:
    return json_response({"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit due to too many "
                          "requests.", "errorLink": "E0000047", "errorId": "sandbox", "errorCauses": []}, 429,
                         {"X-Rate-Limit-Limit": str(LIMIT), "X-Rate-Limit-Remaining": "0",
                          "X-Rate-Limit-Reset": str(int(time.time() + wait + 0.999))})


def _authorized(req: Request, sb: Sandbox) -> bool:
    auth = req.auth()
    if auth.startswith("SSWS ") and auth[5:].strip():
        return True
    return sb.bearer_ok(req, "okta")


def _denied() -> Response:
    return json_response({"errorCode": "E0000011", "errorSummary": "Invalid token provided", "errorCauses": []},
                         401)


def token(req: Request, sb: Sandbox) -> Response:
    form = req.form()
    if form.get("grant_type") != "client_credentials" or not form.get("client_assertion"):
        return json_response({"error": "invalid_client", "error_description": "client assertion required"}, 401)
    return json_response({"token_type": "Bearer", "expires_in": 3600, "access_token": sb.issue_token("okta"),
                          "scope": form.get("scope", "")})


def _page(req: Request, sb: Sandbox, kind: str, items: list[int], render: Any, params: dict[str, Any],
          vendor_max: int = 200) -> Response:
    limit = sb.page_size(req.qint("limit", 200, 1), vendor_max)
    pos = (decode_token(req.q("after")) or {}).get("p", 0)
    chunk = items[pos:pos + limit]
    with sb.population.lock:
        body = [render(sb.population, i) for i in chunk]
    sb.records[f"okta.{kind}"] += len(body)
    headers = _headers(sb)
    links = [f'<{url(req.base, req.path, {**params, "limit": limit})}>; rel="self"']
    if pos + limit < len(items):
        nxt = url(req.base, req.path, {**params, "limit": limit, "after": encode_token({"p": pos + limit})})
        links.append(f'<{nxt}>; rel="next"')
    headers["Link"] = ", ".join(links)
    return json_response(body, headers=headers, page=True)


def _since(text: str | None) -> float | None:
    m = _SINCE.search(text or "")
    return parse_time(m.group(2)) if m else None


def users(req: Request, sb: Sandbox) -> Response:
    if not _authorized(req, sb):
        return _denied()
    flt = req.q("filter")
    since = _since(flt)
    pop = sb.population

    def build() -> list[int]:
        return [i for i in pop.people_of("okta") if since is None or pop.person_ts(i) >= since]
    items = sb.cached(("okta.users", since), build)
    return _page(req, sb, "users", items, user, {"filter": flt})


def user(pop: Population, i: int) -> dict[str, Any]:
    p = pop.people[i]
    status = pop.person_status(i)
    okta_status = {"active": "ACTIVE", "suspended": "SUSPENDED"}.get(status, "ACTIVE" if p.okta_lags else
                                                                      "DEPROVISIONED")
    ts = pop.person_ts(i)
    manager = pop.people[p.manager] if p.manager >= 0 else None
    return {
        "id": p.okta_id, "status": okta_status, "created": iso_ms(pop.person_ts(i) - 86400 * 400),
        "activated": iso_ms(ts - 86400 * 399), "statusChanged": iso_ms(ts), "lastLogin": iso_ms(ts - 3600),
        "lastUpdated": iso_ms(ts), "passwordChanged": None, "type": {"id": "oty1default"},
        "profile": {
            "login": p.old_email or p.variant_email or p.alias or p.email,
            "email": p.old_email or p.variant_email or pop.email_as(i, "okta"), "secondEmail": None,
            "firstName": p.first,
            "lastName": p.last, "displayName": f"{p.first} {p.last}" if i % 5 else None,
            "employeeNumber": None if p.contractor else (f" {p.employee_id} " if i % 13 == 0 else p.employee_id),
            "department": pop.person_department(i), "title": pop.person_title(i),
            "manager": f"{manager.first} {manager.last}" if manager else None,
            "managerId": manager.employee_id if manager else None, "costCenter": f"CC-{100 + i % 40}",
            "userType": "Contractor" if p.contractor else "Employee", "mobilePhone": None},
        "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
        "_links": {"self": {"href": f"https://sandbox.okta.example/api/v1/users/{p.okta_id}"}},
    }


def devices(req: Request, sb: Sandbox) -> Response:
    if not _authorized(req, sb):
        return _denied()
    search = req.q("search")
    since = _since(search)
    pop = sb.population

    def build() -> list[int]:
        return [i for i in pop.devices_of("okta") if since is None or pop.device_ts(i) >= since]
    items = sb.cached(("okta.devices", since), build)
    return _page(req, sb, "devices", items, device, {"expand": req.q("expand"), "search": search})


_PLATFORM = {"mac": "MACOS", "windows": "WINDOWS", "ios": "IOS", "ipados": "IOS", "android": "ANDROID",
             "linux": "LINUX"}


def device(pop: Population, i: int) -> dict[str, Any]:
    d = pop.devices[i]
    ts = pop.device_ts(i)
    # The IdP still shows the previous owner of a reassigned device (the MDM knows better).
    owner = d.prev_owner
    embedded: list[dict[str, Any]] = []
    if owner >= 0:
        p = pop.people[owner]
        embedded.append({"created": iso_ms(d.enrolled), "managementStatus": "MANAGED" if d.platform in (
            "mac", "windows", "ios", "ipados") else "NOT_MANAGED", "screenLockType": "BIOMETRIC",
            "user": {"id": p.okta_id, "status": "ACTIVE", "profile": {
                "login": p.email, "email": pop.email_as(owner, "okta"), "employeeNumber": p.employee_id}}})
    return {
        "id": f"guo{i:010d}sbx", "status": "ACTIVE", "created": iso_ms(d.enrolled), "lastUpdated": iso_ms(ts),
        "resourceType": "UDDevice", "resourceDisplayName": {"value": d.hostname, "sensitive": False},
        "profile": {"displayName": d.hostname, "platform": _PLATFORM[d.platform],
                    "manufacturer": d.manufacturer.upper() if d.manufacturer == "Apple" else d.manufacturer,
                    "model": d.model, "osVersion": pop.device_os(i), "serialNumber": serial_as(d.serial, i, 3),
                    "udid": d.udid.lower() or None, "imei": d.imei or None, "registered": True,
                    "managed": d.platform != "android", "secureHardwarePresent": True},
        "_embedded": {"users": embedded},
    }


def _app_list() -> list[tuple[str, str, str]]:
    """(id, name, label) of every app, built-in ones included (the connector skips those)."""
    out = [(f"0oa{j:03d}{name[:8]:0<8}sbx", name, label) for j, (name, label, _) in enumerate(APPS)]
    out += [(f"0oab{name[:8]:0<8}sbx", name, label) for name, label in BUILT_IN]
    return out


def apps(req: Request, sb: Sandbox) -> Response:
    if not _authorized(req, sb):
        return _denied()
    items = list(range(len(_app_list())))
    listed = _app_list()

    def render(pop: Population, j: int) -> dict[str, Any]:
        app_id, name, label = listed[j]
        return {"id": app_id, "name": name, "label": label + (" " if j == 0 else ""), "status": "ACTIVE",
                "lastUpdated": "2026-03-01T10:00:00.000Z", "created": "2020-06-01T10:00:00.000Z",
                "signOnMode": "SAML_2_0", "features": [], "settings": {"app": {}}}
    return _page(req, sb, "apps", items, render, {"filter": req.q("filter")})


def app_users(req: Request, sb: Sandbox) -> Response:
    if not _authorized(req, sb):
        return _denied()
    assert req.match is not None
    app_id = req.match.group("app")
    ids = [a[0] for a in _app_list()]
    if app_id not in ids:
        return json_response({"errorCode": "E0000007", "errorSummary": f"Not found: Resource not found: {app_id}"},
                             404)
    j = ids.index(app_id)
    pop = sb.population

    def build() -> list[int]:
        if j >= len(APPS):
            return []
        return [p.idx for p in pop.people if p.apps >> j & 1 and pop.person_status(p.idx) != "terminated"]
    items = sb.cached(("okta.app_users", j), build)

    def render(pop: Population, i: int) -> dict[str, Any]:
        p = pop.people[i]
        return {"id": p.okta_id, "scope": "USER", "status": "PROVISIONED",
                "credentials": {"userName": p.email},
                "_embedded": {"user": {"id": p.okta_id, "profile": {"email": pop.email_as(i, "okta"),
                                                                    "login": p.email}}}}
    return _page(req, sb, "app_users", items, render, {"expand": req.q("expand")}, vendor_max=500)
