"""Figures judged from the plant's ground truth CSV, never from firmware reports."""
import csv

import numpy as np


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ValueError(f"{path}: ground truth has no rows")
    data = np.array(rows[1:], dtype=float)
    return {name: data[:, i] for i, name in enumerate(rows[0])}


def window(truth, t_start, t_end):
    keep = (truth["t_s"] >= t_start) & (truth["t_s"] <= t_end)
    return {k: v[keep] for k, v in truth.items()}


def longest_run_s(mask, t):
    """Longest continuous stretch of True in mask, in seconds of t (step-resolved)."""
    if not mask.any():
        return 0.0
    dt = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    best = run = 0
    for m in mask:
        run = run + 1 if m else 0
        best = max(best, run)
    return best * dt


def rolling_mean(x, t, seconds):
    if len(x) < 2:
        return np.array([x.mean()]) if len(x) else np.array([0.0])
    dt = float(np.median(np.diff(t)))
    n = max(1, int(round(seconds / dt)))
    if len(x) < n:
        return np.array([x.mean()]) if len(x) else np.array([0.0])
    c = np.cumsum(np.insert(x, 0, 0.0))
    return (c[n:] - c[:-n]) / n


def metrics(truth, cap_w):
    t, grid = truth["t_s"], truth["grid_w"]
    over = grid > cap_w * 1.01
    return {
        "cap_w": int(cap_w),
        "peak_grid_w": int(rolling_mean(grid, t, 1.0).max()),
        "max_grid_w": int(grid.max()),
        "max_over_cap_ms": int(round(longest_run_s(over, t) * 1000)),
        "peak_load_w": int(truth["load_w"].max()),
        "min_soc_cpct": int(truth["soc_cpct"].min()),
        "max_export_w": int(max(0.0, -grid.min())),
        "judged_seconds": round(float(t[-1] - t[0]), 3) if len(t) else 0.0,
    }
