"""The fleet rig: one site plant with N PCS, N firmware processes (MicroPython
unix port), optionally the site coordinator (`cabctl site`), judged from the
site's ground truth (fleet_judge).

Each cabinet's console (the firmware's stdin/stdout) is owned here: its
telemetry goes to a Logger (cab<k>/telemetry.csv) and is also relayed to
whoever connects to the unix socket <run>/c<k>.sock, whose bytes (command
lines) go to the firmware's stdin. That is how the coordinator, a separate
process that can be killed, reads the telemetry and sends commands, as it
would through the cabinets' USB consoles on a real site.
"""
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import fleet_judge, truth
from .log import Logger
from .plant.fleet import FIRST_PCS_UNIT
from .rig import RigError, start_plant
from .sil import start_firmware

TEST_KEY = bytes(range(32))        # the rig's device key (tests only)


class Relay:
    """A unix socket where clients read a cabinet's console output and write commands."""

    def __init__(self, path, write):
        self.path = str(path)
        self.write = write                 # bytes -> the firmware's stdin
        self.clients = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(4)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        bufs = {}
        while not self.stop.is_set():
            with self.lock:
                rl = [self.sock] + self.clients
            try:
                r, _, _ = select.select(rl, [], [], 0.1)
            except (OSError, ValueError):
                r = []
            for s in r:
                if s is self.sock:
                    c, _ = self.sock.accept()
                    c.setblocking(False)
                    with self.lock:
                        self.clients.append(c)
                    bufs[c] = b""
                    continue
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self._drop(s)
                    bufs.pop(s, None)
                    continue
                # Whole lines only: a line must not interleave with the rig's own.
                buf = bufs.get(s, b"") + data
                *lines, bufs[s] = buf.split(b"\n")
                for line in lines:
                    self.write(line + b"\n")

    def _drop(self, c):
        with self.lock:
            if c in self.clients:
                self.clients.remove(c)
        c.close()

    def tee(self, data):
        with self.lock:
            clients = list(self.clients)
        for c in clients:
            try:
                c.sendall(data)
            except (BlockingIOError, OSError):
                self._drop(c)          # a client that cannot keep up is cut off

    def close(self):
        self.stop.set()
        self.thread.join(timeout=1)
        with self.lock:
            for c in self.clients:
                c.close()
            self.clients = []
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class Cabinet:
    def __init__(self, k, folder, site):
        self.k = k
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.site = site
        self.logger = Logger(self.dir / "telemetry.csv", quiet=True)
        self.stdin_lock = threading.Lock()
        self.fw = None
        self.relay = None

    def send(self, data):
        with self.stdin_lock:
            try:
                self.fw.stdin.write(data)
                self.fw.stdin.flush()
            except (OSError, ValueError):
                pass                       # the firmware is gone; the rig reports it


class FleetRig:
    def __init__(self, run_dir, n=4, site=None, per_cabinet=None, plant=None, profile=None,
                 key=TEST_KEY, coordinator_args=()):
        """site: overrides for every cabinet; per_cabinet[k]: more for cabinet k
        (fleet_share_pm defaults to 1000 // n); plant: PlantConfig fields (and
        "pcs": per-PCS overrides)."""
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = n
        self.key = key
        self.profile = profile
        self.plant_cfg = dict(plant or {})
        self.coordinator_args = list(coordinator_args)
        per = list(per_cabinet or [])
        self.sites = []
        for k in range(n):
            s = {"fleet_share_pm": 1000 // n}
            s.update(site or {})
            s.update(per[k] if k < len(per) else {})
            s["pcs_unit"] = FIRST_PCS_UNIT + k
            self.sites.append(s)
        # Unix socket paths are limited to ~100 bytes: a short folder of their own.
        self.sock_dir = Path(tempfile.mkdtemp(prefix="fleet-"))
        self.cabs = [Cabinet(k, self.dir / f"cab{k}", self.sites[k]) for k in range(n)]
        self.errors = []
        self.coord = None
        self.coord_killed_at = None

    def socket_path(self, k):
        return self.sock_dir / f"c{k}.sock"

    def _start_plant(self, seconds):
        cmd = [sys.executable, "-m", "cabctl", "plant", "--pcs", str(self.n), "--seconds",
               str(seconds), "--truth", str(self.dir / "truth.csv")]
        if self.plant_cfg:
            (self.dir / "plant.json").write_text(json.dumps(self.plant_cfg))
            cmd += ["--config", str(self.dir / "plant.json")]
        if self.profile:
            cmd += ["--profile", str(self.profile)]
        self.plant, self.plant_err, self.plant_info = start_plant(cmd, self.dir)

    def _pump(self, cab, stop):
        fd = cab.fw.stdout.fileno()
        while not stop.is_set():
            r, _, _ = select.select([fd], [], [], 0.1)
            if not r:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            cab.logger.feed(data)
            cab.relay.tee(data)

    def start_coordinator(self):
        cmd = [sys.executable, "-m", "cabctl", "site", "--key-file", str(self.dir / "key.bin")]
        for k in range(self.n):
            cmd += ["--cabinet", f"cab{k}=unix:{self.socket_path(k)}"]
        cmd += self.coordinator_args
        self.coord_out = open(self.dir / "coordinator.json", "w")
        self.coord_err = open(self.dir / "coordinator.log", "w")
        self.coord = subprocess.Popen(cmd, stdout=self.coord_out, stderr=self.coord_err)

    def kill_coordinator(self):
        self.coord.kill()
        self.coord.wait()
        self.coord_killed_at = time.monotonic() - self.plant_info["t0_monotonic"]

    def run(self, seconds, coordinate=False, kill_coordinator_at=None, during=None):
        """Plant + N firmwares (+ coordinator) for `seconds`; the summary dict.

        kill_coordinator_at: SIGKILL the coordinator this many seconds in.
        during(rig, t): called every 0.1 s from the main loop."""
        (self.dir / "key.bin").write_bytes(self.key)
        self._start_plant(seconds + 5)
        stop = threading.Event()
        pumps = []
        for cab, bus in zip(self.cabs, self.plant_info["buses"]):
            site_path = cab.dir / "site.json"
            site_path.write_text(json.dumps(cab.site, indent=1))
            key_path = cab.dir / "key.bin"
            key_path.write_bytes(self.key)
            cab.err = open(cab.dir / "firmware.log", "w")
            cab.fw = start_firmware(bus, site_path, stderr=cab.err, key_path=key_path)
            cab.relay = Relay(self.socket_path(cab.k), cab.send)
            t = threading.Thread(target=self._pump, args=(cab, stop), daemon=True)
            t.start()
            pumps.append(t)
        if coordinate:
            self.start_coordinator()
        t_start = time.monotonic()
        while time.monotonic() - t_start < seconds:
            time.sleep(0.1)
            el = time.monotonic() - t_start
            if (kill_coordinator_at is not None and self.coord is not None
                    and self.coord_killed_at is None and el >= kill_coordinator_at):
                self.kill_coordinator()
            if during:
                during(self, el)
            dead = [c.k for c in self.cabs if c.fw.poll() is not None]
            if dead:
                self.errors.append(f"firmware of cabinet(s) {dead} exited early")
                break
            if self.plant.poll() is not None:
                self.errors.append(f"plant exited early with {self.plant.returncode}")
                break
        t_end = time.monotonic()
        coord_summary = self._stop_coordinator()
        for cab in self.cabs:
            cab.fw.terminate()
        for cab in self.cabs:
            try:
                cab.fw.wait(timeout=5)
            except subprocess.TimeoutExpired:
                cab.fw.kill()
        stop.set()
        for t in pumps:
            t.join(timeout=3)
        for cab in self.cabs:
            cab.relay.close()
            cab.logger.close()
            cab.err.close()
        self.plant.terminate()
        self.plant.wait(timeout=10)
        self.plant_err.close()
        try:
            os.rmdir(self.sock_dir)
        except OSError:
            pass
        return self._summary(t_end, coord_summary)

    def _stop_coordinator(self):
        if self.coord is None:
            return None
        if self.coord.poll() is None:
            self.coord.terminate()
            try:
                self.coord.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.coord.kill()
        self.coord_out.close()
        self.coord_err.close()
        try:
            return json.loads((self.dir / "coordinator.json").read_text().strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None

    def command(self, k, cmd, args=None, timeout=3.0):
        """An authenticated command to cabinet k while run() goes (from `during`)."""
        from . import cmd as cmdline
        cab = self.cabs[k]
        cid, data = cmdline.line(cmd, args, self.key)
        seen = len(cab.logger.events)
        cab.send(data)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for ev in cab.logger.events[seen:]:
                if ev.get("event") == "command_result" and ev.get("id") == cid:
                    return ev
            time.sleep(0.02)
        raise RigError(f"cabinet {k}: no reply to {cmd!r} within {timeout} s")

    def _summary(self, t_end, coord_summary):
        t0 = self.plant_info["t0_monotonic"]
        s = {"run_dir": str(self.dir), "cabinets": self.n, "cap_w": self.sites[0].get(
             "cap_w", 18_000_000), "profile": self.plant_info.get("profile")}
        firsts = [c.logger.first_frame_monotonic for c in self.cabs]
        if None in firsts:
            self.errors.append("a cabinet sent no telemetry")
        try:
            tr = truth.load(self.dir / "truth.csv")
        except (OSError, ValueError) as e:
            self.errors.append(f"ground truth unreadable: {e}")
            tr = None
        if tr is not None and None not in firsts:
            # Judged once every cabinet runs (the last to boot has sent a frame) + 1 s.
            start = max(firsts) - t0 + 1.0
            judged = truth.window(tr, start, t_end - t0)
            s.update(truth.metrics(judged, s["cap_w"]))
            s.update(fleet_judge.judge(judged, self.sites))
            s["battery_w_by_pcs_max"] = [int(judged[f"battery_w_{k}"].max()) for k in range(self.n)]
            s["soc_cpct_by_pcs_end"] = [int(judged[f"soc_cpct_{k}"][-1]) for k in range(self.n)]
        per = []
        for c in self.cabs:
            fr = c.logger.frames
            last = fr[-1] if fr else {}
            ev = c.logger.events
            per.append({"cycles": last.get("seq", 0), "late_cycles": last.get("late_cycles", 0),
                        "max_cycle_us": max((f["cycle_us"] for f in fr), default=0),
                        "state": last.get("state"),
                        "shares_accepted": sum(1 for e in ev if e.get("event") == "command_result"
                                               and e.get("ok") and str(e.get("message", ""))
                                               .startswith("share")),
                        "share_lapsed": sum(1 for e in ev if e.get("event") == "share_lapsed"),
                        **c.logger.dec.stats()})
        s["per_cabinet"] = per
        s["coordinator"] = coord_summary
        s["coordinator_killed_at_s"] = self.coord_killed_at
        s["errors"] = self.errors
        s["ok"] = not self.errors
        (self.dir / "summary.json").write_text(json.dumps(s, indent=1))
        return s
