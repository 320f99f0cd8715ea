"""Generator configuration: the JSON of a scenario, its defaults and its checks.

A scenario file (`scenarios/NAME.json`, or any file given to `--config`) holds
the site fields below and a list of `jobs`; every field has a default, unknown
keys and out-of-range values are refused with the file and key named.
Levels are fractions of a GPU's board power at full compute (`gpu_w`).
"""
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from .core import ProfileError

SCENARIO_DIR = Path(__file__).with_name("scenarios")


@dataclass
class JobConfig:
    name: str = "job"
    gpus: int = 1024
    period_s: float = 0.8          # training iteration
    compute_frac: float = 0.55     # share of the iteration spent in compute
    comm_level: float = 0.4        # all-reduce level
    jitter: float = 0.03           # iteration-to-iteration period spread (sigma), job-wide
    amp_jitter: float = 0.02       # iteration-to-iteration compute level spread (sigma)
    skew_ms: float = 15.0          # spread of node edges within the job (smooths each edge)
    ckpt_every_s: float = 0.0      # 0 = no checkpoints
    ckpt_len_s: float = 0.0
    ckpt_level: float = 0.27       # ~1.2 kW of a 4.4 kW 8-GPU node
    ckpt_first_s: float | None = None   # first checkpoint after training starts (None: random)
    start_s: float = 0.0           # job start; idle before
    stop_s: float | None = None    # job end; idle after
    load_s: float = 0.0            # loading data and weights after (re)start
    load_level: float = 0.2
    crash_at_s: list = field(default_factory=list)
    crash_per_h: float = 0.0       # random crashes during training (Poisson)
    restart_after_s: float = 60.0  # idle after a crash before loading again
    stall_per_h: float = 0.0       # a stalled rank stalls the whole job
    stall_s: list = field(default_factory=lambda: [1.0, 5.0])


@dataclass
class SiteConfig:
    name: str = "custom"
    description: str = ""
    seconds: float = 600.0         # default duration
    step_ms: float = 50.0
    gpus: int = 10240
    gpus_per_node: int = 8
    gpu_w: float = 1000.0          # board power at full compute
    idle_level: float = 0.12       # GPUs of no job, or of a crashed job
    node_w_per_gpu: float = 200.0  # non-GPU node power, constant part (CPUs, memory, fans)
    node_dyn: float = 0.2          # non-GPU node power following GPU power (PSU losses, CPUs, NICs)
    site_it_w: float = 0.0         # storage, network spine
    pue: float = 1.25              # facility overhead (cooling), a slow component
    cooling_tau_s: float = 60.0
    cooling_wander: float = 0.04   # slow relative variation of the overhead
    cooling_period_s: float = 300.0
    noise_w: float = 30_000.0      # measurement noise, sigma per sample
    jobs: list = field(default_factory=list)


RANGES = {
    "gpus": (1, 1_000_000), "gpus_per_node": (1, 1024), "step_ms": (1, 60_000),
    "seconds": (1, 7 * 24 * 3600), "gpu_w": (50, 2000), "idle_level": (0, 1),
    "node_w_per_gpu": (0, 5000), "node_dyn": (0, 2), "site_it_w": (0, 500e6), "pue": (1.0, 2.0),
    "cooling_tau_s": (0, 3600), "cooling_wander": (0, 0.5), "cooling_period_s": (1, 86400),
    "noise_w": (0, 50e6),
    "period_s": (0.1, 60), "compute_frac": (0.05, 0.95), "comm_level": (0, 1), "jitter": (0, 0.3),
    "amp_jitter": (0, 0.3), "skew_ms": (0, 1000), "ckpt_every_s": (0, 86400), "ckpt_len_s": (0, 86400),
    "ckpt_level": (0, 1), "ckpt_first_s": (0, 86400), "start_s": (0, 7 * 86400),
    "stop_s": (0, 7 * 86400), "load_s": (0, 86400), "load_level": (0, 1), "crash_per_h": (0, 3600),
    "restart_after_s": (0, 86400), "stall_per_h": (0, 36000),
}


def _check(obj, data, src, where):
    known = {f.name for f in fields(obj)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProfileError(src, f"{where}unknown keys {unknown} (known: {sorted(known)})")
    for k, v in data.items():
        if k in RANGES and v is not None:
            lo, hi = RANGES[k]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
                raise ProfileError(src, f"{where}{k}={v!r} out of range [{lo:g}, {hi:g}]")
        setattr(obj, k, v)
    return obj


def from_dict(data: dict, src="config") -> SiteConfig:
    if not isinstance(data, dict):
        raise ProfileError(src, "a generator config is a JSON object")
    data = dict(data)
    jobs = data.pop("jobs", [])
    site = _check(SiteConfig(), data, src, "")
    if not isinstance(jobs, list) or not jobs:
        raise ProfileError(src, "jobs: a non-empty list of job objects is required")
    site.jobs = []
    for i, j in enumerate(jobs):
        if not isinstance(j, dict):
            raise ProfileError(src, f"jobs[{i}] is not an object")
        job = _check(JobConfig(name=f"job{i}"), j, src, f"jobs[{i}].")
        for key in ("crash_at_s", "stall_s"):
            v = getattr(job, key)
            if not isinstance(v, list) or not all(isinstance(x, (int, float)) and x >= 0 for x in v):
                raise ProfileError(src, f"jobs[{i}].{key} must be a list of numbers >= 0")
        if len(job.stall_s) != 2 or job.stall_s[0] > job.stall_s[1]:
            raise ProfileError(src, f"jobs[{i}].stall_s must be [min_s, max_s]")
        if job.ckpt_every_s and not 0 < job.ckpt_len_s < job.ckpt_every_s:
            raise ProfileError(src, f"jobs[{i}]: ckpt_len_s must be > 0 and < ckpt_every_s")
        site.jobs.append(job)
    used = sum(j.gpus for j in site.jobs)
    if used > site.gpus:
        raise ProfileError(src, f"jobs use {used} GPUs, more than the site's gpus={site.gpus}")
    return site


def load_file(path) -> SiteConfig:
    src = str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ProfileError(src, f"cannot read: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProfileError(src, f"invalid JSON: {e.msg} (column {e.colno})", e.lineno) from None
    cfg = from_dict(data, src)
    if cfg.name == "custom":
        cfg.name = Path(path).stem
    return cfg


def scenario_names():
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.json"))


def scenario(name) -> SiteConfig:
    path = SCENARIO_DIR / f"{name}.json"
    if not path.is_file():
        raise ProfileError(name, f"no built-in scenario of that name (have: {', '.join(scenario_names())})")
    return load_file(path)
