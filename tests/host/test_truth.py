"""Judged figures from synthetic ground truth (cabctl.truth)."""
import numpy as np
import pytest

from cabctl import truth

MW = 1_000_000
CAP = 18 * MW


def series(seconds=10.0, dt=0.005, grid=10 * MW):
    """Ground truth at a fixed step: constant grid and load, SoC 50 %."""
    t = np.round(np.arange(0, seconds + dt / 2, dt), 6)
    n = len(t)
    return {"t_s": t, "grid_w": np.full(n, float(grid)), "load_w": np.full(n, float(grid)),
            "battery_w": np.zeros(n), "soc_cpct": np.full(n, 5000.0)}


def excursion(tr, start, ms, w):
    """Set grid to w for `ms` milliseconds from `start` (exactly ms/dt samples)."""
    t = tr["t_s"]
    i = int(np.searchsorted(t, start - 1e-9))
    n = int(round(ms / 1000 / (t[1] - t[0])))
    tr["grid_w"][i:i + n] = w
    return tr


# mask, dt -> longest run in seconds
RUNS = [
    ("0110111010", 0.1, 0.3),
    ("0000000000", 0.1, 0.0),
    ("1111111111", 0.1, 1.0),
    ("0000100000", 0.005, 0.005),
    ("1100000011", 0.005, 0.010),
    ("1011011101111", 0.005, 0.020),
]


@pytest.mark.parametrize("mask, dt, want", RUNS)
def test_longest_run(mask, dt, want):
    m = np.array([c == "1" for c in mask])
    t = np.arange(len(m)) * dt
    assert truth.longest_run_s(m, t) == pytest.approx(want)


def test_longest_run_single_sample():
    assert truth.longest_run_s(np.array([True]), np.array([3.0])) == 0.0


@pytest.mark.parametrize("dt", [0.005, 0.01, 0.05])
def test_300_ms_excursion(dt):
    tr = excursion(series(dt=dt), 4.0, 300, 20 * MW)
    excursion(tr, 7.0, 100, 25 * MW)                           # shorter, higher
    m = truth.metrics(tr, CAP)
    assert abs(m["max_over_cap_ms"] - 300) <= dt * 1000
    assert m["max_grid_w"] == 25 * MW


def test_cap_tolerance_is_one_percent():
    tr = excursion(series(), 4.0, 500, CAP * 1.01)             # at the tolerance: not over
    assert truth.metrics(tr, CAP)["max_over_cap_ms"] == 0
    tr = excursion(series(), 4.0, 500, CAP * 1.011)
    assert truth.metrics(tr, CAP)["max_over_cap_ms"] == 500


def test_rolling_one_second_peak():
    # 10 MW base, 0.5 s at 20 MW: the worst 1 s window averages 15 MW.
    tr = excursion(series(), 4.0, 500, 20 * MW)
    m = truth.metrics(tr, CAP)
    assert m["peak_grid_w"] == pytest.approx(15 * MW, abs=1)
    assert m["max_grid_w"] == 20 * MW
    # 2 s at 20 MW: a full window sits inside it.
    tr = excursion(series(), 4.0, 2000, 20 * MW)
    assert truth.metrics(tr, CAP)["peak_grid_w"] == pytest.approx(20 * MW, abs=1)


def test_rolling_mean_values():
    t = np.arange(10) * 0.25                                   # 4 samples per second
    x = np.arange(10, dtype=float)
    np.testing.assert_allclose(truth.rolling_mean(x, t, 1.0), [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5])
    np.testing.assert_allclose(truth.rolling_mean(x[:3], t[:3], 1.0), [1.0])   # shorter than 1 s


def test_other_figures():
    tr = series()
    tr["load_w"][100] = 31 * MW
    tr["soc_cpct"][200:300] = 1234
    tr["grid_w"][500] = -2.5 * MW
    m = truth.metrics(tr, CAP)
    assert m["cap_w"] == CAP and isinstance(m["cap_w"], int)
    assert m["peak_load_w"] == 31 * MW
    assert m["min_soc_cpct"] == 1234
    assert m["max_export_w"] == 2.5 * MW
    assert m["judged_seconds"] == pytest.approx(10.0)
    assert truth.metrics(series(), CAP)["max_export_w"] == 0


def test_judged_window():
    tr = excursion(series(), 1.0, 400, 20 * MW)                # before the window
    excursion(tr, 6.0, 200, 20 * MW)                           # inside it
    w = truth.window(tr, 2.0, 8.0)
    assert w["t_s"][0] == pytest.approx(2.0) and w["t_s"][-1] == pytest.approx(8.0)
    assert len(w["grid_w"]) == len(w["t_s"]) == 1201
    m = truth.metrics(w, CAP)
    assert m["judged_seconds"] == pytest.approx(6.0)
    assert m["max_over_cap_ms"] == 200
    assert truth.metrics(tr, CAP)["max_over_cap_ms"] == 400


def test_load_csv(tmp_path):
    p = tmp_path / "truth.csv"
    p.write_text("t_s,grid_w,load_w,soc_cpct\n0.0,1,2,5000\n0.005,-3,4,4999\n")
    tr = truth.load(p)
    assert list(tr) == ["t_s", "grid_w", "load_w", "soc_cpct"]
    np.testing.assert_array_equal(tr["grid_w"], [1, -3])
    p.write_text("t_s,grid_w\n")
    with pytest.raises(ValueError, match="no rows"):
        truth.load(p)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_one_sample_window():
    w = truth.window(series(), 2.0, 2.0)
    assert len(w["t_s"]) == 1
    m = truth.metrics(w, CAP)
    assert m["peak_grid_w"] == 10 * MW and m["judged_seconds"] == 0.0
