"""Where the repository's shared data lives (maps, telemetry schema, boards)."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
BOARDS = REPO / "boards"
MAPS = FIRMWARE / "maps"
TELEMETRY_SCHEMA = FIRMWARE / "telemetry.json"
RUNS = REPO / "runs"
