"""The `azure` connector."""
