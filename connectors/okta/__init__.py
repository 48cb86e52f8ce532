"""Okta connector: users, devices and app assignments from the Okta Management API."""
