"""Profile figures (cabctl.profiles.stats) on signals whose answers are known."""
import numpy as np
import pytest

from cabctl.profiles import Profile
from cabctl.profiles.stats import FIELDS, format_text, stats


def square(period_s=0.8, step=0.05, seconds=60, lo=10_000_000, hi=20_000_000):
    k = int(round(period_s / step))
    n = int(seconds / step)
    return np.where((np.arange(n) % k) < k // 2, hi, lo)


def test_levels_steps_rises_and_period_of_a_square_wave():
    p = Profile(0.05, square())
    s = stats(p)
    assert list(s) == FIELDS
    assert (s["mean_w"], s["min_w"], s["max_w"]) == (15_000_000, 10_000_000, 20_000_000)
    assert s["duration_s"] == 60 and s["step_ms"] == 50 and s["samples"] == 1200
    assert s["largest_step_w"] == s["largest_rise_1s_w"] == s["largest_fall_1s_w"] == 10_000_000
    assert s["dominant_period_s"] == pytest.approx(0.8) and s["fast_period_s"] == pytest.approx(0.8)
    assert s["peak_to_mean"] == pytest.approx(4 / 3, abs=1e-3)
    assert s["gaps"] == 0 and s["gap_list"] == []


def test_one_second_rise_adds_up_a_ramp_and_finds_where():
    w = np.full(200, 1000)
    w[100:110] = 1000 + 300 * np.arange(1, 11)           # +3 kW over 1 s in 100 ms steps
    w[110:] = 4000
    s = stats(Profile(0.1, w))
    assert s["largest_step_w"] == 300
    assert s["largest_rise_1s_w"] == 3000 and s["largest_rise_1s_at_s"] == pytest.approx(9.9)
    assert s["largest_fall_1s_w"] == 0


def test_slow_period_without_fast_swings():
    p = Profile(0.5, square(period_s=40, step=0.5, seconds=400))
    s = stats(p)
    assert s["dominant_period_s"] == pytest.approx(40, abs=0.5) and s["fast_period_s"] is None


def test_recorded_gap_edges_are_not_steps():
    w = np.r_[np.full(100, 5000), np.full(100, 1000)]
    plain = stats(Profile(0.1, w))
    assert plain["largest_step_w"] == 4000
    gapped = stats(Profile(0.1, w, gaps=[(4.9, 5.05, "hold")]))
    assert gapped["largest_step_w"] == 0 and gapped["largest_fall_1s_w"] == 0
    assert gapped["gaps"] == 1 and gapped["gap_list"] == [{"start_s": 4.9, "len_s": 5.05, "fill": "hold"}]
    assert "filled by hold" in format_text(gapped)


def test_constant_and_tiny_profiles():
    s = stats(Profile(1.0, [7]))
    assert s["dominant_period_s"] is None and s["largest_step_w"] == 0 and s["max_w"] == 7
    assert stats(Profile(0.1, np.full(50, 3)))["dominant_period_s"] is None
