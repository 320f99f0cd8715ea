"""The safety monitor for a site of N cabinets, from the fleet plant's ground truth.

The fleet truth (plant/fleet.py) has the site's columns (grid, load, the
sum of battery power and limits) and per PCS k `battery_w_k`,
`setpoint_w_k`, `soc_cpct_k`, `charge_max_w_k`, `discharge_max_w_k`. Rules:

- per PCS, with that cabinet's site config: setpoint, power, soc, pcs_zero
  (invariants.monitor on a view of PCS k with the site's grid);
- for the site: export and ramp (invariants.monitor on the site view:
  battery and limits summed, SoC the lowest of the PCS, so the ramp rule's
  headroom test is the strictest cabinet's);
- cap: the site's grid above cap + 1 % for longer than cap_ms (default:
  invariants.react_ms + one cycle, see README "Fleet coordination") while
  the fleet still had discharge headroom (its battery power 2 % of the
  nameplate below the summed discharge limits, every PCS above its reserve);
- overshoot: the fleet doing more than the site needs: the 1 s mean of its
  battery power beyond max(0, load - cap) while discharging, or beyond
  min(recharge_max_w, recharge_w - load) while charging, above 5 % of the
  cap - what N cabinets that each cover the whole excess do (the reaction
  to a load step costs ~battery power x reaction time, ~0.3-0.6 MW here).
  Judged only without grid ramp limits and time-of-use windows (those move
  the battery away from the cap on purpose).
"""
import numpy as np

from . import invariants
from . import truth as truth_mod

PER_PCS_RULES = ("setpoint", "power", "soc", "pcs_zero")
SITE_RULES = ("export", "ramp")


def n_pcs(truth):
    return sum(1 for k in truth if k.startswith("battery_w_"))


def pcs_view(truth, k):
    v = {c: truth[c] for c in ("t_s", "load_w", "grid_w", "meter_blind", "grid_up") if c in truth}
    for c in ("battery_w", "setpoint_w", "soc_cpct", "charge_max_w", "discharge_max_w"):
        v[c] = truth[f"{c}_{k}"]
    return v


def cap_ms(site):
    return invariants.react_ms(site) + invariants.cycle_ms(site)


def judge(truth, sites, killed_at=None, first=5, cap_bound_ms=None):
    """truth: fleet truth columns; sites: one site-config override dict per cabinet.
    Returns the summary dict (invariant_violations, counts, first violations)."""
    n = n_pcs(truth)
    if n != len(sites):
        raise ValueError(f"truth has {n} PCS, {len(sites)} site configs given")
    counts = {r: 0 for r in PER_PCS_RULES + SITE_RULES + ("cap", "overshoot")}
    found = []
    for k in range(n):
        mon = invariants.monitor(pcs_view(truth, k), sites[k], killed_at=killed_at, first=first)
        for r in PER_PCS_RULES:
            counts[r] += mon.counts[r]
        found += [dict(v, pcs=k) for v in mon.found if v["rule"] in PER_PCS_RULES]
    site = invariants.site_config(sites[0])
    view = {c: truth[c] for c in ("t_s", "load_w", "grid_w", "battery_w", "setpoint_w",
                                  "charge_max_w", "discharge_max_w", "meter_blind", "grid_up")}
    view["soc_cpct"] = np.min([truth[f"soc_cpct_{k}"] for k in range(n)], axis=0)
    mon = invariants.monitor(view, sites[0], killed_at=killed_at, first=first)
    for r in SITE_RULES:
        counts[r] += mon.counts[r]
    found += [v for v in mon.found if v["rule"] in SITE_RULES]
    bound = cap_ms(site) if cap_bound_ms is None else cap_bound_ms
    c, f = _cap(truth, n, sites, site, bound, killed_at, first)
    counts["cap"] = c
    found += f
    c, f = _overshoot(truth, site, killed_at, first)
    counts["overshoot"] = c
    found += f
    found.sort(key=lambda v: v["t_s"])
    return {"invariant_violations": int(sum(counts.values())),
            "first_violations": found[:first],
            "invariant_counts": {k: int(v) for k, v in counts.items() if v},
            "cap_bound_ms": bound}


def _cap(truth, n, sites, site, bound_ms, killed_at, first):
    t = np.asarray(truth["t_s"], dtype=float)
    grid = np.asarray(truth["grid_w"], dtype=float)
    batt = np.asarray(truth["battery_w"], dtype=float)
    dis = np.asarray(truth["discharge_max_w"], dtype=float)
    nameplate = max(float(np.nanmax(dis)), 1.0)
    room = batt < dis - 0.02 * nameplate
    for k in range(n):
        s = invariants.site_config(sites[k])
        room &= np.asarray(truth[f"soc_cpct_{k}"]) > s["reserve_cpct"] + s["soc_hyst_cpct"]
    over = grid > site["cap_w"] * 1.01
    late = over & (invariants.run_ms(over, t) > bound_ms) & room
    if killed_at is not None:
        late &= t < killed_at
    idx = np.flatnonzero(late)
    heads = idx[np.concatenate(([True], np.diff(idx) > 1))] if len(idx) else idx
    found = [{"rule": "cap", "t_s": round(float(t[i]), 3), "grid_w": int(grid[i]),
              "battery_w": int(batt[i]), "over_ms": int(invariants.run_ms(over, t)[i])}
             for i in heads[:first]]
    return int(len(idx)), found


OVERSHOOT_PCT = 5         # of the cap: the 1 s mean of what the fleet does beyond the need


def _overshoot(truth, site, killed_at, first):
    if site["ramp_up_w_per_s"] or site["ramp_down_w_per_s"] or site["tou"]:
        return 0, []
    t = np.asarray(truth["t_s"], dtype=float)
    batt = np.asarray(truth["battery_w"], dtype=float)
    load = np.asarray(truth["load_w"], dtype=float)
    if killed_at is not None:
        keep = t < killed_at
        t, batt, load = t[keep], batt[keep], load[keep]
    if len(t) < 2:
        return 0, []
    need = np.maximum(0.0, load - site["cap_w"])                    # discharge the cap needs
    room = np.minimum(site["recharge_max_w"], np.maximum(0.0, site["recharge_w"] - load))
    excess = np.where(batt > 0, np.maximum(0.0, batt - need), np.maximum(0.0, -batt - room))
    mean = truth_mod.rolling_mean(excess, t, 1.0)
    bad = mean > OVERSHOOT_PCT / 100 * site["cap_w"]
    idx = np.flatnonzero(bad)
    heads = idx[np.concatenate(([True], np.diff(idx) > 1))] if len(idx) else idx
    found = [{"rule": "overshoot", "t_s": round(float(t[i]), 3), "excess_1s_w": int(mean[i]),
              "battery_w": int(batt[i]), "load_w": int(load[i])} for i in heads[:first]]
    return int(len(idx)), found
