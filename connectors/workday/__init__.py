"""Workday connector: a Report-as-a-Service custom report (JSON) -> people."""
