"""Scenario files: profile + battery/PCS + site config + tariff in one JSON."""
import json
from dataclasses import fields
from pathlib import Path

from ..fw import config as fw_config

from ..plant.model import PlantConfig

HERE = Path(__file__).parent / "scenarios"
KEYS = {"name", "doc", "profile", "seed", "hours", "period_ms", "plant", "site", "tariff"}


def names():
    return sorted(p.stem for p in HERE.glob("*.json"))


def load(spec):
    path = Path(spec) if Path(spec).suffix == ".json" else HERE / f"{spec}.json"
    if not path.exists():
        raise ValueError(f"no scenario {spec!r} (built in: {', '.join(names())})")
    try:
        s = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    unknown = set(s) - KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(KEYS)})")
    plant_keys = {f.name for f in fields(PlantConfig)}
    bad = set(s.get("plant", {})) - plant_keys
    if bad:
        raise ValueError(f"{path}: plant: unknown keys {sorted(bad)} (known: {sorted(plant_keys)})")
    s.setdefault("seed", 1)
    s.setdefault("hours", 24)
    s.setdefault("period_ms", 50)
    s["site_cfg"] = fw_config.validate(dict(s.get("site", {}), period_ms=s["period_ms"]),
                                       f"{path}: site")
    s["plant_cfg"] = PlantConfig(**s.get("plant", {}))
    tariff = s.get("tariff", {})
    prices = tariff.get("energy_usd_per_kwh", [0.0] * 24)
    if len(prices) != 24:
        raise ValueError(f"{path}: tariff.energy_usd_per_kwh needs 24 hourly prices, got {len(prices)}")
    return s
