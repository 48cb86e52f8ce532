"""Audit: merge-log chain verify/export, time travel (`--as-of`), explain.

Reads what the engine wrote. May import engine and everything below it.
"""
