"""Microsoft Intune managed devices (Graph)."""
