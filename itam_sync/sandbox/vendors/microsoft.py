"""Microsoft: the identity platform (msal), Graph (Entra users/devices/SKUs, Intune managed devices), Defender.

- Login (`/login/{tenant}`): OIDC discovery and the client-credentials token endpoint, as msal calls them.
  msal only talks to https authorities: point `authority_host` at the sandbox's TLS listener.
- Graph (`/graph/{v1.0|beta}`): `@odata.nextLink` paging with opaque `$skiptoken`s; users through a delta
  query whose last page carries `@odata.deltaLink` (`$deltatoken` = the population version the round
  started at, so the next round returns what changed since); with `manager` in `$select`, each user with a
  manager carries `manager@delta` (ids only, as Graph sends it); `GET /users/{id}` and
  `GET /users/{id}/manager` (404 when none) for look-ups; 429 with `Retry-After`. Managed devices come as
  a list response does: `ethernetMacAddress` null and `udid` empty (Graph fills them only per device).
- Defender (`/defender/api/machines`): pages of up to 10,000 with `$skip` next links; an incremental filter
  that matches nothing answers 404, as the real API does.
One token issuer serves them all (tokens are not scoped per resource here).
"""

from __future__ import annotations

import re
from typing import Any

from itam_sync.sandbox.population import EXTRA, SKUS, STALE, Population, _hex, _uuid, extra_id, iso
from itam_sync.sandbox.server import Request, Response, Router, Sandbox, decode_token, encode_token, json_response, url
from itam_sync.sandbox.vendors.common import parse_time

LOGIN, GRAPH, DEFENDER = "/login", "/graph", "/defender"
_FILTER = re.compile(r"(\w+)\s+(ge|gt)\s+(\S+)")


def register(router: Router) -> None:
    router.add("GET", LOGIN + r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration", "login", discovery,
               faults=False)
    router.add("POST", LOGIN + r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", "login", token, faults=False)
    v = r"/(?P<ver>v1\.0|beta)"
    router.add("GET", GRAPH + v + "/users/delta", "graph", users_delta)
    router.add("GET", GRAPH + v + "/users", "graph", users_list)
    router.add("GET", GRAPH + v + "/users/(?P<uid>[^/]+)/manager", "graph", user_manager)
    router.add("GET", GRAPH + v + "/users/(?P<uid>[^/]+)", "graph", user_get)
    router.add("GET", GRAPH + v + "/devices", "graph", devices)
    router.add("GET", GRAPH + v + "/subscribedSkus", "graph", subscribed_skus)
    router.add("GET", GRAPH + v + "/deviceManagement/managedDevices", "graph", managed_devices)
    router.add("GET", DEFENDER + "/api/machines", "defender", machines)
    router.throttles["graph"] = throttle
    router.throttles["defender"] = throttle


def throttle(req: Request, wait: float) -> Response:
    return json_response({"error": {"code": "TooManyRequests", "message": "Too many requests.",
                                    "innerError": {"request-id": "sandbox"}}}, 429,
                         {"Retry-After": str(int(wait)) if float(wait).is_integer() else f"{wait:g}"})


def _denied() -> Response:
    return json_response({"error": {"code": "InvalidAuthenticationToken",
                                    "message": "Access token has expired or is not yet valid."}}, 401)


# -- login ------------------------------------------------------------------------------------------------
def discovery(req: Request, sb: Sandbox) -> Response:
    assert req.match is not None
    tenant = req.match.group("tenant")
    root = f"{req.base}{LOGIN}/{tenant}"
    return json_response({"token_endpoint": f"{root}/oauth2/v2.0/token",
                          "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                          "issuer": f"{root}/v2.0", "jwks_uri": f"{root}/discovery/v2.0/keys",
                          "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                          "response_types_supported": ["code", "id_token", "token"]})


def token(req: Request, sb: Sandbox) -> Response:
    form = req.form()
    if not form.get("client_id") or not (form.get("client_secret") or req.auth().startswith("Basic ")):
        return json_response({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client "
                              "secret provided.", "error_codes": [7000215]}, 401)
    return json_response({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                          "access_token": sb.issue_token("microsoft")})


# -- graph ------------------------------------------------------------------------------------------------
def _graph_page(req: Request, sb: Sandbox, kind: str, items: list[int], render: Any, size: int,
                state: dict[str, Any], context: str, last: dict[str, Any] | None = None) -> Response:
    pos = int(state.get("p", 0))
    chunk = items[pos:pos + size]
    with sb.population.lock:
        value = [render(sb.population, i) for i in chunk]
    sb.records[kind] += len(value)
    body: dict[str, Any] = {"@odata.context": context, "value": value}
    if pos + size < len(items):
        body["@odata.nextLink"] = url(req.base, req.path, {"$skiptoken": encode_token({**state, "p": pos + size})})
    elif last:
        body.update(last)
    return json_response(body, page=True)


def _since_filter(text: str | None, field: str) -> float | None:
    for m in _FILTER.finditer(text or ""):
        if m.group(1) == field:
            return parse_time(m.group(3))
    return None


def users_delta(req: Request, sb: Sandbox) -> Response:
    if not sb.bearer_ok(req, "microsoft"):
        return _denied()
    pop = sb.population
    state = decode_token(req.q("$skiptoken"))
    if state is None:
        delta = req.q("$deltatoken")
        since = int(delta[1:]) if delta and delta[:1] == "v" and delta[1:].isdigit() else None
        state = {"s": since, "v": pop.version, "x": "manager" in (req.q("$select") or "").split(",")}
    since = state.get("s")

    def build() -> list[int]:
        people = pop.people_of("entra")
        if since is None:
            return people
        return [i for i in people if pop.person_mod[i] > since]
    items = sb.cached(("graph.users", since), build)
    size = sb.page_size(500, 500)
    expand = bool(state.get("x"))
    last = {"@odata.deltaLink": url(req.base, req.path, {"$deltatoken": f"v{state['v']}"})}
    return _graph_page(req, sb, "entra.users", items, lambda p, i: user(p, i, expand), size, state,
                       "https://graph.microsoft.com/v1.0/$metadata#users", last)


def users_list(req: Request, sb: Sandbox) -> Response:
    if not sb.bearer_ok(req, "microsoft"):
        return _denied()
    pop = sb.population
    state = decode_token(req.q("$skiptoken")) or {"t": req.qint("$top", 100, 1, 999)}
    items = sb.cached(("graph.users.all",), lambda: pop.people_of("entra"))
    return _graph_page(req, sb, "entra.users", items, lambda p, i: user(p, i, False),
                       sb.page_size(int(state["t"]), 999), state, "https://graph.microsoft.com/v1.0/$metadata#users")


def _entra_user_id(pop: Population, i: int) -> str:
    return _uuid(_hex(pop.seed, "entra-user", i))


def _entra_person(sb: Sandbox, uid: str) -> int | None:
    """The person index behind an Entra user id (None: no such user in Entra)."""
    pop = sb.population
    ids = sb.cached(("graph.user-ids",), lambda: {_entra_user_id(pop, i): i for i in pop.people_of("entra")})
    return ids.get(uid)


def _entra_manager(pop: Population, i: int) -> int | None:
    m = pop.people[i].manager
    return m if m >= 0 and pop.people[m].in_entra else None


def user_get(req: Request, sb: Sandbox) -> Response:
    if not sb.bearer_ok(req, "microsoft"):
        return _denied()
    assert req.match is not None
    with sb.population.lock:
        i = _entra_person(sb, req.match.group("uid"))
        body = None if i is None else user(sb.population, i, False)
    if body is None:
        return _not_found()
    sb.records["entra.lookups"] += 1
    return json_response({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity", **body})


def user_manager(req: Request, sb: Sandbox) -> Response:
    if not sb.bearer_ok(req, "microsoft"):
        return _denied()
    assert req.match is not None
    with sb.population.lock:
        i = _entra_person(sb, req.match.group("uid"))
        m = None if i is None else _entra_manager(sb.population, i)
        body = None if m is None else user(sb.population, m, False)
    if body is None:
        return _not_found()
    sb.records["entra.lookups"] += 1
    return json_response({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects/$entity",
                          "@odata.type": "#microsoft.graph.user", **body})


def _not_found() -> Response:
    return json_response({"error": {"code": "Request_ResourceNotFound",
                                    "message": "Resource does not exist or one of its queried reference-property "
                                               "objects are not present."}}, 404)


def user(pop: Population, i: int, expand_manager: bool) -> dict[str, Any]:
    p = pop.people[i]
    status = pop.person_status(i)
    out: dict[str, Any] = {
        "id": _entra_user_id(pop, i), "userPrincipalName": p.email, "mail": pop.email_as(i, "entra"),
        "otherMails": [a for a in (p.old_email, p.alias) if a], "displayName": f"{p.first} {p.last}",
        "givenName": p.first, "surname": p.last,
        "accountEnabled": status == "active", "employeeId": None if p.contractor else p.employee_id,
        "employeeType": "Contractor" if p.contractor else "Employee", "department": pop.person_department(i),
        "jobTitle": pop.person_title(i), "companyName": "Example Corp", "officeLocation": p.location,
        "employeeHireDate": f"{p.hire_date}T00:00:00Z",
        "employeeLeaveDateTime": f"{pop.term_date(i)}T00:00:00Z" if status == "terminated" else None,
        "createdDateTime": f"{p.hire_date}T08:00:00Z"}
    manager = _entra_manager(pop, i) if expand_manager else None
    if manager is not None:  # ids only: the connector resolves them
        out["manager@delta"] = [{"@odata.type": "#microsoft.graph.user", "id": _entra_user_id(pop, manager)}]
    return out


_ENTRA_OS = {"windows": "Windows", "ios": "iOS", "ipados": "IPad", "android": "AndroidForWork", "mac": "MacMDM"}


def devices(req: Request, sb: Sandbox) -> Response:
    if not sb.bearer_ok(req, "microsoft"):
        return _denied()
    pop = sb.population
    state = decode_token(req.q("$skiptoken")) or {"t": req.qint("$top", 100, 1, 999)}
    items = sb.cached(("graph.devices",), lambda: pop.devices_of("entra") + pop.extras("entra"))
    return _graph_page(req, sb, "entra.devices", items, device, sb.page_size(int(state["t"]), 999), state,
                       "https://graph.microsoft.com/v1.0/$metadata#devices")


def device(pop: Population, k: int) -> dict[str, Any]:
    if k >= EXTRA:  # a re-imaged laptop's old registration: its old device id, not signed in since
        variant, i = divmod(k, EXTRA)
        d = pop.devices[i]
        return {**device(pop, i), "id": extra_id(pop.seed, "entra-object", variant, i),
                "deviceId": d.old_entra.upper(), "approximateLastSignInDateTime": _z(d.enrolled + 86400)}
    i = k
    d = pop.devices[i]
    ts = pop.device_ts(i)
    owner = d.prev_owner  # the registered owner is whoever enrolled it, not who has it now
    owners = []
    if owner >= 0:
        p = pop.people[owner]
        owners.append({"@odata.type": "#microsoft.graph.user", "id": _entra_user_id(pop, owner),
                       "userPrincipalName": p.email, "mail": pop.email_as(owner, "entra")})
    name = d.hostname if d.platform == "windows" else f"{pop.people[owner].first}'s {d.model.split(' (')[0]}" \
        if owner >= 0 else d.model
    return {
        "id": _uuid(_hex(pop.seed, "entra-object", i)), "deviceId": d.entra_device_id.upper(), "displayName": name,
        "operatingSystem": _ENTRA_OS[d.platform], "operatingSystemVersion": pop.device_os(i),
        "accountEnabled": True, "approximateLastSignInDateTime": _z(ts), "isCompliant": i % 9 != 0,
        "isManaged": "intune" in d.vendors, "trustType": "AzureAd", "manufacturer": d.manufacturer,
        "model": d.model, "registrationDateTime": _z(d.enrolled), "profileType": "RegisteredDevice",
        "registeredOwners": owners}


def subscribed_skus(req: Request, sb: Sandbox) -> Response:
    if not sb.bearer_ok(req, "microsoft"):
        return _denied()
    pop = sb.population

    def build() -> list[int]:
        return [sum(1 for p in pop.people if p.skus >> j & 1 and pop.person_status(p.idx) != "terminated")
                for j in range(len(SKUS))]
    consumed = sb.cached(("graph.skus",), build)
    value = [{"capabilityStatus": "Enabled", "consumedUnits": consumed[j],
              "id": f"9188040d-6c67-4c5b-b112-36a304b66dad_{sku_id}", "skuId": sku_id.upper() if j % 2 else sku_id,
              "skuPartNumber": part, "appliesTo": "User",
              "prepaidUnits": {"enabled": consumed[j] + consumed[j] // 10 + 5, "suspended": 0, "warning": 0,
                               "lockedOut": 0}, "servicePlans": []}
             for j, (part, sku_id, _) in enumerate(SKUS)]
    sb.records["entra.subscribed_skus"] += len(value)
    return json_response({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscribedSkus",
                          "value": value})


def managed_devices(req: Request, sb: Sandbox) -> Response:
    if not sb.bearer_ok(req, "microsoft"):
        return _denied()
    pop = sb.population
    state = decode_token(req.q("$skiptoken")) or {"s": _since_filter(req.q("$filter"), "lastSyncDateTime")}
    since = state.get("s")

    def build() -> list[int]:
        return [i for i in pop.devices_of("intune") + pop.extras("intune")
                if since is None or pop.device_ts(i % EXTRA) >= since and i < EXTRA]
    items = sb.cached(("intune", since), build)
    return _graph_page(req, sb, "intune.managed_devices", items, managed_device, sb.page_size(1000, 1000), state,
                       "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/managedDevices")


_INTUNE_OS = {"windows": "Windows", "ios": "iOS", "ipados": "iPadOS", "android": "Android", "mac": "macOS"}


def managed_device(pop: Population, k: int) -> dict[str, Any]:
    if k >= EXTRA:  # the stale enrolment of a re-imaged laptop (old Entra device id), or a duplicate one
        variant, i = divmod(k, EXTRA)
        d = pop.devices[i]
        out = {**managed_device(pop, i), "id": extra_id(pop.seed, "intune", variant, i),
               "lastSyncDateTime": _z(d.enrolled + 3600 * (1 + variant))}
        if variant == STALE:
            out.update(azureADDeviceId=d.old_entra.upper(), enrolledDateTime=_z(d.enrolled - 86400 * 200))
        return out
    i = k
    d = pop.devices[i]
    ts = pop.device_ts(i)
    owner = pop.device_owner(i)
    p = pop.people[owner] if owner >= 0 else None
    wifi = d.mac2 if d.kind == "laptop" else d.mac if d.kind in ("mobile", "tablet") else ""
    # A few devices are not registered in Entra: Intune reports the all-zero id (junk, never a match key).
    entra = d.entra_device_id.upper() if d.entra_device_id and i % 33 else "00000000-0000-0000-0000-000000000000"
    return {
        "id": _uuid(_hex(pop.seed, "intune", i)), "userId": _entra_user_id(pop, owner) if p else None,
        "deviceName": d.hostname if d.platform == "windows" else f"{p.first}'s {d.model.split(' (')[0]}" if p
        else d.hostname,
        "managedDeviceOwnerType": "company", "enrolledDateTime": _z(d.enrolled), "lastSyncDateTime": _z(ts),
        "operatingSystem": _INTUNE_OS[d.platform], "complianceState": "noncompliant" if i % 9 == 0 else "compliant",
        "jailBroken": "Unknown", "managementAgent": "mdm", "osVersion": pop.device_os(i),
        "azureADRegistered": bool(d.entra_device_id), "deviceEnrollmentType": "windowsAzureADJoin",
        "emailAddress": p.email if p else "", "azureADDeviceId": entra,
        "userPrincipalName": pop.email_as(owner, "intune") if p else None, "model": d.model,
        "manufacturer": d.manufacturer, "imei": _spaced_imei(d.imei) if i % 2 else d.imei,
        "serialNumber": d.junk_serial if d.mdm_junk else d.serial if d.kind != "desktop" or not d.junk_serial
        else d.serial.lower(),
        "phoneNumber": "", "userDisplayName": f"{p.first} {p.last}" if p else "",
        # A list response leaves these at their defaults; Graph fills them only on a single-device GET.
        "wiFiMacAddress": wifi.upper(), "ethernetMacAddress": None, "meid": "",
        "udid": "", "totalStorageSpaceInBytes": 511101108224, "physicalMemoryInBytes": 0}


def _spaced_imei(imei: str) -> str:
    return f"{imei[:2]} {imei[2:8]} {imei[8:14]} {imei[14:]}" if len(imei) == 15 else imei


def _z(ts: float) -> str:
    return iso(ts)


# -- defender ---------------------------------------------------------------------------------------------
def machines(req: Request, sb: Sandbox) -> Response:
    if not sb.bearer_ok(req, "microsoft"):
        return _denied()
    pop = sb.population
    state = decode_token(req.q("$skiptoken"))
    if state is None:
        since = _since_filter(req.q("$filter"), "lastSeen")
        state = {"s": since, "p": req.qint("$skip", 0)}
    since = state.get("s")

    def build() -> list[int]:
        return [i for i in pop.devices_of("defender") + pop.extras("defender")
                if since is None or i < EXTRA and pop.device_ts(i) > since]
    items = sb.cached(("defender", since), build)
    if since is not None and not items:
        return json_response({"error": {"code": "ResourceNotFound", "message": "No machines found"}}, 404)
    return _graph_page(req, sb, "defender.machines", items, machine, sb.page_size(10_000, 10_000), state,
                       "https://api.securitycenter.microsoft.com/api/$metadata#Machines")


_DEFENDER_OS = {"windows": "Windows11", "linux": "Linux", "mac": "macOS"}


def machine(pop: Population, k: int) -> dict[str, Any]:
    if k >= EXTRA:  # a re-imaged laptop's old machine: its old Entra device id, the same adapters, silent
        variant, i = divmod(k, EXTRA)
        d = pop.devices[i]
        return {**machine(pop, i), "id": extra_id(pop.seed, "defender", variant, i), "aadDeviceId": d.old_entra,
                "lastSeen": _z(d.enrolled + 86400), "healthStatus": "Inactive"}
    i = k
    d = pop.devices[i]
    ts = pop.device_ts(i)
    server = d.kind in ("server", "vm")
    platform = "WindowsServer2022" if server and d.platform == "windows" else _DEFENDER_OS.get(d.platform, "Linux")
    ips = [{"ipAddress": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", "macAddress": d.mac.upper(),
            "type": "Ethernet", "operationalStatus": "Up"}]
    if d.mac2:
        ips.append({"ipAddress": f"fe80::{i:x}", "macAddress": d.mac2.upper(), "type": "Wireless80211",
                    "operationalStatus": "Up"})
    if d.dock_mac:  # the USB-C dock's Ethernet adapter, shared with every laptop that uses the dock
        ips.append({"ipAddress": f"10.99.{i // 256 % 256}.{i % 256}", "macAddress": d.dock_mac.upper(),
                    "type": "Ethernet", "operationalStatus": "Up"})
    if d.kind == "laptop" and i % 4 == 0:  # the Hyper-V switch: a virtual MAC, never a match key
        ips.append({"ipAddress": "172.22.48.1", "macAddress": f"00155D{i & 0xFFFFFF:06X}", "type": "Ethernet",
                    "operationalStatus": "Up"})
    return {
        "id": _hex(pop.seed, "defender", i, n=40), "computerDnsName": f"{d.hostname.lower()}.corp.example.com",
        "firstSeen": _z(d.enrolled), "lastSeen": _z(ts), "osPlatform": platform, "osVersion": None,
        "osProcessor": "x64", "version": "23H2", "lastIpAddress": ips[0]["ipAddress"], "lastExternalIpAddress": "",
        "agentVersion": "10.8760.22631.3737", "osBuild": 22631,
        "healthStatus": "Inactive" if i % 41 == 0 else "Active", "deviceValue": "Normal", "rbacGroupId": 0,
        "riskScore": ("None", "Low", "Medium", "High")[i % 4], "exposureLevel": "Low",
        "isAadJoined": bool(d.entra_device_id), "aadDeviceId": d.entra_device_id or None,
        "machineTags": ["sandbox"] if i % 3 == 0 else [], "onboardingStatus": "Onboarded",
        "osArchitecture": "64-bit", "managedBy": "Intune" if "intune" in d.vendors else "ConfigMgr",
        "ipAddresses": ips, "vmMetadata": None}
