"""Offline: N cabinets (the firmware's engine and fleet share, on CPython) on the
fleet plant (plant/fleet.py: one site meter, N PCS with lag and ramp), each
cabinet cycling at its own phase. The trace has the fleet truth's columns, so
fleet_judge judges it like a HIL run.

    tr = simulate_fleet(profile, [PlantConfig()] * 4, [site] * 4, seconds=60)
"""
import numpy as np

from ..fw import config as fw_config
from ..fw import dispatch
from ..plant.fleet import FleetPlant, columns
from cabinet import fleet          # importable once ..fw put the firmware on the path


def simulate_fleet(profile, plant_cfgs, sites, seconds, period_ms=50, step_ms=5, phases_ms=None,
                   coordinator=None):
    """sites: site-config overrides per cabinet. phases_ms[k]: when in each
    period cabinet k runs, a multiple of step_ms (default: spread evenly).
    coordinator: {"every_ms", "reserve_cpct", "soc_max_cpct", "soc_exp"} to
    send `cabctl site`'s shares (computed from the PCS's state, as its
    telemetry reports it) to every cabinet that often. Returns truth columns."""
    n = len(plant_cfgs)
    cfgs = [fw_config.validate(dict(s, period_ms=period_ms)) for s in sites]
    engines = [dispatch.Engine(c) for c in cfgs]
    shares = [fleet.Share(c) for c in cfgs]
    site = FleetPlant(plant_cfgs, profile.at)
    for u in site.units:
        u.enabled = True
        u.revert_s = 10 ** 9
    if phases_ms is None:
        phases_ms = [k * period_ms // n // step_ms * step_ms for k in range(n)]
    phases = [p % period_ms for p in phases_ms]
    steps = int(seconds * 1000 // step_ms)
    rows = []
    for j in range(steps):
        t_ms = j * step_ms
        if coordinator and t_ms % coordinator["every_ms"] == 0:
            _coordinate(coordinator, site.units, shares)
        for k in range(n):
            if t_ms % period_ms == phases[k]:
                u = site.units[k]
                cha, dis = u.limits()
                args = (int(site.meter_grid_w), int(u.pcs_battery_w), u.soc_cpct, int(cha),
                        int(dis), 0, int(site.t // 60) % 1440, dispatch.NO_LIMIT, period_ms)
                s = shares[k]
                if s.active():
                    s.update(u.soc_cpct)
                    u.setpoint_w = s.step(engines[k], *args, 0)
                else:
                    u.setpoint_w = engines[k].step(*args)
        site.step(step_ms / 1000)
        rows.append(site.row())
    a = np.array(rows, dtype=float)
    return {c: a[:, i] for i, c in enumerate(columns(n))}


def _coordinate(c, units, shares):
    from ..site import shares as site_shares
    frames = {}
    for k, u in enumerate(units):
        cha, dis = u.limits()
        frames[k] = {"state": 1, "soc_cpct": u.soc_cpct, "charge_max_w": int(cha),
                     "discharge_max_w": int(dis)}
    sh = site_shares(frames, c["reserve_cpct"], c["soc_max_cpct"], c.get("soc_exp", 2))
    for k, s in enumerate(shares):
        s.coordinate(*sh[k])
