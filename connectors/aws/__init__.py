"""The `aws` connector."""
