"""Declarative mappings: YAML loader, the closed set of transforms, the compiled per-record engine.

Turns raw records into observations. Imports only model (and settings types).
"""
