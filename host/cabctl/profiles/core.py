"""The one in-memory load profile and the one error type of cabctl.profiles."""
import math
from dataclasses import dataclass, field

import numpy as np

MAX_SITE_W = 1_000_000_000      # 1 GW: anything above is a unit error, not a site
MAX_GPU_W = 2_000               # per GPU board: above is mW, or a corrupt value


class ProfileError(ValueError):
    """Bad profile input: the message names the file, the line (or row) and the problem."""

    def __init__(self, source, problem, line=None):
        self.source, self.problem, self.line = str(source), problem, line
        where = f"{self.source}:{line}" if line is not None else self.source
        super().__init__(f"{where}: {problem}")


@dataclass
class Profile:
    """Site power in integer watts at a fixed step; `at(t)` holds each sample for one step.

    Beyond the end `at` wraps around, so a plant can run longer than its profile.
    """
    step_s: float
    watts: np.ndarray                 # int64, one sample per step
    name: str = ""
    meta: dict = field(default_factory=dict)     # header fields of the file format
    gaps: list = field(default_factory=list)     # [(start_s, len_s, fill)] filled on import

    def __post_init__(self):
        self.watts = np.asarray(self.watts, dtype=np.int64)
        if self.step_s <= 0 or not len(self.watts):
            raise ProfileError(self.name or "profile", "empty profile or step <= 0")
        self._n = len(self.watts)
        self._inv = 1.0 / self.step_s

    @property
    def duration_s(self) -> float:
        return self._n * self.step_s

    @property
    def step_ms(self) -> float:
        return self.step_s * 1000

    def at(self, t_s: float) -> float:
        """Power at time t_s: sample-and-hold, wrapping past the end. O(1), for 200 Hz callers."""
        return float(self.watts[math.floor(t_s * self._inv + 1e-9) % self._n])

    def times(self):
        return np.arange(self._n) * self.step_s
