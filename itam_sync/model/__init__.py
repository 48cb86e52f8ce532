"""The canonical model: entities and fields, identifier normalisers, plain data types (observations).

The lowest layer: imports nothing else of itam_sync but the clock.
"""
