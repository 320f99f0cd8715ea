"""`cabctl site`: the site coordinator for N cabinets on one site meter.

It reads every cabinet's telemetry from its console (a serial port, or the
fleet rig's relay socket `unix:PATH`) and, every --every-s, gives each
cabinet its shares of the site's correction through the authenticated
`share` command: dis_pm (while discharging) and cha_pm (while charging), per
mille, summing to 1000 over the cabinets that run. Discharge shares follow
available power x energy (discharge_max_w x (SoC - reserve)**2), charge
shares charge_max_w x (soc_max - SoC)**2: the fuller cabinets discharge more and the
emptier charge more, so SoC converges across the fleet, and a cabinet that
is silent, in SAFE or disarmed gets 0 while the others take its part at
once. Each cabinet keeps a share for its coord_timeout_ms; when the
coordinator goes silent the cabinets fall back to their own fleet_share_pm
(cabinet/fleet.py). The coordinator never touches the PCS nor the cap.

On SIGTERM/Ctrl-C it prints one JSON summary line (rounds, commands sent,
accepted, rejected, per cabinet the last shares).
"""
import json
import select
import signal
import socket
import sys
import time

from . import cmd as cmdline
from .fw import config as fw_config
from .telemetry import StreamDecoder, load_schema

RUNNING = (1, 2)          # controller states run, degraded


def shares(cabs, reserve_cpct, soc_max_cpct, soc_exp=2):
    """cabs: {name: latest frame or None (silent/unusable)} -> {name: (dis_pm, cha_pm)}.

    Weights: power x energy**soc_exp (1: in proportion to the energy; 2: the
    SoC spread closes faster). Integer per mille; each column sums to at
    most 1000 (floors), to 0 for cabinets that are not running."""
    run = {n: f for n, f in cabs.items() if f is not None and f.get("state") in RUNNING}
    wd = {n: max(0, f["discharge_max_w"]) * max(0, f["soc_cpct"] - reserve_cpct) ** soc_exp
          for n, f in run.items()}
    wc = {n: max(0, f["charge_max_w"]) * max(0, soc_max_cpct - f["soc_cpct"]) ** soc_exp
          for n, f in run.items()}
    out = {n: [0, 0] for n in cabs}
    for col, w in ((0, wd), (1, wc)):
        total = sum(w.values())
        for n in run:
            out[n][col] = 1000 * w[n] // total if total else 1000 // len(run)
    return {n: tuple(v) for n, v in out.items()}


class Endpoint:
    """A cabinet console: NAME=unix:PATH (a relay socket) or NAME=DEVICE (serial)."""

    def __init__(self, spec):
        name, sep, where = spec.partition("=")
        if not sep or not name or not where:
            raise ValueError(f"--cabinet {spec!r}: expected NAME=unix:PATH or NAME=DEVICE")
        self.name, self.where = name, where
        if where.startswith("unix:"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(where[5:])
            self.sock.setblocking(False)
            self.port = None
        else:
            import serial
            self.port = serial.Serial(where, 115200, timeout=0)
            self.sock = None
        self.dec = StreamDecoder(load_schema())
        self.latest = None
        self.latest_at = 0.0
        self.sent = self.accepted = self.rejected = 0
        self.pending = {}                # command id -> time sent
        self.last = (None, None)
        self.last_error = ""

    def fileno(self):
        return self.sock.fileno() if self.sock else self.port.fileno()

    def read(self):
        try:
            data = self.sock.recv(65536) if self.sock else self.port.read(65536)
        except BlockingIOError:
            return
        if self.sock and not data:
            raise ConnectionError(f"{self.name}: console closed")
        now = time.monotonic()
        for rec in self.dec.feed(data):
            if "event" not in rec:
                self.latest, self.latest_at = rec, now
            elif rec["event"] == "command_result" and rec.get("id") in self.pending:
                del self.pending[rec["id"]]
                if rec.get("ok"):
                    self.accepted += 1
                else:
                    self.rejected += 1
                    self.last_error = rec.get("message", "")

    def write(self, data):
        if self.sock:
            self.sock.setblocking(True)
            try:
                self.sock.sendall(data)
            finally:
                self.sock.setblocking(False)
        else:
            self.port.write(data)

    def send_share(self, dis_pm, cha_pm, key):
        cid, data = cmdline.line("share", {"dis_pm": dis_pm, "cha_pm": cha_pm}, key)
        self.write(data)
        self.pending[cid] = time.monotonic()
        self.sent += 1
        self.last = (dis_pm, cha_pm)

    def summary(self):
        f = self.latest or {}
        return {"sent": self.sent, "accepted": self.accepted, "rejected": self.rejected,
                "dis_pm": self.last[0], "cha_pm": self.last[1], "soc_cpct": f.get("soc_cpct"),
                "last_error": self.last_error, **self.dec.stats()}


def add_arguments(p):
    p.add_argument("--cabinet", action="append", required=True, metavar="NAME=PORT",
                   help="a cabinet's console: NAME=/dev/ttyACM0, or NAME=unix:PATH (fleet rig "
                        "relay); repeat for every cabinet on the site meter")
    p.add_argument("--key-file", required=True, help="the cabinets' device key (32 bytes)")
    p.add_argument("--every-s", type=float, default=0.5,
                   help="seconds between share rounds (keep well below coord_timeout_ms)")
    p.add_argument("--stale-s", type=float, default=1.0,
                   help="a cabinet without a frame for this long gets share 0")
    p.add_argument("--reserve-cpct", type=int, default=fw_config.SPEC["reserve_cpct"][0],
                   help="the cabinets' reserve_cpct (no discharge share below it)")
    p.add_argument("--soc-max-cpct", type=int, default=fw_config.SPEC["soc_max_cpct"][0])
    p.add_argument("--soc-exp", type=int, default=2, choices=(0, 1, 2, 3),
                   help="share weight = power x (energy left)**EXP: 0 power only, 1 in "
                        "proportion to the energy, 2 (default) closes SoC gaps faster")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: run on)")


def run(args):
    key = open(args.key_file, "rb").read()
    try:
        eps = [Endpoint(s) for s in args.cabinet]
    except (ValueError, OSError) as e:
        sys.exit(f"cabctl site: {e}")
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    rounds = 0
    t_start = time.monotonic()
    next_round = t_start + args.every_s
    try:
        while not stop and (not args.seconds or time.monotonic() - t_start < args.seconds):
            wait = max(0.0, next_round - time.monotonic())
            r, _, _ = select.select(eps, [], [], wait)
            for ep in r:
                ep.read()
            now = time.monotonic()
            if now < next_round:
                continue
            next_round += args.every_s
            if next_round < now:
                next_round = now + args.every_s        # fell behind: no burst
            cabs = {ep.name: ep.latest if now - ep.latest_at <= args.stale_s else None
                    for ep in eps}
            sh = shares(cabs, args.reserve_cpct, args.soc_max_cpct, args.soc_exp)
            for ep in eps:
                ep.send_share(*sh[ep.name], key)
            rounds += 1
            if rounds % 20 == 1:
                print(f"cabctl site: round {rounds}: " + ", ".join(
                    f"{n} {d}/{c} pm" for n, (d, c) in sh.items()), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    except ConnectionError as e:
        print(f"cabctl site: {e}", file=sys.stderr)
    print(json.dumps({"rounds": rounds, "seconds": round(time.monotonic() - t_start, 3),
                      "cabinets": {ep.name: ep.summary() for ep in eps}}), flush=True)
    return 0
