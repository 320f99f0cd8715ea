"""A site with N PCS behind one grid connection and one site meter.

grid = load - sum(battery_k). Each PCS is the single-cabinet model
(model.Plant: lag, ramp, limits, SoC, heartbeat reversion) with no load of
its own; the site meter snapshots the site's grid at its own update rate.

Modbus RTU has one master per bus, and every cabinet's controller is a
master, so each cabinet gets its own bus (a pty): on it the site meter (unit
1, the same reading on every bus: a meter with several ports, or one meter
per cabinet at the same point of the feeder) and that cabinet's PCS (unit
10 + k, its own id). One physics thread, one RTU server thread per bus, one
lock over all of them. No grid outage, PV or genset here (single-cabinet
plant only).
"""
import csv
import sys
import threading
import time
from dataclasses import replace

from .faults import Schedule
from .model import Plant
from .server import PlantIO

PER_PCS = ["battery_w", "setpoint_w", "soc_cpct", "charge_max_w", "discharge_max_w", "reverted"]
SITE_COLUMNS = ["t_s", "load_w", "grid_w", "battery_w", "setpoint_w", "soc_cpct", "meter_grid_w",
                "reverted", "charge_max_w", "discharge_max_w", "meter_blind", "grid_up"]


def columns(n):
    return SITE_COLUMNS + [f"{c}_{k}" for k in range(n) for c in PER_PCS]


class FleetPlant:
    def __init__(self, cfgs, load):
        """cfgs: one PlantConfig per PCS (the first one's meter_interval_ms
        is the site meter's); load: t -> W."""
        self.cfgs = list(cfgs)
        self.units = [Plant(c, lambda t: 0.0) for c in self.cfgs]
        self.load = load
        self.t = 0.0
        self.load_w = load(0.0)
        self.grid_w = self.load_w
        self.meter_grid_w = self.grid_w
        self._next_meter = 0.0
        self.meter_interval_s = self.cfgs[0].meter_interval_ms / 1000
        for u in self.units:
            u.meter_grid_w = self.meter_grid_w

    def step(self, dt):
        self.t += dt
        self.load_w = self.load(self.t)
        for u in self.units:
            u.step(dt)
        self.grid_w = self.load_w - sum(u.battery_w for u in self.units)
        if self.t >= self._next_meter:
            self.meter_grid_w = self.grid_w
            self._next_meter += self.meter_interval_s
        for u in self.units:
            u.meter_grid_w = self.meter_grid_w      # what every bus's meter serves

    def row(self):
        us = self.units
        per = []
        for u in us:
            cha, dis = u.limits()
            per += [round(u.battery_w), round(u.setpoint_w if u.enabled else 0), u.soc_cpct,
                    round(cha), round(dis), int(u.reverted)]
        n = len(PER_PCS)
        col = lambda i: [per[k * n + i] for k in range(len(us))]
        return ([f"{self.t:.3f}", round(self.load_w), round(self.grid_w), sum(col(0)),
                 sum(col(1)), min(col(2)), round(self.meter_grid_w), int(any(col(5))),
                 sum(col(3)), sum(col(4)), 0, 1] + per)


def fleet_configs(base, n, per_pcs=()):
    """n PlantConfigs: base, with per_pcs[k] overrides (dicts) where given."""
    out = []
    for k in range(n):
        over = per_pcs[k] if k < len(per_pcs) else {}
        out.append(replace(base, **over))
    return out


FIRST_PCS_UNIT = 10      # PCS k is unit 10 + k (3 and 4 are the genset's and PV's)


def build(fleet, first_pcs_unit=FIRST_PCS_UNIT):
    """One PlantIO per PCS, all on one lock; PCS k answers as unit first_pcs_unit + k."""
    lock = threading.Lock()
    ios = []
    for k, u in enumerate(fleet.units):
        io = PlantIO(u, pcs_unit=first_pcs_unit + k, faults=Schedule())
        io.lock = lock
        ios.append(io)
    return lock, ios


def run_physics(fleet, lock, seconds, truth_path, stop):
    dt = fleet.cfgs[0].step_ms / 1000
    with open(truth_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns(len(fleet.units)))
        t0 = time.monotonic()
        k = 0
        while not stop.is_set() and (seconds <= 0 or fleet.t < seconds):
            k += 1
            delay = t0 + k * dt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with lock:
                fleet.step(dt)
                w.writerow(fleet.row())
    stop.set()


def serve(fleet, ports, seconds, truth_path, ready=None, first_pcs_unit=FIRST_PCS_UNIT):
    """Physics plus one RTU server per port (port k serves the meter and PCS k)."""
    # N servers and the physics share one interpreter: hand the GIL over
    # sooner than the default 5 ms, or a reply may wait behind the others.
    sys.setswitchinterval(0.001)
    lock, ios = build(fleet, first_pcs_unit)
    servers = [io.build_server(p) for io, p in zip(ios, ports)]
    stop = threading.Event()
    threads = [threading.Thread(target=run_physics, args=(fleet, lock, seconds, truth_path, stop),
                                daemon=True)]
    # A request wakes its server at once; the poll interval only paces idle checks.
    threads += [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05},
                                 daemon=True) for s in servers]
    for t in threads:
        t.start()
    if ready:
        ready()
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        stop.set()
    for s in servers:
        s.shutdown()
    for t in threads:
        t.join(timeout=2)
    return {"requests": [io.requests for io in ios], "plant_s": round(fleet.t, 3)}
