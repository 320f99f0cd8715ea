"""Scenario files: profile + battery/PCS + site config + tariff in one JSON.

Optional: an outage window, a PV array and a genset (SECTIONS), `base`:
another built-in scenario whose keys this one extends (plant, site and
tariff merged key by key, the rest replaced), and `grid_ramp_limit_w_per_s`:
the grid connection's contracted ramp limit, which the safety monitor and
the reports judge (s["judge_cfg"]), while the site's ramp_up/ramp_down_w_per_s
are what the engine aims at, inside it with a margin as for exports
(default: the site's own limits)."""
import json
from dataclasses import fields
from pathlib import Path

from ..fw import config as fw_config

from ..plant.faults import Fault
from ..plant.model import PlantConfig

HERE = Path(__file__).parent / "scenarios"
KEYS = {"name", "doc", "profile", "seed", "hours", "period_ms", "plant", "site", "tariff",
        "outage", "pv", "genset", "base", "grid_ramp_limit_w_per_s"}
MERGED = ("plant", "site", "tariff")
REQUIRED = None
# Site sections: key -> (default or REQUIRED, lowest allowed, where it goes:
# ("plant" | "site", its key there, scale)). Min run and cool-down are the
# firmware's (it keeps the genset running); the rest is the plant's physics.
SECTIONS = {
    "outage": {"start_s": (REQUIRED, 0, None), "duration_s": (REQUIRED, 0.001, None)},
    "pv": {"peak_w": (REQUIRED, 0, ("plant", "pv_peak_w", 1)),
           "clouds_seed": (3, 0, ("plant", "pv_cloud_seed", 1))},
    "genset": {"max_w": (REQUIRED, 0, ("plant", "genset_max_w", 1)),
               "start_delay_s": (10.0, 0, ("plant", "genset_start_delay_s", 1)),
               "ramp_w_per_s": (1e6, 1, ("plant", "genset_ramp_w_per_s", 1)),
               "min_run_s": (600, 0, ("site", "genset_min_run_ms", 1000)),
               "cooldown_s": (120, 0, ("site", "genset_cooldown_ms", 1000))},
}


def names():
    return sorted(p.stem for p in HERE.glob("*.json"))


def _read(path, depth=0):
    """The file's JSON, over its base's (plant, site, tariff merged key by key)."""
    try:
        s = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(s, dict):
        raise ValueError(f"{path}: expected a JSON object")
    if "base" in s:
        base = s.pop("base")
        if not isinstance(base, str) or base not in names() or depth > 4:
            raise ValueError(f"{path}: base {base!r}: expected a built-in scenario "
                             f"({', '.join(names())}), at most 4 deep")
        b = _read(HERE / f"{base}.json", depth + 1)
        for k in MERGED:
            if not isinstance(s.get(k, {}), dict):
                raise ValueError(f"{path}: {k}: expected an object")
            s[k] = dict(b.get(k, {}), **s.get(k, {}))
        for k in set(b) - set(MERGED) - {"name", "doc"}:
            s.setdefault(k, b[k])
    return s


def load(spec):
    path = Path(spec) if Path(spec).suffix == ".json" else HERE / f"{spec}.json"
    if not path.exists():
        raise ValueError(f"no scenario {spec!r} (built in: {', '.join(names())})")
    s = _read(path)
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
    site, plant = dict(s.get("site", {})), dict(s.get("plant", {}))
    _site_sections(s, path, site, plant)
    s["site_cfg"] = fw_config.validate(dict(site, period_ms=s["period_ms"]), f"{path}: site")
    s["judge_cfg"] = _judge_cfg(s, path)
    s["plant_cfg"] = PlantConfig(**plant)
    tariff = s.get("tariff", {})
    prices = tariff.get("energy_usd_per_kwh", [0.0] * 24)
    if len(prices) != 24:
        raise ValueError(f"{path}: tariff.energy_usd_per_kwh needs 24 hourly prices, got {len(prices)}")
    return s


def _judge_cfg(s, path):
    """The site config the monitor and reports judge: the engine's, with the
    contracted grid ramp limit (which the engine's may not exceed)."""
    site = s["site_cfg"]
    lim = s.get("grid_ramp_limit_w_per_s")
    if lim is None:
        return site
    aim = max(site["ramp_up_w_per_s"], site["ramp_down_w_per_s"])
    if isinstance(lim, bool) or not isinstance(lim, int) or lim <= 0 or aim == 0 or aim > lim:
        raise ValueError(f"{path}: grid_ramp_limit_w_per_s = {lim!r}: expected an integer (W/s) "
                         f">= the site's ramp_up/ramp_down_w_per_s ({aim}, which must be set)")
    return dict(site, ramp_up_w_per_s=lim, ramp_down_w_per_s=lim)


def _site_sections(s, path, site, plant):
    """Check the outage/pv/genset sections; put their values into the site and
    plant configs; s["outage"] becomes a plant.faults.Fault (grid-outage)."""
    for name, spec in SECTIONS.items():
        if name not in s:
            continue
        sec = s[name]
        if not isinstance(sec, dict):
            raise ValueError(f"{path}: {name}: expected an object with keys {sorted(spec)}")
        unknown = set(sec) - set(spec) - {"doc"}
        if unknown:
            raise ValueError(f"{path}: {name}: unknown keys {sorted(unknown)} (known: {sorted(spec)})")
        vals = {}
        for key, (default, lo, dest) in spec.items():
            v = sec.get(key, default)
            if v is REQUIRED:
                raise ValueError(f"{path}: {name}.{key} is missing")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo:
                raise ValueError(f"{path}: {name}.{key} = {v!r}: expected a number >= {lo}")
            vals[key] = v
            if dest:
                where, k, scale = dest
                cfg = plant if where == "plant" else site
                if k in cfg:
                    raise ValueError(f"{path}: {name}.{key} and {where}.{k} both given: keep one")
                cfg[k] = int(round(v * scale)) if where == "site" else v
        if name == "outage":
            s["outage"] = Fault("grid-outage", float(vals["start_s"]), float(vals["duration_s"]))
    if "pv" in s:
        site.setdefault("pv_map", "pv_sunspec")   # the firmware curtails only with a PV inverter
        plant.setdefault("clock_start_h", 0.0)    # the sim's t = 0 is midnight (its time of day)
