"""The training-cluster generator (cabctl.profiles.generator) and its scenarios (config)."""
import dataclasses
import json

import numpy as np
import pytest

from cabctl.profiles import ProfileError, load, scenario_names
from cabctl.profiles import config
from cabctl.profiles.generator import generate, job_it_w
from cabctl.profiles.stats import stats

MW = 1_000_000


def bare(**job):
    """One job, no noise, no overhead, no node or site power: the GPU levels themselves."""
    return config.from_dict({"step_ms": 50, "gpus": 1000, "gpu_w": 1000, "node_w_per_gpu": 0,
                             "node_dyn": 0, "pue": 1.0, "noise_w": 0, "idle_level": 0.1,
                             "jobs": [dict({"gpus": 1000, "skew_ms": 0, "jitter": 0,
                                            "amp_jitter": 0}, **job)]})


def mean_over(p, a, b):
    return p.watts[int(a / p.step_s):int(b / p.step_s)].mean()


def test_same_seed_same_watts_other_seed_other_watts():
    a, b, c = (load("texas", seed=s, seconds=120) for s in (7, 7, 8))
    assert np.array_equal(a.watts, b.watts)
    assert not np.array_equal(a.watts, c.watts)
    assert a.watts.dtype == np.int64


@pytest.mark.parametrize("seed", [1, 2])
def test_texas_is_the_seed_site(seed):
    p = load("texas", seed=seed)
    s = stats(p)
    assert 13.5 * MW <= s["mean_w"] <= 16.5 * MW, s
    assert 22.5 * MW <= s["max_w"] <= 27.5 * MW, s
    # Sub-second swings: iterations of ~1 s move several MW within a step.
    assert s["largest_step_w"] > 3 * MW and s["fast_period_s"] < 2.0, s
    # Multi-second swings: checkpoints hold the 10 s average down by MW for tens of s.
    k = int(10 / p.step_s)
    ten = np.convolve(p.watts, np.ones(k) / k, mode="valid")
    assert ten.max() - ten.min() > 3 * MW


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_demo_exceeds_the_hil_cap_in_its_first_10_s(seed):
    p = load("demo", seed=seed, seconds=75)          # as the plant loads it for a 10 s run
    first = p.watts[:int(10 / p.step_s)]
    assert first.max() > 1.25 * 18 * MW
    s = stats(load("demo", seed=seed))
    assert 24 * MW <= s["max_w"] <= 26 * MW and 16 * MW <= s["mean_w"] <= 18 * MW, s
    assert 9 * MW <= s["min_w"] <= 12 * MW, s
    w = load("demo", seed=seed).watts
    k = int(10 / p.step_s)
    assert min(w[i:i + k].max() for i in range(0, len(w) - k, k // 4)) > 18 * MW


@pytest.mark.parametrize("name", scenario_names())
def test_every_scenario_is_a_sane_site(name):
    p = load(name, seconds=240)
    assert len(p.watts) == round(240 / p.step_s)
    assert 1 * MW < p.watts.mean() < 30 * MW and p.watts.min() >= 0
    assert config.scenario(name).description


def test_iteration_levels_and_period():
    p = generate(bare(period_s=1.0, compute_frac=0.5, comm_level=0.3), seconds=20)
    w = p.watts
    assert w.max() == 1_000_000 and np.percentile(w, 25) == 300_000
    assert w.mean() == pytest.approx(650_000, rel=0.02)
    assert stats(p)["dominant_period_s"] == pytest.approx(1.0, abs=0.05)


def test_checkpoints_start_loading_crash_and_restart():
    job = dict(period_s=0.5, compute_frac=0.5, comm_level=0.4, start_s=10, load_s=20, load_level=0.2,
               ckpt_every_s=30, ckpt_len_s=10, ckpt_first_s=15, ckpt_level=0.27,
               crash_at_s=[80], restart_after_s=20)
    p = generate(bare(**job), seconds=140)
    assert mean_over(p, 0, 10) == pytest.approx(100_000)           # idle before start
    assert mean_over(p, 10, 30) == pytest.approx(200_000)          # loading
    assert mean_over(p, 30, 45) == pytest.approx(700_000, rel=0.03)  # training
    assert mean_over(p, 45, 55) == pytest.approx(270_000)          # checkpoint at 30 + 15
    assert mean_over(p, 80, 100) == pytest.approx(100_000)         # crashed: idle
    assert mean_over(p, 100, 120) == pytest.approx(200_000)        # loading again
    assert mean_over(p, 120, 140) == pytest.approx(700_000, rel=0.03)


def test_stall_holds_the_job_at_all_reduce_level():
    p = generate(bare(period_s=0.5, compute_frac=0.5, comm_level=0.4, stall_per_h=3600,
                      stall_s=[2, 2]), seconds=60)
    w = p.watts
    flat = np.convolve(w == 400_000, np.ones(30), mode="valid").max()
    assert flat >= 30                                       # >= 1.5 s at the all-reduce level


def test_a_jobs_it_power_is_its_part_of_the_site_load():
    # No overhead or noise: the site is the idle GPUs, the node power and
    # the jobs (with their skew, jitter and random crashes).
    cfg = config.from_dict(dataclasses.asdict(config.scenario("start-crash"))
                           | {"pue": 1.0, "noise_w": 0})
    p = generate(cfg, seed=2, seconds=900)
    jobs = job_it_w(cfg, "main", 2, 900) + job_it_w(cfg, "flaky", 2, 900)
    idle_gpus = cfg.gpus - sum(j.gpus for j in cfg.jobs)
    rest = idle_gpus * cfg.gpu_w * cfg.idle_level * (1 + cfg.node_dyn) \
        + cfg.gpus * cfg.node_w_per_gpu + cfg.site_it_w
    assert np.abs(p.watts - jobs - rest).max() <= 1          # (watts are rounded)
    with pytest.raises(ValueError, match="no job 'x'.*main, flaky"):
        job_it_w(cfg, "x")


def test_overhead_is_slow_and_scales_the_mean():
    base = config.scenario("steady")
    base.noise_w = 0
    a = generate(base, seconds=120)
    base.pue = 1.0
    b = generate(base, seconds=120)
    assert a.watts.mean() / b.watts.mean() == pytest.approx(1.25, rel=0.02)
    # The overhead does not follow the iteration edges: steps grow by far less than 25 %.
    assert np.abs(np.diff(a.watts)).max() < 1.05 * np.abs(np.diff(b.watts)).max()


@pytest.mark.parametrize("data, words", [
    ({"jobs": [{"gpus": 8, "perod_s": 1}]}, "unknown keys ['perod_s']"),
    ({"pue": 3, "jobs": [{"gpus": 8}]}, "pue=3 out of range"),
    ({"gpus": 8, "jobs": [{"gpus": 16}]}, "more than the site's gpus=8"),
    ({"jobs": []}, "jobs"),
    ({"jobs": [{"ckpt_every_s": 10, "ckpt_len_s": 20}]}, "ckpt_len_s"),
])
def test_bad_configs_name_the_key(tmp_path, data, words):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=words.replace("[", r"\[").replace("]", r"\]")) as e:
        config.load_file(path)
    assert str(path) in str(e.value)


def test_json_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{\n "gpus": 8,\n "jobs": [}\n')
    with pytest.raises(ProfileError) as e:
        config.load_file(path)
    assert e.value.line == 3
