"""The `gcp` connector."""
