"""bench/bench_prediction.py's counterfactual: a job's training starts,
moved later, must land on other iteration edges, whatever the job's period
(its starts are on the job's own, absolute, iteration edges)."""
import sys
from pathlib import Path

import pytest

from cabctl.profiles import config as pconfig, generator
from cabctl.sim import scenario
from cabctl.sim.cli import PRED, simulate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_prediction  # noqa: E402


@pytest.mark.parametrize("profile, job", [("aperiodic", "a"),       # 6.3 s iterations
                                          ("aperiodic", "c"),       # 3.7 s
                                          ("start-crash", "flaky")])  # 0.6 s
def test_the_counterfactual_moves_every_start(profile, job):
    sc = dict(scenario.load("texas"), seed=2)
    seconds = 60
    starts = [e["t_s"] for e in generator.job_events(pconfig.scenario(profile), 2, seconds)
              if e["kind"] == "train_start" and e["job"] == job]
    assert starts
    _, traces = simulate(sc, ("cabinet",), profile=profile, hours=seconds / 3600,
                         prediction="both")
    out = bench_prediction.attributable(sc, profile, seconds / 3600, job, starts, traces)
    assert len(out["on_per_start"]) == len(out["off_per_start"]) == len(starts)
    assert out["on"] >= 0 and out["off"] >= 0
    assert set(traces) == {"cabinet", PRED}
