"""The training-cluster generator: site power of GPU training jobs, deterministic from a seed.

Grounded in shared REFERENCE.md section 1. Per job (all its GPUs in step):
- iterations: compute near the board limit, then all-reduce at `comm_level`;
  the period jitters from iteration to iteration, the same for the whole job,
  and node edges spread over `skew_ms` (each edge is smoothed by that much);
- checkpoints: the job drops to `ckpt_level` (~27 % of training power) for
  `ckpt_len_s` every `ckpt_every_s`;
- start: idle before `start_s`, loading at `load_level` for `load_s`, then a
  step up to training; crash: a step down to idle, `restart_after_s` later
  loading again, then training (crashes at given times and/or at random);
- stalls: a stalled rank holds the whole job at its all-reduce level.
Several jobs run with independent phases; GPUs in no job idle. Non-GPU IT
power is a constant part per GPU plus a part following GPU power; facility
overhead (PUE) follows IT power slowly (`cooling_tau_s`) with a slow wander;
measurement noise is added per sample.

Jobs are computed on a 5 ms grid and averaged to the output step, as a meter
averaging over its interval would.
"""
import math

import numpy as np

from .config import JobConfig, SiteConfig
from .core import Profile

SUB_MS = 5.0
CHUNK_S = 600.0


def _segments(job: JobConfig, end, rng):
    """[(start, stop, mode)] with mode 'load' or 'train'; the job is idle elsewhere."""
    segs = []
    crashes = sorted(c for c in job.crash_at_s if c > job.start_s)
    stop = min(end, job.stop_s) if job.stop_s is not None else end
    cur = job.start_s
    while cur < stop:
        random_crash = (cur + job.load_s + rng.exponential(3600.0 / job.crash_per_h)
                        if job.crash_per_h > 0 else math.inf)
        nxt = [c for c in crashes if c > cur]
        crash = min(nxt[0] if nxt else math.inf, random_crash)
        train_at = min(cur + job.load_s, crash, stop)
        if train_at > cur:
            segs.append((cur, train_at, "load"))
        if min(crash, stop) > train_at:
            segs.append((train_at, min(crash, stop), "train"))
        if crash >= stop:
            break
        cur = crash + job.restart_after_s
    return segs


class JobPlan:
    """Everything random about one job, drawn once; `level(t)` evaluates any stretch of time."""

    def __init__(self, job: JobConfig, end, rng, idle_level=0.12):
        self.job, self.idle = job, float(idle_level)
        # Draw in a fixed order so the same seed always gives the same job.
        n_it = int(end / job.period_s * 1.4) + 16
        self.periods = job.period_s * np.clip(1 + job.jitter * rng.standard_normal(n_it), 0.5, 1.5)
        self.amps = np.clip(1 + job.amp_jitter * rng.standard_normal(n_it), 0.8, 1.05)
        self.edges = np.concatenate([[-rng.uniform(0, job.period_s)], self.periods]).cumsum()
        first_ckpt = (job.ckpt_first_s if job.ckpt_first_s is not None
                      else rng.uniform(0, job.ckpt_every_s or 1.0))
        self.segs = _segments(job, end, rng)
        self.pauses = []                  # (start, stop, level; None = at most the all-reduce level)
        for n_seg, (a, b, mode) in enumerate(self.segs):
            if mode != "train":
                continue
            if job.ckpt_every_s > 0:
                c = a + (first_ckpt if n_seg <= 1 else job.ckpt_every_s)
                while c < b:
                    self.pauses.append((c, min(c + job.ckpt_len_s, b), job.ckpt_level))
                    c += job.ckpt_every_s
            if job.stall_per_h > 0:
                for _ in range(rng.poisson(job.stall_per_h * (b - a) / 3600.0)):
                    st = rng.uniform(a, b)
                    self.pauses.append((st, min(st + rng.uniform(*job.stall_s), b), None))

    def level(self, t):
        """Per-GPU power as a fraction of board power at times t (sorted)."""
        job = self.job
        lo, hi = float(t[0]), float(t[-1])
        level = np.full(len(t), self.idle)
        for a, b, mode in self.segs:
            if b < lo or a > hi:
                continue
            i, j = np.searchsorted(t, [a, b])
            if mode == "load":
                level[i:j] = job.load_level
                continue
            tt = t[i:j]
            k = np.clip(np.searchsorted(self.edges, tt, side="right") - 1, 0, len(self.periods) - 1)
            frac = (tt - self.edges[k]) / self.periods[k]
            level[i:j] = np.where(frac < job.compute_frac, self.amps[k], job.comm_level)
        for a, b, lvl in self.pauses:
            if b < lo or a > hi:
                continue
            i, j = np.searchsorted(t, [a, b])
            level[i:j] = lvl if lvl is not None else np.minimum(level[i:j], job.comm_level)
        return level


def _job_level(plan: JobPlan, s0, s1, n_sub, h):
    """Level on substeps [s0, s1) with the node skew applied (edge values held at the ends)."""
    w = int(round(plan.job.skew_ms / 1000 / h))
    a, b = (w // 2, w - 1 - w // 2) if w >= 2 else (0, 0)
    idx = np.clip(np.arange(s0 - a, s1 + b), 0, n_sub - 1)
    level = plan.level((idx + 0.5) * h)
    if w >= 2:
        level = np.convolve(level, np.ones(w) / w, mode="valid")
    return level


def _grid(seconds, step_ms):
    step = step_ms / 1000
    n = max(1, int(round(seconds / step)))
    over = max(1, int(round(step_ms / SUB_MS)))
    return n, over, step / over


def gpu_power(job: JobConfig, seconds, step_ms=100.0, seed=1, gpu_w=700.0, idle_level=0.12):
    """Board power of one GPU of `job` in W at `step_ms` (e.g. to synthesise GPU logs)."""
    n, over, h = _grid(seconds, step_ms)
    plan = JobPlan(job, n * over * h, np.random.default_rng([seed, 1]), idle_level)
    return gpu_w * _job_level(plan, 0, n * over, n * over, h).reshape(n, over).mean(axis=1)


def _plan(cfg: SiteConfig, i, seed, end_s):
    """Job i's plan: each job draws from its own seed, so generate, job_events
    and job_it_w see the same plans."""
    return JobPlan(cfg.jobs[i], end_s, np.random.default_rng([seed, i + 1]), cfg.idle_level)


def job_it_w(cfg: SiteConfig, job_name: str, seed: int = 1, seconds: float | None = None):
    """One job's part of the IT power `generate(cfg, seed, seconds)` sums, per
    output sample (W, float; GPU power x (1 + node_dyn), as job_events'
    `power_w`): what the site load would lose without the job, before the
    facility overhead follows it."""
    seconds = cfg.seconds if seconds is None else float(seconds)
    n, over, h = _grid(seconds, cfg.step_ms)
    names = [j.name for j in cfg.jobs]
    if job_name not in names:
        raise ValueError(f"no job {job_name!r} in {cfg.name or 'the config'} ({', '.join(names)})")
    i = names.index(job_name)
    job = cfg.jobs[i]
    plan = _plan(cfg, i, seed, n * over * h)
    level = _job_level(plan, 0, n * over, n * over, h).reshape(n, over).mean(axis=1)
    return level * job.gpus * cfg.gpu_w * (1 + cfg.node_dyn)


def lagged(x, step, tau_s):
    """x through a first-order lag of tau_s (on 1 s blocks, started at the first tau's mean)."""
    if tau_s <= 0:
        return np.asarray(x, dtype=np.float64)
    m = max(1, int(round(1.0 / step)))
    nb = math.ceil(len(x) / m)
    blocks = np.pad(x, (0, nb * m - len(x)), mode="edge").reshape(nb, m).mean(axis=1)
    alpha = 1 - math.exp(-m * step / tau_s)
    y = float(blocks[:max(1, int(tau_s / (m * step)))].mean())
    out = np.empty(nb)
    for i, v in enumerate(blocks.tolist()):
        y += alpha * (v - y)
        out[i] = y
    centers = (np.arange(nb) + 0.5) * m * step
    return np.interp((np.arange(len(x)) + 0.5) * step, centers, out)


def _cooling(it, step, cfg: SiteConfig, rng):
    """Facility overhead: (PUE - 1) x IT power through a first-order lag, with a slow wander."""
    if cfg.pue <= 1.0:
        return np.zeros_like(it)
    t = (np.arange(len(it)) + 0.5) * step
    phase = rng.uniform(0, 2 * math.pi)
    wander = 1 + cfg.cooling_wander * np.sin(2 * math.pi * t / cfg.cooling_period_s + phase)
    return (cfg.pue - 1) * lagged(it, step, cfg.cooling_tau_s) * wander


def generate(cfg: SiteConfig, seed: int = 1, seconds: float | None = None) -> Profile:
    seconds = cfg.seconds if seconds is None else float(seconds)
    n, over, h = _grid(seconds, cfg.step_ms)
    step = cfg.step_ms / 1000
    n_sub = n * over
    plans = [_plan(cfg, i, seed, n_sub * h) for i in range(len(cfg.jobs))]
    idle_gpus = cfg.gpus - sum(j.gpus for j in cfg.jobs)
    it = np.empty(n)
    chunk = max(1, int(CHUNK_S / step))          # bounded memory for day-long profiles
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        gpu = np.full((c1 - c0) * over, idle_gpus * cfg.gpu_w * cfg.idle_level)
        for plan in plans:
            gpu += plan.job.gpus * cfg.gpu_w * _job_level(plan, c0 * over, c1 * over, n_sub, h)
        it[c0:c1] = gpu.reshape(c1 - c0, over).mean(axis=1)
    it = it * (1 + cfg.node_dyn) + cfg.gpus * cfg.node_w_per_gpu + cfg.site_it_w
    site_rng = np.random.default_rng([seed, 0])
    total = it + _cooling(it, step, cfg, site_rng)
    if cfg.noise_w > 0:
        total += cfg.noise_w * site_rng.standard_normal(n)
    watts = np.clip(np.rint(total), 0, None).astype(np.int64)
    meta = {"source": f"generated seed={seed} seconds={seconds:g}",
            "site": f"gpus={cfg.gpus} gpus_per_node={cfg.gpus_per_node} gpu_w={cfg.gpu_w:g} "
                    f"pue={cfg.pue:g} jobs={len(cfg.jobs)}"}
    if cfg.description:
        meta["description"] = cfg.description
    return Profile(step, watts, name=cfg.name, meta=meta)


def _first_compute(plan: JobPlan, t, min_s=0.1):
    """The first time >= t from which the job computes for at least min_s
    (and that iteration's index)."""
    k = int(np.clip(np.searchsorted(plan.edges, t, side="right") - 1, 0, len(plan.periods) - 1))
    left = plan.edges[k] + plan.job.compute_frac * plan.periods[k] - t
    if left >= min_s:
        return float(t), k
    return float(plan.edges[k + 1]), min(k + 1, len(plan.periods) - 1)


def job_events(cfg: SiteConfig, seed: int = 1, seconds: float | None = None):
    """The job events a scheduler (or a training-loop hook) knows ahead, for the
    same plans `generate(cfg, seed, seconds)` draws.

    A list of dicts sorted by `t_s`: `kind` (`job_start`: (re)start, idle ->
    loading; `train_start`: the first compute phase after loading;
    `ckpt_start`, `ckpt_end`: the first compute phase after a checkpoint;
    `job_end`: a planned stop), `job` (name) and `power_w`, the size of the
    site power step (GPU power x (1 + node_dyn); the facility overhead
    follows later). Crashes are not announced, so they are not listed; the
    restart after one is (the scheduler requeues the job).
    """
    seconds = cfg.seconds if seconds is None else float(seconds)
    n, over, h = _grid(seconds, cfg.step_ms)
    end = n * over * h
    out = []
    for i, job in enumerate(cfg.jobs):
        plan = _plan(cfg, i, seed, end)
        scale = job.gpus * cfg.gpu_w * (1 + cfg.node_dyn)
        lvl = lambda t: float(plan.level(np.array([t]))[0])

        def add(t, kind, step):
            if 0 <= t < end and step > 0:
                out.append({"t_s": round(t, 3), "kind": kind, "job": job.name,
                            "power_w": int(round(step * scale))})
        for a, b, mode in plan.segs:
            if mode == "load":
                add(a, "job_start", job.load_level - plan.idle)
                continue
            t, k = _first_compute(plan, a)
            add(t, "train_start", plan.amps[k] - lvl(max(a - 1e-3, 0.0)))
            if job.stop_s is not None and b >= job.stop_s - 1e-9:
                add(b, "job_end", lvl(b - 1e-3) - plan.idle)
        seg_ends = {b for _, b, _ in plan.segs}
        for a, b, level in plan.pauses:
            if level is None:
                continue                                   # stalls are not announced
            add(a, "ckpt_start", lvl(a - 1e-3) - level)
            if b not in seg_ends:                          # not cut short by a crash or stop
                t, k = _first_compute(plan, b)
                add(t, "ckpt_end", plan.amps[k] - level)
    return sorted(out, key=lambda e: e["t_s"])
