"""Precedence rules, per-field golden decisions and applying them to the store with merge-log rows.

Part of the engine: may import store, mapping, sdk, settings and model.
"""
