"""Insight: reports and KPIs over the golden records.

Read-only. May import engine and everything below it.
"""
