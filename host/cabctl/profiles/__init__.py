"""Load profiles: site power over time for the plant emulator, `cabctl demo` and `cabctl sim`.

    from cabctl.profiles import load, Profile
    p = load("texas", seed=1, seconds=600)    # a built-in scenario, generated
    p = load("runs/node.profile")             # a profile file (see fileformat)
    p.at(12.34)                               # W, sample-and-hold, wraps past the end

Modules: `generator` (training-cluster generator), `config` (scenario JSON,
built-ins in `scenarios/`), `fileformat` (the one profile file format),
`importers` (GPU power logs -> per-GPU series), `resample` (gaps, fixed step,
nodes, scaling to a cluster, facility overhead), `stats`, `plot`, `cli`.
"""
from pathlib import Path

from . import config, fileformat
from .core import MAX_GPU_W, MAX_SITE_W, Profile, ProfileError

__all__ = ["load", "Profile", "ProfileError", "scenario_names", "MAX_GPU_W", "MAX_SITE_W"]


def scenario_names():
    return config.scenario_names()


def load(spec: str, seed: int = 1, seconds: float | None = None) -> Profile:
    """A built-in scenario name, a generator config (`.json`) or a profile file.

    Scenarios and configs are generated for `seconds` (default: their own
    duration) deterministically from `seed`; a profile file is read as is
    (`seed` and `seconds` do not apply: `Profile.at` wraps past its end).
    """
    from .generator import generate
    spec = str(spec)
    if spec in config.scenario_names():
        return generate(config.scenario(spec), seed=seed, seconds=seconds)
    path = Path(spec)
    if not path.exists():
        raise ProfileError(spec, "neither a built-in scenario "
                           f"({', '.join(config.scenario_names())}) nor an existing file")
    if path.suffix == ".json":
        return generate(config.load_file(path), seed=seed, seconds=seconds)
    return fileformat.read(path)
