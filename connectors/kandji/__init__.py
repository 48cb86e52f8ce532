"""Kandji (Iru) MDM connector: enrolled Apple (and Android/Windows) devices with their details."""
