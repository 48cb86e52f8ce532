"""CrowdStrike Falcon as connectors/crowdstrike calls it: token, scroll query of host ids, host details POST.

`POST /oauth2/token` answers 201; `GET /devices/queries/devices-scroll/v1` pages ids with an opaque `offset`
token (a new one on every call, also past the end: the client stops on an empty page) and understands the
FQL clause `modified_timestamp:>='<time>'`; `POST /devices/entities/devices/v2` takes up to 5,000 ids.
Every response carries `X-RateLimit-Limit/-Remaining`; a throttled one `X-RateLimit-RetryAfter` (epoch).
Mess: agents on whitebox PCs report a placeholder serial, docked laptops the dock's MAC as their connection
MAC, and the scroll occasionally returns a null id.
"""

from __future__ import annotations

import re
import time
from typing import Any

from itam_sync.sandbox.population import DOCK_MAC, EXTRA, Population, _hex, extra_id, iso
from itam_sync.sandbox.server import Request, Response, Router, Sandbox, decode_token, encode_token, json_response
from itam_sync.sandbox.vendors.common import dash, parse_time, serial_as

P = "/crowdstrike"
_SINCE = re.compile(r"modified_timestamp:>=?'([^']+)'")
LIMIT = 6000


def register(router: Router) -> None:
    router.add("POST", P + "/oauth2/token", "crowdstrike", token, faults=False)
    router.add("GET", P + "/devices/queries/devices-scroll/v1", "crowdstrike", scroll)
    router.add("POST", P + "/devices/entities/devices/v2", "crowdstrike", entities)
    router.throttles["crowdstrike"] = throttle


def _headers(sb: Sandbox) -> dict[str, str]:
    n = sb.requests["crowdstrike"]
    return {"X-RateLimit-Limit": str(LIMIT), "X-RateLimit-Remaining": str(LIMIT - 1 - n % LIMIT)}


def throttle(req: Request, wait: float) -> Response:
    return json_response({"meta": {"query_time": 0.0, "trace_id": "sandbox"}, "resources": [],
                          "errors": [{"code": 429, "message": "API rate limit exceeded."}]}, 429,
                         {"X-RateLimit-Limit": str(LIMIT), "X-RateLimit-Remaining": "0",
                          "X-RateLimit-RetryAfter": str(int(time.time() + wait + 0.999))})


def _denied() -> Response:
    return json_response({"meta": {"trace_id": "sandbox"}, "resources": [],
                          "errors": [{"code": 401, "message": "access denied, invalid bearer token"}]}, 401)


def token(req: Request, sb: Sandbox) -> Response:
    form = req.form()
    if not form.get("client_id") or not form.get("client_secret"):
        return json_response({"errors": [{"code": 400, "message": "Failed to issue access token - Not Authorized"}]},
                             403)
    return json_response({"access_token": sb.issue_token("crowdstrike"), "token_type": "bearer", "expires_in": 1799},
                         201)


def device_id(pop: Population, i: int) -> str:
    """32 hex digits, the device index in the last eight (so details can find it); an old agent of a re-imaged
    machine (item >= EXTRA) has the top bit of those set."""
    if i >= EXTRA:
        variant, idx = divmod(i, EXTRA)
        return extra_id(pop.seed, "falcon", variant, idx)
    return _hex(pop.seed, "falcon", i, n=24) + f"{i:08x}"


def scroll(req: Request, sb: Sandbox) -> Response:
    if not sb.bearer_ok(req, "crowdstrike"):
        return _denied()
    pop = sb.population
    state = decode_token(req.q("offset"))
    if state is None:
        m = _SINCE.search(req.q("filter") or "")
        state = {"p": 0, "s": parse_time(m.group(1)) if m else None}
    since = state.get("s")

    def build() -> list[int]:
        return [i for i in pop.devices_of("crowdstrike") + pop.extras("crowdstrike")
                if since is None or i < EXTRA and pop.device_ts(i) >= since]
    items = sb.cached(("crowdstrike", since), build)
    limit = sb.page_size(req.qint("limit", 100, 1), 10_000)
    pos = int(state["p"])
    ids: list[Any] = []
    for i in items[pos:pos + limit]:
        if i < EXTRA and pop.devices[i].bad:
            ids.append(None)  # the scroll sometimes hands back a null: the connector quarantines it
        ids.append(device_id(pop, i))
    body = {"meta": {"query_time": 0.004, "powered_by": "device-api", "trace_id": "sandbox",
                     "pagination": {"total": len(items), "offset": encode_token({**state, "p": pos + limit}),
                                    "expires_at": int((time.time() + 120) * 1e9)}},
            "resources": ids, "errors": []}
    return json_response(body, headers=_headers(sb), page=True)


def entities(req: Request, sb: Sandbox) -> Response:
    if not sb.bearer_ok(req, "crowdstrike"):
        return _denied()
    body = req.json()
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or len(ids) > 5000:
        return json_response({"errors": [{"code": 400, "message": "ids: 1 to 5000 ids required"}], "resources": []},
                             400)
    pop = sb.population
    hosts, errors = [], []
    with pop.lock:
        for host in ids:
            i = _index(pop, host)
            if i is None:
                errors.append({"code": 404, "message": f"Device {host} not found"})
            else:
                hosts.append(host_record(pop, i))
    sb.records["crowdstrike.hosts"] += len(hosts)
    return json_response({"meta": {"query_time": 0.01, "powered_by": "device-api", "trace_id": "sandbox"},
                          "resources": hosts, "errors": errors}, headers=_headers(sb))


def _index(pop: Population, host: Any) -> int | None:
    if not isinstance(host, str) or len(host) != 32:
        return None
    try:
        v = int(host[24:], 16)
    except ValueError:
        return None
    i = v & 0x7FFFFFFF
    k = i + EXTRA if v >> 31 else i
    ok = i < len(pop.devices) and device_id(pop, k) == host and pop.device_live(i) and (
        k < EXTRA or k in pop.extras("crowdstrike"))
    return k if ok else None


_PLATFORM = {"windows": "Windows", "mac": "Mac", "linux": "Linux"}
_CHASSIS = {"laptop": "Notebook", "desktop": "Desktop", "server": "Rack Mount Chassis", "vm": "Other", "cloud": "Other"}


def host_record(pop: Population, k: int) -> dict[str, Any]:
    if k >= EXTRA:  # the old agent of a re-imaged machine: same serial and NICs, silent since the re-image
        i = k % EXTRA
        old = iso(pop.devices[i].enrolled + 86400)
        return {**host_record(pop, i), "device_id": device_id(pop, k), "last_seen": old, "modified_timestamp": old,
                "agent_version": "7.10.17706.0"}
    i = k
    d = pop.devices[i]
    ts = pop.device_ts(i)
    owner = pop.device_owner(i)
    record: dict[str, Any] = {
        "device_id": device_id(pop, i), "cid": "0a1b2c3d4e5f60718293a4b5c6d7e8f9", "hostname": d.hostname,
        "agent_version": "7.15.18513.0", "platform_name": _PLATFORM.get(d.platform, "Linux"),
        "os_version": pop.device_os(i), "product_type_desc": "Server" if d.kind in ("server", "vm", "cloud")
        else "Workstation",
        "serial_number": d.junk_serial or serial_as(d.serial, i, 5),
        "system_manufacturer": d.manufacturer, "system_product_name": d.model,
        "chassis_type_desc": _CHASSIS.get(d.kind, "Other"), "mac_address": dash(d.mac),
        "connection_mac_address": dash(d.dock_mac or (DOCK_MAC if d.dock else d.mac), upper=True),
        "local_ip": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", "external_ip": "198.51.100.24",
        # DeviceSwagger's connection_ip: the address the sensor reaches the cloud from (the local one here,
        # as in the recorded fixture).
        "connection_ip": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
        "first_seen": iso(d.enrolled), "last_seen": iso(ts), "modified_timestamp": iso(ts), "status": "normal",
        "last_login_user": f"CORP\\{pop.people[owner].email.split('@')[0]}" if owner >= 0 else None,
        "machine_domain": "corp.example.com" if d.platform == "windows" else None,
        "tags": ["FalconGroupingTags/sandbox"] if i % 5 == 0 else [], "reduced_functionality_mode": "no"}
    if d.instance_id:
        record.update(instance_id=d.instance_id, service_provider="AWS_EC2_V2",
                      service_provider_account_id=f"{100000000000 + i % 7:012d}", zone_group="eu-west-1a")
    return record
