"""Apple Business Manager connector: organisation devices -> assets."""
