"""The `certificates` connector."""
