"""itam-sync: pull IT asset records from many systems and merge them into one auditable source of truth."""

__version__ = "0.1.0"
