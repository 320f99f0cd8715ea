"""bench/bench_prediction.py's attribution: what one training start itself
puts above the cap, against a run without that start that is the real run
cycle for cycle up to the start's hint."""
import sys
from pathlib import Path

from cabctl.profiles import config as pconfig, generator
from cabctl.sim import scenario
from cabctl.sim.cli import simulate
from cabctl.sim.report import excursion_near

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_prediction  # noqa: E402


def test_the_main_jobs_first_start_is_the_reactive_engines_excursion_only():
    sc = dict(scenario.load("texas"), seed=1)
    seconds = 150
    starts = [e["t_s"] for e in generator.job_events(pconfig.scenario("start-crash"), 1, seconds)
              if e["kind"] == "train_start" and e["job"] == "main"]
    assert len(starts) == 1 and 140 <= starts[0] < 141
    _, traces = simulate(sc, ("cabinet",), profile="start-crash", hours=seconds / 3600,
                         prediction="both", hint_lead_s=bench_prediction.HINT_LEAD_S)
    out = bench_prediction.attributable(sc, "start-crash", seconds / 3600, "main", starts, traces)
    # The 14 MW step through a reactive engine: MW over the cap for a
    # cycle; without the start that window is clean, so all of it is the
    # start's. Announced, the step is pre-armed whole.
    window_wh, _ = excursion_near(traces["cabinet"], sc["site_cfg"]["cap_w"], starts)
    assert window_wh > 5 and out["off"] == window_wh
    assert out["on"] == 0


def test_hints_are_what_remove_the_start_up_excursion():
    sc = dict(scenario.load("texas"), seed=1)
    hinted = bench_prediction.compare(sc, "start-crash", 150 / 3600)
    blind = bench_prediction.compare(sc, "start-crash", 150 / 3600, hints=False)
    assert hinted["startup_by_job"]["main"]["on"]["wh"] == 0
    assert "startup_by_job" not in blind           # its windows are not attributed
    assert blind["startup_excursion_wh"]["on"] > 5  # the rhythm alone cannot know a start
