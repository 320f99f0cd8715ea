"""`cabctl plant`: the emulated meter (unit 1) and PCS (unit 2) over one model.

Threads: a physics loop stepping the model in real time at 1/step_ms, and
umodbus's RTU server answering on the bus. Every request is served under the
model lock: registers are refreshed from the model before and writes are
applied after, so a two-register value is never torn. The physics loop writes
the ground truth (what really flowed) to CSV at every step.
"""
import csv
import json
import sys
import threading
import time

from umodbus.server.serial import get_server
from umodbus.server.serial.rtu import RTUServer

from .. import regmap
from .model import Plant

METER_SF = {"W_SF": 3, "V_SF": -1, "Hz_SF": -2}     # a 25 MW site needs W_SF >= 3
PCS_SF = {"W_SF": 0, "SoC_SF": -1}
TRUTH_COLUMNS = ["t_s", "load_w", "grid_w", "battery_w", "setpoint_w", "soc_cpct",
                 "meter_grid_w", "reverted"]


def _pick(sf, mapdef):
    return {k: v for k, v in sf.items() if k in mapdef["points"]}


class LockedRTUServer(RTUServer):
    io = None           # the PlantIO, attached after get_server() builds us

    def process(self, request_adu):
        with self.io.lock:
            self.io.refresh()
            resp = super().process(request_adu)
            self.io.apply()
            self.io.requests += 1
            return resp


class PlantIO:
    """Glue between the model and the two register files."""

    def __init__(self, plant: Plant, meter_map="meter_sunspec", pcs_map="pcs_sunspec",
                 meter_unit=1, pcs_unit=2):
        self.plant = plant
        self.lock = threading.Lock()
        m, p = regmap.load(meter_map), regmap.load(pcs_map)
        self.meter = regmap.Registers(m, _pick(METER_SF, m))
        self.pcs = regmap.Registers(p, _pick(PCS_SF, p))
        self.meter_unit, self.pcs_unit = meter_unit, pcs_unit
        self.requests = 0
        self.pcs.set("WSetRvrtTms", plant.cfg.revert_s_default)

    def refresh(self):
        pl = self.plant
        self.meter.set("grid_w", pl.meter_grid_w)
        if "voltage_dv" in self.meter.points:
            self.meter.set("voltage_dv", 2400)
        if "freq_mhz" in self.meter.points:
            self.meter.set("freq_mhz", 60000)
        cha, dis = pl.limits()
        self.pcs.set("W", pl.pcs_battery_w)
        self.pcs.set("SoC", pl.soc_cpct)
        self.pcs.set("WChaMax", cha)
        self.pcs.set("WDisChaMax", dis)
        self.pcs.set("Evt1", 0)

    def apply(self):
        pl = self.plant
        pl.enabled = self.pcs.get("WSetEna") == 1
        pl.setpoint_w = self.pcs.get("WSet")
        pl.revert_s = self.pcs.get("WSetRvrtTms") or pl.cfg.revert_s_default
        pl.write_heartbeat(self.pcs.get("CtrlHb"))

    def build_server(self, port):
        server = get_server(LockedRTUServer, port)
        server.io = self
        for unit, regs in ((self.meter_unit, self.meter), (self.pcs_unit, self.pcs)):
            for fc in (3, 4):
                addrs = regs.addresses(fc)
                if not addrs:
                    continue
                server.route(slave_ids=[unit], function_codes=[fc], addresses=addrs)(
                    lambda slave_id, function_code, address, r=regs: r.words[address])
            writable = [a for n, p in regs.points.items() if p.get("access") == "rw"
                        for a in range(p["addr"], p["addr"] + regmap.WIDTH[p["type"]])]
            if writable:
                server.route(slave_ids=[unit], function_codes=[6, 16], addresses=writable)(
                    lambda slave_id, function_code, address, value, r=regs:
                    r.words.__setitem__(address, value))
        return server


def run_physics(io: PlantIO, seconds, truth_path, stop: threading.Event):
    pl = io.plant
    dt = pl.cfg.step_ms / 1000
    with open(truth_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRUTH_COLUMNS)
        t0 = time.monotonic()
        k = 0
        while not stop.is_set() and (seconds <= 0 or pl.t < seconds):
            k += 1
            delay = t0 + k * dt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with io.lock:
                pl.step(dt)
                w.writerow([f"{pl.t:.3f}", round(pl.load_w), round(pl.grid_w),
                            round(pl.battery_w), round(pl.setpoint_w if pl.enabled else 0),
                            pl.soc_cpct, round(pl.meter_grid_w), int(pl.reverted)])
    stop.set()


def serve(io: PlantIO, port, seconds, truth_path, ready=None):
    """Run physics and Modbus until `seconds` of plant time (0 = forever)."""
    server = io.build_server(port)
    stop = threading.Event()
    phys = threading.Thread(target=run_physics, args=(io, seconds, truth_path, stop), daemon=True)
    modbus = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.001},
                              daemon=True)
    phys.start()
    modbus.start()
    if ready:
        ready()
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        stop.set()
    server.shutdown()
    phys.join(timeout=2)
    modbus.join(timeout=2)
    return {"requests": io.requests, "plant_s": round(io.plant.t, 3)}


def announce(info: dict):
    """The plant's one line on stdout: where its bus is; everything else goes to stderr."""
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
