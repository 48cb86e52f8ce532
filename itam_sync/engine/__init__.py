"""The sync pipeline: connector registry, runner (pull, map, stage), identity resolution, merge, operator operations.

The one place that moves data. May import model, settings, sdk, mapping and store.
"""
