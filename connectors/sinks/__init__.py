"""Built-in sinks (the outbound side): ServiceNow CMDB, Snipe-IT and a generic webhook.

They register through the `itam_sync.sinks` entry-point group in pyproject.toml, exactly as a third-party
sink package would.
"""
