"""BambooHR as connectors/bamboohr calls it: one custom report of every employee, Active and Inactive.

`POST /api/gateway.php/{company}/v1/reports/custom?format=JSON` with HTTP basic auth (the API key as the
user name, any password). The body names the fields; `filters.lastChanged.value` limits the report to
employees changed since then. No paging: one response. Throttling is a 503 with Retry-After.
"""

from __future__ import annotations

import base64
from typing import Any

from itam_sync.sandbox.population import Population
from itam_sync.sandbox.server import Request, Response, Router, Sandbox, json_response
from itam_sync.sandbox.vendors.common import iso_offset, parse_time

P = "/bamboohr/api/gateway.php/(?P<company>[^/]+)"
TYPES = {"workEmail": "email", "supervisorEmail": "email", "hireDate": "date", "terminationDate": "date",
         "lastChanged": "timestamp", "status": "status", "supervisorEId": "int"}


def register(router: Router) -> None:
    router.add("POST", P + "/v1/reports/custom", "bamboohr", report)
    router.throttles["bamboohr"] = throttle


def throttle(req: Request, wait: float) -> Response:
    return Response(503, b"<html><body>Service Unavailable</body></html>",
                    {"Content-Type": "text/html", "Retry-After": str(int(wait)) if float(wait).is_integer()
                     else f"{wait:g}"})


def report(req: Request, sb: Sandbox) -> Response:
    auth = req.auth()
    try:
        key = base64.b64decode(auth[6:]).decode().partition(":")[0] if auth.startswith("Basic ") else ""
    except ValueError:
        key = ""
    if not key:
        return Response(401, b"", {"WWW-Authenticate": 'Basic realm="BambooHR"'})
    body = req.json() if isinstance(req.json(), dict) else {}
    fields = [f for f in body.get("fields") or [] if isinstance(f, str)] or ["id", "lastChanged"]
    since = parse_time(((body.get("filters") or {}).get("lastChanged") or {}).get("value"))
    pop = sb.population

    def build() -> list[int]:
        return [i for i in pop.people_of("bamboohr") if since is None or pop.person_ts(i) >= since]
    items = sb.cached(("bamboohr", since), build)
    with pop.lock:
        employees = [{k: v for k, v in employee(pop, i).items() if k in fields} for i in items]
    sb.records["bamboohr.employees"] += len(employees)
    return json_response({"title": body.get("title") or "report",
                          "fields": [{"id": f, "type": TYPES.get(f, "text"), "name": f} for f in fields],
                          "employees": employees}, page=True)


def employee(pop: Population, i: int) -> dict[str, Any]:
    p = pop.people[i]
    manager = pop.people[p.manager] if p.manager >= 0 else None
    status = pop.person_status(i)
    return {
        "id": p.bamboo_id, "employeeNumber": p.employee_id, "workEmail": pop.email_as(i, "bamboohr"),
        "firstName": p.first, "lastName": p.last, "displayName": f"{p.first} {p.last}",
        "department": pop.person_department(i), "jobTitle": pop.person_title(i),
        "supervisorEmail": manager.email if manager else None, "supervisorEId": manager.bamboo_id if manager else None,
        "location": p.location, "status": "Inactive" if status == "terminated" else "Active",
        "hireDate": p.hire_date, "terminationDate": pop.term_date(i) or "0000-00-00",
        "lastChanged": iso_offset(pop.person_ts(i))}
