"""Every vendor's routes on one router, and the path prefix each vendor family is served under."""

from __future__ import annotations

from itam_sync.sandbox.server import Router
from itam_sync.sandbox.vendors import bamboohr, crowdstrike, jamf, kandji, microsoft, okta, sentinelone

# Path prefix of each vendor family on the sandbox (the connectors' base URLs point here).
PREFIXES = {"okta": "/okta", "graph": "/graph", "login": "/login", "defender": "/defender",
            "crowdstrike": "/crowdstrike", "jamf": "/jamf", "sentinelone": "/s1", "kandji": "/kandji",
            "bamboohr": "/bamboohr/api/gateway.php/sandbox"}


def build_router() -> Router:
    """A router with every vendor's routes."""
    router = Router()
    for module in (okta, microsoft, crowdstrike, jamf, sentinelone, kandji, bamboohr):
        module.register(router)
    return router
