"""`cabctl plant`: the emulated meter (unit 1) and PCS (unit 2) over one model.

Threads: a physics loop stepping the model in real time at 1/step_ms, and
umodbus's RTU server answering on the bus. Every request is served under the
model lock: registers are refreshed from the model before and writes are
applied after, so a two-register value is never torn. The physics loop writes
the ground truth (what really flowed) to CSV at every step.
"""
import csv
import json
import random
import sys
import threading
import time

from umodbus.client.serial.redundancy_check import get_crc
from umodbus.server.serial import get_server
from umodbus.server.serial.rtu import RTUServer

from .. import regmap
from .faults import Schedule
from .model import Plant

METER_SF = {"W_SF": 3, "V_SF": -1, "Hz_SF": -2}     # a 25 MW site needs W_SF >= 3
PCS_SF = {"W_SF": 0, "SoC_SF": -1}
TRUTH_COLUMNS = ["t_s", "load_w", "grid_w", "battery_w", "setpoint_w", "soc_cpct",
                 "meter_grid_w", "reverted", "charge_max_w", "discharge_max_w", "meter_blind",
                 "pv_w", "genset_w", "unserved_w", "grid_up", "genset_cmd"]
PV_UNIT, GENSET_UNIT = 4, 3


def _pick(sf, mapdef):
    return {k: v for k, v in sf.items() if k in mapdef["points"]}


def _by_role(regs):
    return {p["role"]: name for name, p in regs.points.items() if "role" in p}


class LockedRTUServer(RTUServer):
    """umodbus's RTU server with the plant's faults injected on the way out."""
    io = None           # the PlantIO, attached after get_server() builds us

    def process(self, request_adu):
        with self.io.lock:
            self.io.refresh()
            resp = super().process(request_adu)
            self.io.apply(request_adu)
            self.io.requests += 1
            return resp

    def serve_once(self):
        request = self.serial_port.read(256)
        if not request:
            raise ValueError                       # nothing this poll (umodbus's convention)
        io = self.io
        t = io.plant.t
        device = {io.meter_unit: "meter", io.pcs_unit: "pcs", PV_UNIT: "pv",
                  GENSET_UNIT: "genset"}.get(request[0])
        if device in ("pv", "genset") and device not in io.extra:
            return                                 # no such device on this bus
        f = io.faults
        if f.active("disconnect", t) or device is None or f.active("silent", t, device):
            return                                 # nobody answers
        response = self.process(request)
        if f.active("crc", t, device):
            response = response[:-1] + bytes([response[-1] ^ 0x5A])
        elif f.active("wrong_unit", t, device):
            body = bytes([request[0] ^ 0x07]) + response[1:-2]
            response = body + get_crc(body)
        elif f.active("exception", t, device):
            body = bytes([request[0], request[1] | 0x80, 4])
            response = body + get_crc(body)
        elif f.active("late", t, device):
            time.sleep(0.08)                       # well after the master's timeout
        self.respond(response)


class PlantIO:
    """Glue between the model and the two register files, by point role."""

    def __init__(self, plant: Plant, meter_map="meter_sunspec", pcs_map="pcs_sunspec",
                 meter_unit=1, pcs_unit=2, faults=None):
        self.plant = plant
        self.lock = threading.Lock()
        m, p = regmap.load(meter_map), regmap.load(pcs_map)
        self.meter = regmap.Registers(m, _pick(METER_SF, m))
        self.pcs = regmap.Registers(p, _pick(PCS_SF, p))
        self.mrole, self.prole = _by_role(self.meter), _by_role(self.pcs)
        self.meter_unit, self.pcs_unit = meter_unit, pcs_unit
        self.faults = faults or Schedule()
        self.requests = 0
        # Optional devices, present when the plant has them.
        self.extra = {}
        if plant.cfg.pv_peak_w:
            self.extra["pv"] = regmap.Registers(regmap.load("pv_sunspec"))
        if plant.cfg.genset_max_w:
            self.extra["genset"] = regmap.Registers(regmap.load("genset_generic"))
        self.xrole = {k: _by_role(r) for k, r in self.extra.items()}
        if "revert_s" in self.prole:
            self.pcs.set(self.prole["revert_s"], plant.cfg.revert_s_default)
        self._start = self._stop = 0

    def refresh(self):
        pl, f, t = self.plant, self.faults, self.plant.t
        mr, pr = self.mrole, self.prole
        if not f.active("frozen", t, "meter"):
            self.meter.set(mr["grid_w"], pl.meter_grid_w)
            if "voltage_dv" in mr:
                self.meter.set(mr["voltage_dv"], pl.meter_v_dv)
            if "freq_mhz" in mr:
                self.meter.set(mr["freq_mhz"], pl.meter_f_mhz)
        if "pv" in self.extra:
            self.extra["pv"].set(self.xrole["pv"]["pv_w"], pl.pv_w)
        if "genset" in self.extra:
            g, gr = self.extra["genset"], self.xrole["genset"]
            g.set(gr["genset_w"], pl.genset_w)
            g.set(gr["running"], 1 if pl.genset_w > 0 else 0)
        cha, dis = pl.limits()
        self.pcs.set(pr["battery_w"], pl.pcs_battery_w)
        self.pcs.set(pr["soc_cpct"], pl.soc_cpct)
        self.pcs.set(pr["charge_max_w"], cha)
        self.pcs.set(pr["discharge_max_w"], dis)
        self.pcs.set(pr["alarms"], (1 if pl.faulted else 0) | (2 if pl.islanded else 0))

    def apply(self, request):
        """After a write: PCS setpoint, enable and heartbeat; PV limit; genset run."""
        if request[1] not in (6, 16):
            return
        pl = self.plant
        if request[0] == PV_UNIT and "pv" in self.extra:
            lim = self.extra["pv"].get(self.xrole["pv"]["pv_limit_w"])
            pl.pv_limit_w = None if lim >= 0x1FFFFFFF else lim
            return
        if request[0] == GENSET_UNIT and "genset" in self.extra:
            pl.genset_cmd = self.extra["genset"].get(self.xrole["genset"]["start"]) == 1
            return
        if request[0] != self.pcs_unit:
            return
        pl, pr, regs = self.plant, self.prole, self.pcs
        pl.setpoint_w = regs.get(pr["setpoint_w"])
        if "enable" in pr:
            pl.enabled = regs.get(pr["enable"]) == 1
        elif "start" in pr:
            # Command registers: the last one written with 1 wins.
            start, stop = regs.get(pr["start"]), regs.get(pr["stop"])
            pl.enabled = bool(start) and not stop
        if "revert_s" in pr:
            pl.revert_s = regs.get(pr["revert_s"]) or pl.cfg.revert_s_default
        if "connect" in pr:
            pl.connect_cmd = regs.get(pr["connect"])
        if "heartbeat" in pr:
            pl.write_heartbeat(regs.get(pr["heartbeat"]))
        else:
            pl.write_heartbeat(pl.t)             # a watchdog register: any write refreshes

    def build_server(self, port):
        server = get_server(LockedRTUServer, port)
        server.io = self
        units = [(self.meter_unit, self.meter), (self.pcs_unit, self.pcs)]
        units += [({"pv": PV_UNIT, "genset": GENSET_UNIT}[k], r) for k, r in self.extra.items()]
        for unit, regs in units:
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


def run_physics(io: PlantIO, seconds, truth_path, stop: threading.Event, port=None):
    pl = io.plant
    dt = pl.cfg.step_ms / 1000
    rng = random.Random(7)
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
                faults, t = io.faults, pl.t
                pl.faulted = faults.active("fault_bit", t, "pcs")
                pl.stuck = faults.active("stuck", t, "pcs")
                pl.grid_up = not faults.active("outage", t)
                pl.step(dt)
                cha, dis = pl.limits()
                w.writerow([f"{pl.t:.3f}", round(pl.load_w), round(pl.grid_w),
                            round(pl.battery_w), round(pl.setpoint_w if pl.enabled else 0),
                            pl.soc_cpct, round(pl.meter_grid_w), int(pl.reverted),
                            round(cha), round(dis), int(faults.meter_blind(t)),
                            round(pl.pv_w), round(pl.genset_w), round(pl.unserved_w),
                            int(pl.grid_up), int(pl.genset_cmd)])
            if port is not None and k % 20 == 0 and io.faults.active("garbage", pl.t):
                port.write(bytes(rng.randrange(256) for _ in range(7)))   # line noise
    stop.set()


def serve(io: PlantIO, port, seconds, truth_path, ready=None):
    """Run physics and Modbus until `seconds` of plant time (0 = forever)."""
    server = io.build_server(port)
    stop = threading.Event()
    phys = threading.Thread(target=run_physics, args=(io, seconds, truth_path, stop, port),
                            daemon=True)
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
