"""Snipe-IT sink: golden assets as Snipe-IT hardware (found by serial, created or updated)."""
