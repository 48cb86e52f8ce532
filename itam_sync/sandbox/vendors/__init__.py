"""Fake vendor APIs, one module per vendor family, each registering its routes on the sandbox's router.

Every module speaks its API as the connector in connectors/<name>/ calls it (paths, auth, paging, filters,
rate-limit headers) and renders records from the shared `Population` in that vendor's shapes and spellings.
`itam_sync.sandbox.routes` puts them together.
"""
