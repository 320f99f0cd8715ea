"""A built-in GPU-cluster load profile (the Load-profiles issue replaces it).

Shaped after REFERENCE.md section 1: synchronous training jobs whose power
follows their iterations (compute near board limit, all-reduce well below),
checkpoint pauses down to ~28 % of training power, a crash and restart, and a
slower non-GPU part (cooling, CPUs, network). Deterministic from a seed.
"""
import bisect
import math
import random
from dataclasses import dataclass


@dataclass
class Job:
    share_w: float          # power of the job's GPUs at full compute
    period_s: float         # iteration period
    compute_frac: float     # part of the iteration spent computing
    comm_level: float       # power during all-reduce, fraction of compute
    ckpt_every_s: float
    ckpt_len_s: float
    ckpt_level: float = 0.28
    start_s: float = 0.0    # job start: loading at low power, then training
    load_len_s: float = 0.0
    crash_s: float = -1.0   # crash to idle, restart after restart_after_s
    restart_after_s: float = 0.0


class GpuCluster:
    """Site load in W as a function of time; peaks ~25 MW, valleys ~12 MW."""

    def __init__(self, seed=1, seconds=3600.0, overhead_w=2.8e6, noise_w=40e3):
        rng = random.Random(seed)
        self.overhead_w = overhead_w
        self.noise_w = noise_w
        self.jobs = [
            Job(12.5e6, 0.8, 0.55, 0.40, 30.0, 6.0, start_s=0.0),
            Job(6.5e6, 1.3, 0.60, 0.45, 45.0, 9.0, start_s=2.0, load_len_s=4.0),
            Job(2.8e6, 0.5, 0.50, 0.50, 20.0, 3.0, crash_s=22.0, restart_after_s=6.0),
        ]
        # Iteration boundaries with a few % jitter (ranks are not metronomes).
        self.edges = []
        for j in self.jobs:
            t, edges = rng.uniform(0, j.period_s), []
            while t < seconds + 10:
                edges.append(t)
                t += j.period_s * rng.uniform(0.97, 1.03)
            self.edges.append(edges)
        self.ckpt_phase = [rng.uniform(0, j.ckpt_every_s) for j in self.jobs]
        self.rng = rng

    def job_level(self, i, t):
        j = self.jobs[i]
        if t < j.start_s:
            return 0.05
        if t < j.start_s + j.load_len_s:
            return 0.22                       # loading data and weights
        if j.crash_s >= 0 and j.crash_s <= t < j.crash_s + j.restart_after_s:
            return 0.12                       # crashed: idle GPUs
        if (t + self.ckpt_phase[i]) % j.ckpt_every_s < j.ckpt_len_s:
            return j.ckpt_level
        edges = self.edges[i]
        k = bisect.bisect_right(edges, t) - 1
        start = edges[max(k, 0)]
        length = edges[k + 1] - start if 0 <= k < len(edges) - 1 else j.period_s
        return 1.0 if (t - start) < j.compute_frac * length else j.comm_level

    def load_w(self, t):
        gpu = sum(j.share_w * self.job_level(i, t) for i, j in enumerate(self.jobs))
        cooling = self.overhead_w * (1 + 0.08 * math.sin(2 * math.pi * t / 120))
        return gpu + cooling + self.rng.gauss(0, self.noise_w)
