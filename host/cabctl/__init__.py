"""cabctl: host tools for the GPU-cluster battery cabinet (plant emulator, logger, demo)."""
