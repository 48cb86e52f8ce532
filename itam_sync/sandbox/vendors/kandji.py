"""Kandji API as connectors/kandji calls it: the devices list and each device's details.

Bearer API token (static); `GET /api/v1/devices` is a bare JSON array paged by `limit` (at most 300) and
`offset`, optionally `ordering=-last_check_in` (newest first: what incremental runs use);
`GET /api/v1/devices/{id}/details` holds the MACs, UDID and IMEI (404 for an unknown device): a Mac's
`network` section has `mac_address`, host name and IP addresses, an iPhone's or iPad's `wifi_mac` and
`bluetooth_mac` instead (the shapes of tests/connectors/kandji/fixtures/details.json). Flags come as
booleans or "True"/"False" strings, as they do from the real API; a rare device has no device_id.
"""

from __future__ import annotations

from typing import Any

from itam_sync.sandbox.population import Population, _hex
from itam_sync.sandbox.server import Request, Response, Router, Sandbox, json_response
from itam_sync.sandbox.vendors.common import colon, iso_ms, serial_as

P = "/kandji/api/v1"
_PLATFORM = {"mac": "Mac", "ios": "iPhone", "ipados": "iPad"}


def register(router: Router) -> None:
    router.add("GET", P + "/devices", "kandji", devices)
    router.add("GET", P + r"/devices/(?P<id>[^/]+)/details", "kandji", details)


def _authorized(req: Request) -> bool:
    auth = req.auth()
    return auth.startswith("Bearer ") and bool(auth[7:].strip())


def _denied() -> Response:
    return json_response({"detail": "Authentication credentials were not provided."}, 401)


def device_id(pop: Population, i: int) -> str:
    h = _hex(pop.seed, "kandji", i)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{i:012x}"


def _index(pop: Population, did: str) -> int | None:
    try:
        i = int(did[-12:], 16)
    except ValueError:
        return None
    return i if i < len(pop.devices) and device_id(pop, i) == did and pop.device_live(i) else None


def devices(req: Request, sb: Sandbox) -> Response:
    if not _authorized(req):
        return _denied()
    pop = sb.population
    newest_first = req.q("ordering") == "-last_check_in"

    def build() -> list[int]:
        items = pop.devices_of("kandji")
        return sorted(items, key=lambda i: (-pop.device_ts(i), i)) if newest_first else items
    items = sb.cached(("kandji", newest_first), build)
    limit = sb.page_size(req.qint("limit", 300, 1), 300)
    offset = req.qint("offset", 0)
    with pop.lock:
        body = [device(pop, i) for i in items[offset:offset + limit]]
    sb.records["kandji.devices"] += len(body)
    return json_response(body, page=True)


def device(pop: Population, i: int) -> dict[str, Any]:
    d = pop.devices[i]
    ts = pop.device_ts(i)
    owner = pop.device_owner(i)
    flag = (lambda b: b) if i % 2 else (lambda b: "True" if b else "False")
    user: Any = ""
    if owner >= 0:
        p = pop.people[owner]
        user = {"id": _hex(pop.seed, "kandji-user", owner), "email": pop.email_as(owner, "kandji"),
                "name": f"{p.first} {p.last}", "is_archived": False}
    return {
        "device_id": "" if d.bad else device_id(pop, i), "device_name": d.hostname,
        "serial_number": serial_as(d.serial, i, 9), "model": d.model, "platform": _PLATFORM.get(d.platform, "Mac"),
        "os_version": pop.device_os(i), "last_check_in": iso_ms(ts).replace(".000Z", f".{i % 1000:03d}Z"),
        "first_enrollment": iso_ms(d.enrolled), "last_enrollment": iso_ms(d.enrolled + 86400),
        "agent_installed": flag(d.platform == "mac"), "agent_version": "4.6.1" if d.platform == "mac" else "",
        "mdm_enabled": flag(True), "is_missing": flag(False), "is_removed": flag(False),
        "asset_tag": f"FIN-{i:05d}" if i % 3 == 0 else "", "blueprint_id": _hex(pop.seed, "blueprint", i % 4),
        "blueprint_name": ("Standard Macs", "Finance Macs", "Lab", "Mobile")[i % 4], "user": user,
        "tags": []}


def _network(d: Any, i: int) -> dict[str, Any]:
    """A Mac reports its primary interface; a mobile device its Wi-Fi and Bluetooth MACs (never mapped)."""
    if d.platform in ("ios", "ipados"):
        bluetooth = f"{d.mac[:10]}{(int(d.mac[10:], 16) + 1) % 256:02x}"
        return {"wifi_mac": colon(d.mac), "bluetooth_mac": colon(bluetooth), "voice_roaming_enabled": False}
    return {"local_hostname": f"{d.hostname}.local", "mac_address": colon(d.mac, upper=True),
            "ip_address": f"192.168.{i // 256 % 256}.{i % 256}"}


def details(req: Request, sb: Sandbox) -> Response:
    if not _authorized(req):
        return _denied()
    assert req.match is not None
    pop = sb.population
    with pop.lock:
        i = _index(pop, req.match.group("id"))
        if i is None:
            return json_response({"detail": "Not found."}, 404)
        d = pop.devices[i]
        body: dict[str, Any] = {
            "general": {"device_id": device_id(pop, i), "device_name": d.hostname, "model": d.model,
                        "platform": _PLATFORM.get(d.platform, "Mac"), "os_version": pop.device_os(i)},
            "mdm": {"mdm_enabled": "True", "supervised": "True"},
            "kandji_agent": {"agent_installed": "True" if d.platform == "mac" else "False"},
            "hardware_overview": {"model_name": d.model.split(" (")[0], "serial_number": d.serial,
                                  "udid": d.udid.lower()},
            "network": _network(d, i),
            "filevault": {"filevault_enabled": True}, "volumes": [], "installed_profiles": []}
        if d.imei:
            body["cellular"] = {"imei": d.imei}
    return json_response(body)
