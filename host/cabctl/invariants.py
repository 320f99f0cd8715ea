"""Invariants judged from the plant's ground truth, never from firmware reports.

Each truth sample (5 ms) is checked against the site's envelope:
- setpoint: what the PCS was told, beyond the limits it reported (+1 % slack);
- soc: SoC below the outage reserve or above the maximum, beyond one hysteresis band;
- export: grid export beyond the export limit (+1 % of the cap: a sample's
  worth of a load drop before the battery reacts is physics, not control);
- blind_discharge: the battery still discharging while the controller cannot
  see the meter, past the deadline the failsafe promises (the meter's error
  limit in cycles, plus the frozen-value detection time when the meter is
  frozen, plus the PCS's settling time).
"""
import numpy as np

from .fw import config as fw_config

PCS_SETTLE_MS = 400       # the PCS ramps to 0 W (lag + ramp) and one meter update


def deadline_ms(site, frozen=False):
    cycle = max(site["period_ms"], 50) + site["response_timeout_ms"]
    ms = (site["meter_fail_cycles"] + 2) * cycle + PCS_SETTLE_MS
    return ms + (site["meter_frozen_ms"] if frozen else 0)


def _runs_ms(mask, t_s):
    """For each sample, how long mask has been continuously true (ms)."""
    out = np.zeros(len(mask))
    start = None
    for i, m in enumerate(mask):
        if m:
            start = t_s[i] if start is None else start
            out[i] = (t_s[i] - start) * 1000
        else:
            start = None
    return out


def check(truth, site_overrides, first=5):
    """(count, [first violations]) over the truth window given."""
    try:
        site = fw_config.validate(dict(site_overrides))
    except ValueError:
        site = fw_config.validate({})        # the firmware rejects it and runs on defaults
    t = truth["t_s"]
    nameplate = max(truth["charge_max_w"].max(), truth["discharge_max_w"].max(), 1.0)
    slack = 0.01 * nameplate + 1000
    sp, soc, grid, batt = truth["setpoint_w"], truth["soc_cpct"], truth["grid_w"], truth["battery_w"]
    blind = truth["meter_blind"]
    rules = {
        "setpoint": (sp > truth["discharge_max_w"] + slack) | (sp < -truth["charge_max_w"] - slack),
        "soc": (soc < site["reserve_cpct"] - site["soc_hyst_cpct"])
               | (soc > site["soc_max_cpct"] + site["soc_hyst_cpct"]),
        "export": grid < -(site["export_limit_w"] + 0.01 * site["cap_w"]),
    }
    allowed = max(site["safe_setpoint_w"], 0) + slack
    blind_for = _runs_ms(blind > 0, t)
    late = np.where(blind == 2, blind_for > deadline_ms(site, frozen=True),
                    blind_for > deadline_ms(site))
    rules["blind_discharge"] = (blind > 0) & late & (batt > allowed)
    count = 0
    found = []
    for name, bad in rules.items():
        idx = np.flatnonzero(bad)
        count += len(idx)
        for i in idx[:first]:
            found.append({"rule": name, "t_s": round(float(t[i]), 3), "battery_w": int(batt[i]),
                          "setpoint_w": int(sp[i]), "grid_w": int(grid[i]), "soc_cpct": int(soc[i])})
    found.sort(key=lambda v: v["t_s"])
    return count, found[:first]
