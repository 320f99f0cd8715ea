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
    # Site runs only (outage, PV, genset; see sim/site.py), else None.
    pv_w: np.ndarray = None
    genset_w: np.ndarray = None
    unserved_w: np.ndarray = None
    grid_up: np.ndarray = None
    islanded: np.ndarray = None
    genset_cmd: np.ndarray = None
    site_flags: np.ndarray = None


SITE_COLS = ("pv_w", "genset_w", "unserved_w", "grid_up", "islanded", "genset_cmd", "site_flags")


def simulate(profile, plant_cfg, controller, period_ms, seconds, outage=None):
    """outage: a plant.faults.Fault (grid-outage) or None. A controller with
    `outputs()` (sim/site.CabinetSite) also reads the site's meters and drives
    the PCS's connect point, the genset and the PV limit, and the trace gets
    the site's columns."""
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
    site = hasattr(controller, "outputs")
    if site:
        cols.update({k: np.zeros(2 * n) for k in SITE_COLS})
        pv, gen, unserved, up, island, gen_cmd, flags = (cols[k] for k in SITE_COLS)
    step = controller.step
    sp = 0
    for j in range(2 * n):
        if j & 1:
            cha, dis = plant.limits()
            m = Measured(int(plant.meter_grid_w), int(plant.pcs_battery_w), plant.soc_cpct,
                         int(cha), int(dis), int(plant.t // 60) % 1440, period_ms,
                         int(round(plant.t * 1000)))
            if site:
                m.voltage_dv, m.freq_mhz = plant.meter_v_dv, plant.meter_f_mhz
                m.islanded, m.pv_w = plant.islanded, int(plant.pv_w)
            sp = step(m)
            plant.setpoint_w = sp
            if site:
                plant.connect_cmd, plant.genset_cmd, plant.pv_limit_w = controller.outputs()
        if outage is not None:
            # As the emulator's server: the fault is looked up at the step's start.
            plant.grid_up = not outage.active(plant.t)
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
        if site:
            pv[j] = plant.pv_w
            gen[j] = plant.genset_w
            unserved[j] = plant.unserved_w
            up[j] = plant.grid_up
            island[j] = plant.islanded
            gen_cmd[j] = plant.genset_cmd
            flags[j] = controller.site.flags
    return Trace(dt, **cols)


def no_battery(profile, period_ms, seconds):
    """The `none` controller needs no plant: grid = load."""
    n = 2 * int(seconds * 1000 // period_ms)             # half periods, as simulate()
    t = (np.arange(n) + 1) * period_ms / 2000
    load = np.array([profile.at(x - period_ms / 2000) for x in t])
    z = np.zeros(n)
    nan = np.full(n, np.nan)                  # no battery, no SoC
    return Trace(period_ms / 2000, t, load, load.copy(), z, z, nan, z, z)
