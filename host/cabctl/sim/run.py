"""The offline loop: a controller and the emulator's plant model, period by period.

Timing: the profile's load changes on its own sample grid, and the firmware's
cycles fall at some phase of it; on average a change is seen half a period
later. So the plant steps in half periods: in the first half the load has
just changed and the PCS still follows the old setpoint; then the controller
reads the meter and the PCS (values of that instant) and its new setpoint
drives the PCS's ramp and lag through the second half. Figures are computed
on the half-period samples.
"""
from dataclasses import dataclass, replace

import numpy as np

from ..plant.model import Plant
from .controllers import Measured


@dataclass
class Trace:
    period_s: float
    t_s: np.ndarray
    load_w: np.ndarray
    grid_w: np.ndarray
    battery_w: np.ndarray
    setpoint_w: np.ndarray
    soc_cpct: np.ndarray
    charge_max_w: np.ndarray
    discharge_max_w: np.ndarray


def simulate(profile, plant_cfg, controller, period_ms, seconds):
    period_ms = int(period_ms)
    half = period_ms / 2
    cfg = replace(plant_cfg, step_ms=half, meter_interval_ms=half, pcs_interval_ms=half,
                  revert_s_default=10**9)
    dt = half / 1000
    at = profile.at
    # Plant.step(dt) draws load(t) at the end of its step: look up the sample
    # at the step's start, so a profile sample begins with a first half.
    plant = Plant(cfg, lambda t: at(t - dt))
    plant.enabled = True
    n = int(seconds * 1000 // period_ms)
    cols = {k: np.zeros(2 * n) for k in ("t_s", "load_w", "grid_w", "battery_w", "setpoint_w",
                                         "soc_cpct", "charge_max_w", "discharge_max_w")}
    t, load, grid, batt, setp, soc, cmax, dmax = cols.values()
    step = controller.step
    sp = 0
    for j in range(2 * n):
        if j & 1:
            cha, dis = plant.limits()
            m = Measured(int(plant.meter_grid_w), int(plant.pcs_battery_w), plant.soc_cpct,
                         int(cha), int(dis), int(plant.t // 60) % 1440, period_ms,
                         int(round(plant.t * 1000)))
            sp = step(m)
            plant.setpoint_w = sp
        plant.step(dt)
        t[j] = plant.t
        load[j] = plant.load_w
        grid[j] = plant.grid_w
        batt[j] = plant.battery_w
        setp[j] = sp
        soc[j] = plant.soc_cpct
        cha, dis = plant.limits()
        cmax[j] = cha
        dmax[j] = dis
    return Trace(dt, **cols)


def no_battery(profile, period_ms, seconds):
    """The `none` controller needs no plant: grid = load."""
    n = 2 * int(seconds * 1000 // period_ms)             # half periods, as simulate()
    t = (np.arange(n) + 1) * period_ms / 2000
    load = np.array([profile.at(x - period_ms / 2000) for x in t])
    z = np.zeros(n)
    nan = np.full(n, np.nan)                  # no battery, no SoC
    return Trace(period_ms / 2000, t, load, load.copy(), z, z, nan, z, z)
