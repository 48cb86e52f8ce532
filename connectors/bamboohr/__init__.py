"""BambooHR connector: employees (custom report) -> people."""
