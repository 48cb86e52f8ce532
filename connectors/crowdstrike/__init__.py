"""CrowdStrike Falcon connector: hosts with a Falcon sensor."""
