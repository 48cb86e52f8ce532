"""Microsoft Defender for Endpoint machines."""
