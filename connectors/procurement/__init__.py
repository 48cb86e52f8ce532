"""Procurement connector: CSV and XLSX purchase records from a watched folder -> assets."""
