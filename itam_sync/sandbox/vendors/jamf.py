"""Jamf Pro API as connectors/jamf calls it: computers inventory and mobile device details.

Tokens: `POST /api/oauth/token` (API client, client credentials) or `POST /api/v1/auth/token` (basic auth
user account, `{"token", "expires"}`). Lists page with `page` (from 0) / `page-size` (at most 2000) and
report `totalCount`; an RSQL `filter` on the last contact / inventory time (`>=`) narrows incremental runs.
Jamf has no rate-limit headers (its guidance is at most 5 concurrent connections).
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any

from itam_sync.sandbox.population import Population, iso
from itam_sync.sandbox.server import Request, Response, Router, Sandbox, json_response
from itam_sync.sandbox.vendors.common import colon, dash, parse_time, serial_as

P = "/jamf"
_FILTER = re.compile(r"([\w.]+)\s*>=\s*(\S+)")


def register(router: Router) -> None:
    router.add("POST", P + "/api/oauth/token", "jamf", oauth_token, faults=False)
    router.add("POST", P + "/api/v1/auth/token", "jamf", basic_token, faults=False)
    for version in ("v1", "v2", "v3"):
        router.add("GET", P + f"/api/{version}/computers-inventory", "jamf", computers)
    router.add("GET", P + "/api/v2/mobile-devices/detail", "jamf", mobile_devices)


def _denied() -> Response:
    return json_response({"httpStatus": 401, "errors": [{"code": "INVALID_TOKEN", "description": "Unauthorized"}]},
                         401)


def oauth_token(req: Request, sb: Sandbox) -> Response:
    form = req.form()
    if form.get("grant_type") != "client_credentials" or not form.get("client_id") or not form.get("client_secret"):
        return json_response({"error": "invalid_client"}, 401)
    return json_response({"access_token": sb.issue_token("jamf"), "scope": "api-role:1", "token_type": "Bearer",
                          "expires_in": 1199})


def basic_token(req: Request, sb: Sandbox) -> Response:
    auth = req.auth()
    try:
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":") if auth.startswith("Basic ") \
            else ("", "", "")
    except ValueError:
        user, password = "", ""
    if not user or not password:
        return _denied()
    expires = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 1800))
    return json_response({"token": sb.issue_token("jamf"), "expires": expires})


def _list(req: Request, sb: Sandbox, kind: str, platforms: tuple[str, ...], field: str, render: Any) -> Response:
    if not sb.bearer_ok(req, "jamf"):
        return _denied()
    pop = sb.population
    m = _FILTER.search(req.q("filter") or "")
    if m and m.group(1) != field:  # as Jamf Pro: a field the endpoint does not filter on is a 400
        return json_response({"httpStatus": 400, "errors": [{"code": "INVALID_FIELD", "field": "filter",
                                                             "description": f"{m.group(1)} is not filterable"}]}, 400)
    since = parse_time(m.group(2)) if m else None

    def build() -> list[int]:
        return [i for i in pop.devices_of("jamf", platforms) if since is None or pop.device_ts(i) >= since]
    items = sb.cached(("jamf", kind, since), build)
    size = sb.page_size(req.qint("page-size", 100, 1), 2000)
    page = req.qint("page", 0)
    with pop.lock:
        results = [render(pop, i) for i in items[page * size:(page + 1) * size]]
    sb.records[f"jamf.{kind}"] += len(results)
    return json_response({"totalCount": len(items), "results": results}, page=True)


def computers(req: Request, sb: Sandbox) -> Response:
    return _list(req, sb, "computers", ("mac",), "general.lastContactTime", computer)


def mobile_devices(req: Request, sb: Sandbox) -> Response:
    return _list(req, sb, "mobile_devices", ("ios", "ipados"), "lastInventoryUpdateDate", mobile_device)


def _owner(pop: Population, i: int) -> dict[str, Any]:
    owner = pop.device_owner(i)
    if owner < 0:
        return {"username": "", "realname": "", "email": ""}
    p = pop.people[owner]
    return {"username": p.email.split("@")[0], "realname": f"{p.first} {p.last}",
            "email": pop.email_as(owner, "jamf"), "position": pop.person_title(owner)}


def computer(pop: Population, i: int) -> dict[str, Any]:
    d = pop.devices[i]
    ts = pop.device_ts(i)
    name = d.hostname if i % 6 else f"{d.hostname.lower()}.corp.example.com"
    return {
        "id": str(i + 1), "udid": d.udid,
        "general": {"name": name, "lastIpAddress": "198.51.100.20",
                    "lastReportedIp": f"10.20.{i // 256 % 256}.{i % 256}",
                    "jamfBinaryVersion": "11.6.0-t1718", "platform": "Mac",
                    "remoteManagement": {"managed": i % 29 != 0}, "supervised": True, "reportDate": iso(ts - 600),
                    "lastContactTime": iso(ts), "lastEnrolledDate": iso(d.enrolled), "assetTag": f"IT-{i:06d}"},
        "hardware": {"make": "Apple", "model": d.model, "modelIdentifier": "MacBookPro18,3",
                     "serialNumber": serial_as(d.serial, i, 1), "macAddress": colon(d.mac, upper=True),
                     "altMacAddress": dash(d.mac2) if d.mac2 else None},
        "operatingSystem": {"name": "macOS", "version": pop.device_os(i), "build": "23F79"},
        "userAndLocation": _owner(pop, i),
    }


def mobile_device(pop: Population, i: int) -> dict[str, Any]:
    d = pop.devices[i]
    ts = pop.device_ts(i)
    owner = _owner(pop, i)
    return {
        "mobileDeviceId": str(i + 1), "deviceType": "iOS",
        "hardware": {"serialNumber": serial_as(d.serial, i, 2), "wifiMacAddress": colon(d.mac), "model": d.model,
                     "modelIdentifier": "iPhone14,7" if d.kind == "mobile" else "iPad13,18"},
        "userAndLocation": {"username": owner["username"], "realName": owner["realname"],
                            "emailAddress": owner["email"]},
        "general": {"udid": d.udid.lower() if i % 2 else d.udid, "displayName": d.hostname,
                    "lastInventoryUpdateDate": iso(ts).replace("Z", ".102Z"), "osVersion": pop.device_os(i),
                    "ipAddress": f"10.21.{i // 256 % 256}.{i % 256}", "managed": True, "supervised": True,
                    "lastEnrolledDate": iso(d.enrolled)},
        "network": {"imei": f"{d.imei[:2]} {d.imei[2:8]} {d.imei[8:14]} {d.imei[14:]}" if d.imei else None},
    }
