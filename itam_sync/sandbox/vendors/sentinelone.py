"""SentinelOne management API as connectors/sentinelone calls it: `GET /web/api/v2.1/agents`.

`Authorization: ApiToken <token>` (static), cursor paging (`pagination.nextCursor`, null at the end,
`limit` at most 1000), `updatedAt__gt` for incremental runs, 429 with Retry-After when throttled.
Mess: a reinstalled machine has two agents (the old one decommissioned), agents on whitebox PCs report a
placeholder serial, and MACs come colon-lower or dash-upper depending on the interface.
"""

from __future__ import annotations

from typing import Any

from itam_sync.sandbox.population import Population
from itam_sync.sandbox.server import Request, Response, Router, Sandbox, decode_token, encode_token, json_response
from itam_sync.sandbox.vendors.common import colon, dash, iso_us, parse_time, serial_as

P = "/s1/web/api/v2.1"


def register(router: Router) -> None:
    router.add("GET", P + "/agents", "sentinelone", agents)


def agents(req: Request, sb: Sandbox) -> Response:
    auth = req.auth()
    if not (auth.startswith("ApiToken ") and auth[9:].strip()):
        return json_response({"errors": [{"code": 4010010, "detail": None, "title": "Authentication Failed"}]}, 401)
    pop = sb.population
    state = decode_token(req.q("cursor"))
    if state is None:
        # Like the console: decommissioned agents only when `isDecommissioned` asks for them ("true,false").
        wanted = {v.strip().lower() for v in (req.q("isDecommissioned") or "false").split(",")}
        state = {"p": 0, "s": parse_time(req.q("updatedAt__gt")), "d": "true" in wanted}
    since, decommissioned = state.get("s"), bool(state.get("d"))

    def build() -> list[int]:
        out = []
        for i in pop.devices_of("sentinelone"):
            if pop.devices[i].s1_reinstalled and since is None and decommissioned:
                out.append(i * 2)  # the old, decommissioned agent: it never changes again
            if since is None or pop.device_ts(i) > since:
                out.append(i * 2 + 1)
        return out
    items = sb.cached(("sentinelone", since, decommissioned), build)
    limit = sb.page_size(req.qint("limit", 10, 1), 1000)
    pos = int(state["p"])
    with pop.lock:
        data = [agent(pop, k) for k in items[pos:pos + limit]]
    sb.records["sentinelone.agents"] += len(data)
    nxt = encode_token({**state, "p": pos + limit}) if pos + limit < len(items) else None
    return json_response({"data": data, "pagination": {"nextCursor": nxt, "totalItems": len(items)}}, page=True)


_OS = {"windows": "windows", "mac": "macos", "linux": "linux"}


def agent(pop: Population, k: int) -> dict[str, Any]:
    i, current = divmod(k, 2)
    d = pop.devices[i]
    ts = pop.device_ts(i) if current else d.enrolled + 86400
    owner = pop.device_owner(i)
    interfaces: list[dict[str, Any]] = [{"name": "en0" if d.platform == "mac" else "Ethernet",
                                         "physical": colon(d.mac), "inet": [f"10.40.{i // 256 % 256}.{i % 256}"],
                                         "inet6": []}]
    if d.mac2:
        interfaces.append({"name": "Wi-Fi", "physical": dash(d.mac2, upper=True), "inet": [], "inet6": []})
    return {
        "id": f"{18 if current else 16}{i:014d}{current}", "uuid": f"{i:040x}", "computerName": d.hostname,
        "serialNumber": d.junk_serial or serial_as(d.serial, i, 7), "modelName": d.model,
        "machineType": {"laptop": "laptop", "desktop": "desktop"}.get(d.kind, "server"),
        "osType": _OS.get(d.platform, "linux"), "osName": pop.device_os(i), "osRevision": pop.device_os(i),
        "agentVersion": "24.1.2.6" if current else "23.3.1.4", "isActive": bool(current),
        "isDecommissioned": not current, "isUninstalled": False, "infected": i % 50 == 0,
        "activeThreats": 1 if i % 50 == 0 else 0, "networkStatus": "connected",
        "lastActiveDate": iso_us(ts), "registeredAt": iso_us(d.enrolled), "createdAt": iso_us(d.enrolled),
        "updatedAt": iso_us(ts), "lastLoggedInUserName": pop.people[owner].email.split("@")[0] if owner >= 0 else "",
        "externalIp": "198.51.100.24", "lastIpToMgmt": interfaces[0]["inet"][0], "siteName": "Default site",
        "networkInterfaces": interfaces}
