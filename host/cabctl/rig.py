"""The test rig: plant process + firmware + telemetry logger, judged from ground truth.

Used by `cabctl demo` and by hil_tests/. Targets:
- "unix": the firmware on the MicroPython unix port, bus = a pty the plant creates;
- "port:DEV": a real board whose telemetry arrives on serial DEV, with the plant
  serving a real RS-485 adapter given as bus_port.
"""
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import invariants, truth
from .log import Logger
from .paths import RUNS
from .sil import start_firmware


def new_run_dir(base=RUNS, tag="run"):
    d = Path(base) / f"{tag}-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while d.exists():
        n += 1
        d = Path(base) / f"{tag}-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
    d.mkdir(parents=True)
    return d


class RigError(RuntimeError):
    pass


def start_plant(cmd, run_dir):
    """Start `cabctl plant ...`; (process, its stderr file, its ready line as a dict)."""
    err = open(run_dir / "plant.log", "w")
    plant = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    line = plant.stdout.readline()
    if not line:
        plant.wait(timeout=5)
        raise RigError(f"plant did not start (exit {plant.returncode}); "
                       f"see {run_dir / 'plant.log'}")
    return plant, err, json.loads(line)


class Rig:
    def __init__(self, run_dir, site=None, plant=None, target="unix", bus_port=None,
                 quiet=True, out=sys.stderr, profile=None, faults=(), key=None, launch=None):
        self.dir = Path(run_dir)
        self.launch = launch            # replaces sil.start_firmware (unix target), e.g. the soak's probe
        self.key = key                  # device key bytes (written as key.bin) or None
        self.faults = list(faults)      # plant fault specs, KIND[@START[+DURATION]]
        self.profile = profile          # load profile name or file (None: the plant's default)
        self.site = dict(site or {})
        self.plant_cfg = dict(plant or {})
        self.target = target
        self.bus_port = bus_port
        self.logger = Logger(self.dir / "telemetry.csv", quiet=quiet, out=out)
        self.errors = []

    def _start_plant(self, seconds):
        cmd = [sys.executable, "-m", "cabctl", "plant", "--seconds", str(seconds),
               "--truth", str(self.dir / "truth.csv")]
        if self.plant_cfg:
            (self.dir / "plant.json").write_text(json.dumps(self.plant_cfg))
            cmd += ["--config", str(self.dir / "plant.json")]
        if self.bus_port:
            cmd += ["--port", self.bus_port]
        if self.profile:
            cmd += ["--profile", str(self.profile)]
        for f in self.faults:
            cmd += ["--fault", f]
        self.plant, self.plant_err, self.plant_info = start_plant(cmd, self.dir)

    def run(self, seconds, kill_at=None):
        """Run plant + firmware for `seconds`; return the summary dict.

        kill_at: SIGKILL the firmware this many seconds in (the plant runs on),
        to show what the PCS does when its controller dies."""
        (self.dir / "site.json").write_text(json.dumps(self.site, indent=1))
        self._start_plant(seconds + 5)
        fw_err = open(self.dir / "firmware.log", "w")
        stop = threading.Event()
        if self.target == "unix":
            key_path = None
            if self.key is not None:
                key_path = self.dir / "key.bin"
                key_path.write_bytes(self.key)
            extra = {"ct_path": self.plant_info["ct"]} if self.plant_info.get("ct") else {}
            self.fw = (self.launch or start_firmware)(self.plant_info["bus"], self.dir / "site.json",
                                                      stderr=fw_err, key_path=key_path, **extra)
            stream = self.fw.stdout
        elif self.target.startswith("port:"):
            import serial
            self.fw = None
            stream = serial.Serial(self.target[5:], 115200, timeout=0.2)
        else:
            raise RigError(f"unknown target {self.target!r} (unix or port:DEV)")
        reader = threading.Thread(target=self._pump, args=(stream, stop), daemon=True)
        t_start = time.monotonic()
        reader.start()
        crashed = None
        self.killed_at = None
        while time.monotonic() - t_start < seconds:
            time.sleep(0.05)
            now = time.monotonic()
            if kill_at is not None and self.killed_at is None and now - t_start >= kill_at:
                self.fw.kill()
                self.fw.wait()
                self.killed_at = now - self.plant_info["t0_monotonic"]   # plant time
                continue
            if self.fw is not None and self.killed_at is None and self.fw.poll() is not None:
                crashed = self.fw.returncode
                break
            if self.plant.poll() is not None:
                self.errors.append(f"plant exited early with {self.plant.returncode}")
                break
        t_end = time.monotonic()
        if self.fw is not None:
            self.fw.terminate()
            try:
                self.fw.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.fw.kill()
        stop.set()
        reader.join(timeout=3)
        self.plant.terminate()
        self.plant.wait(timeout=10)
        self.logger.close()
        fw_err.close()
        self.plant_err.close()
        if crashed == -signal.SIGUSR1:
            self.errors.append(f"firmware watchdog reset (emulated WDT not fed); "
                               f"see {self.dir / 'firmware.log'}")
        elif crashed is not None:
            self.errors.append(f"firmware exited with {crashed}; see {self.dir / 'firmware.log'}")
        return self._summary(t_end)

    def run_in_background(self, seconds, start_s=5.0):
        """run(seconds) in a thread, for tests that talk to the firmware while
        it runs; returns (thread, result dict filled with run()'s summary)
        once the first frames arrived or start_s passed."""
        result = {}
        th = threading.Thread(target=lambda: result.update(self.run(seconds)), daemon=True)
        th.start()
        end = time.monotonic() + start_s
        while not self.logger.frames and time.monotonic() < end:
            time.sleep(0.05)
        return th, result

    def _pump(self, stream, stop):
        if hasattr(stream, "in_waiting"):
            while not stop.is_set():
                data = stream.read(4096)
                if data:
                    self.logger.feed(data)
        else:
            self.logger.pump(stream, stop)

    def send(self, data):
        """Bytes to the firmware's console (unix target)."""
        self.fw.stdin.write(data)
        self.fw.stdin.flush()

    def command(self, cmd, args=None, key=None, counter=None, timeout=3.0, raw=None):
        """Send a command while run() is going (from another thread); its reply event."""
        from . import cmd as cmdline
        cid, data = cmdline.line(cmd, args, key, counter)
        if raw is not None:
            cid, data = None, raw
        seen = len(self.logger.events)
        self.send(data)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for ev in self.logger.events[seen:]:
                if ev.get("event") == "command_result" and (cid is None or ev.get("id") == cid):
                    return ev
            time.sleep(0.02)
        raise RigError(f"no reply to {cmd!r} within {timeout} s")

    def _transitions(self, t0):
        """State changes as the telemetry reported them, on the plant's clock."""
        enums = self.logger.dec.schema["enums"]
        name = lambda kind, i: enums[kind][i] if 0 <= i < len(enums[kind]) else str(i)
        out, prev = [], None
        for f in self.logger.frames:
            st = f.get("state")
            if prev is not None and st != prev:
                out.append({"t_s": round(f["host_time_s"] - t0, 3), "from": name("state", prev),
                            "to": name("state", st), "cause": name("cause", f.get("cause", 0))})
            prev = st
        return out

    def _summary(self, t_end):
        frames = self.logger.frames
        s = {"run_dir": str(self.dir), "cap_w": self.site.get("cap_w", 18_000_000),
             "profile": self.plant_info.get("profile")}
        if not frames:
            self.errors.append("no telemetry frames received")
        t0 = self.plant_info["t0_monotonic"]
        try:
            tr = truth.load(self.dir / "truth.csv")
        except (OSError, ValueError) as e:
            self.errors.append(f"ground truth unreadable: {e}")
            tr = None
        if tr is not None and frames:
            first = self.logger.first_frame_monotonic - t0
            end = self.killed_at if self.killed_at is not None else t_end - t0
            judged = truth.window(tr, first, end)
            s.update(truth.metrics(judged, s["cap_w"]))
            mon = invariants.monitor(truth.window(tr, first, t_end - t0), self.site,
                                     faults=self.faults, killed_at=self.killed_at)
            s.update(mon.summary())
        s["state_transitions"] = self._transitions(t0)
        last = frames[-1] if frames else {}
        s.update({"cycles": last.get("seq", 0), "late_cycles": last.get("late_cycles", 0),
                  "max_cycle_us": max((f["cycle_us"] for f in frames), default=0),
                  "meter_errors": last.get("meter_errors", 0),
                  "pcs_errors": last.get("pcs_errors", 0)})
        s.update(self.logger.dec.stats())
        s["errors"] = self.errors
        s["ok"] = not self.errors
        (self.dir / "summary.json").write_text(json.dumps(s, indent=1))
        return s
