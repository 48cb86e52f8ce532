"""The `domains` connector."""
