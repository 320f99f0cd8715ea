"""Figures of a simulated run, from the plant's side (what really flowed)."""
import numpy as np

from ..invariants import monitor
from ..truth import longest_run_s, rolling_mean


def block_means(x, n):
    k = len(x) // n
    return x[:k * n].reshape(k, n).mean(axis=1) if k else np.array([x.mean()])


def invariant_violations(tr, site, tol_w):
    """Steps where the command or the physics left the envelope.

    setpoint beyond the PCS/BMS limits it was given; SoC below the outage
    reserve or above the maximum (beyond one hysteresis band, since SoC is
    measured a period late); export beyond the limit by more than tol_w.
    """
    sp = tr.setpoint_w
    bad = (sp > tr.discharge_max_w + 1) | (sp < -tr.charge_max_w - 1)
    bad |= tr.soc_cpct < site["reserve_cpct"] - site["soc_hyst_cpct"]
    bad |= tr.soc_cpct > site["soc_max_cpct"] + site["soc_hyst_cpct"]
    bad |= tr.grid_w < -site["export_limit_w"] - tol_w
    return int(bad.sum())


def cost_usd(grid_w, period_s, tariff, cap_w):
    """Demand charge on the highest 15-min average + hourly energy prices +
    a penalty on energy above the contracted cap."""
    per_15 = int(round(900 / period_s))
    demand_kw = max(0.0, block_means(grid_w, per_15).max()) / 1000
    prices = np.array(tariff.get("energy_usd_per_kwh", [0.0] * 24))
    hour = (np.arange(len(grid_w)) * period_s // 3600).astype(int) % 24
    energy_kwh = np.clip(grid_w, 0, None) * period_s / 3600 / 1000
    over_kwh = float(np.clip(grid_w - cap_w, 0, None).sum()) * period_s / 3600 / 1000
    return (demand_kw * tariff.get("demand_usd_per_kw_month", 0.0)
            + float((energy_kwh * prices[hour]).sum())
            + over_kwh * tariff.get("over_cap_usd_per_kwh", 0.0))


def metrics(tr, site, capacity_wh, tariff, faults=()):
    dt = tr.period_s
    cap = site["cap_w"]
    g = tr.grid_w
    per_s = int(round(1 / dt))
    ramps = np.abs(np.diff(block_means(g, per_s)))
    discharged_wh = np.clip(tr.battery_w, 0, None).sum() * dt / 3600
    return {
        "cap_w": int(cap),
        "peak_grid_w": int(rolling_mean(g, tr.t_s, 1.0).max()),
        "max_over_cap_ms": int(round(longest_run_s(g > cap * 1.01, tr.t_s) * 1000)),
        "energy_above_cap_wh": round(float(np.clip(g - cap, 0, None).sum() * dt / 3600), 1),
        "minutes_at_cap": round(float((g >= cap * 0.99).sum() * dt / 60), 2),
        "max_grid_ramp_w_per_s": int(ramps.max()) if len(ramps) else 0,
        "demand_peak_15min_w": int(block_means(g, int(round(900 / dt))).max()),
        "battery_full_cycles": round(float(discharged_wh / capacity_wh), 3),
        "min_soc_cpct": None if np.isnan(tr.soc_cpct).all() else int(np.nanmin(tr.soc_cpct)),
        # The independent safety monitor (invariants.py), as in the rig.
        **monitor(tr, site, faults=faults).summary(first=3),
        "cost_usd": round(cost_usd(g, dt, tariff, cap), 2),
    }


def excursion_near(tr, cap_w, times_s, before_s=0.5, after_s=0.25, band=1.01):
    """A job's start-up excursion: energy above cap x band (Wh, the 1 % band
    of max_over_cap_ms, so holding the cap through meter noise does not
    count) and the largest excess over the cap (W), within [t - before_s,
    t + after_s] of each event time t (the step from loading to training;
    a reactive response to it is over within a few cycles)."""
    wh = 0.0
    worst = 0.0
    for t in times_s:
        w = (tr.t_s >= t - before_s) & (tr.t_s < t + after_s)
        over = np.clip(tr.grid_w[w] - cap_w * band, 0, None)
        wh += float(over.sum()) * tr.period_s / 3600
        if over.size:
            worst = max(worst, float(over.max()) + cap_w * (band - 1) if over.max() > 0 else 0.0)
    return round(wh, 1), int(worst)
