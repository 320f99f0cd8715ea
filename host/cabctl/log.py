"""`cabctl log`: decode telemetry live from a serial port or a command's stdout."""
import csv
import json
import os
import shlex
import subprocess
import sys
import threading
import time

from .telemetry import StreamDecoder, load_schema



def live_line(rec, dec):
    mw = lambda w: f"{w / 1e6:7.2f}"
    enum = dec.schema["enums"]
    return (f"seq {rec['seq']:>7}  grid {mw(rec['grid_w'])} MW  battery {mw(rec['battery_w'])} MW  "
            f"load {mw(rec['load_w'])} MW  SoC {rec['soc_cpct'] / 100:6.2f} %  "
            f"{_name(enum['state'], rec['state']):>4} {_name(enum['reason'], rec['reason']):>9}  "
            f"cycle {rec['cycle_us'] / 1000:5.1f} ms  late {rec['late_cycles']}  "
            f"lost {dec.lost} corrupt {dec.corrupt}")


def _name(names, i):
    return names[i] if 0 <= i < len(names) else str(i)


class Logger:
    """Feeds bytes to a StreamDecoder, writes CSV rows, prints a live line per second."""

    def __init__(self, csv_path=None, quiet=False, out=sys.stderr):
        self.dec = StreamDecoder(load_schema())
        self.names = [f["name"] for f in self.dec.schema["fields"]]
        self.quiet = quiet
        self.out = out
        self.frames = []
        self._csv_file = open(csv_path, "w", newline="") if csv_path else None
        self._csv = None
        if self._csv_file:
            self._csv = csv.writer(self._csv_file)
            self._csv.writerow(["host_time_s"] + self.names)
        self._last_print = 0.0
        self.first_frame_monotonic = None

    def feed(self, data):
        now = time.monotonic()
        for rec in self.dec.feed(data):
            if self.first_frame_monotonic is None:
                self.first_frame_monotonic = now
            rec["host_time_s"] = now
            self.frames.append(rec)
            if self._csv:
                self._csv.writerow([f"{now:.3f}"] + [rec.get(n, "") for n in self.names])
            if not self.quiet and now - self._last_print >= 1.0:
                self._last_print = now
                print(live_line(rec, self.dec), file=self.out, flush=True)

    def pump(self, stream, stop=None):
        """Read a binary stream until EOF (or stop is set)."""
        fd = stream.fileno()
        while not (stop and stop.is_set()):
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            self.feed(data)

    def close(self):
        if self._csv_file:
            self._csv_file.close()


def add_arguments(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--port", help="serial device carrying telemetry (e.g. /dev/ttyACM0)")
    src.add_argument("--cmd", help="command whose stdout carries telemetry")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--csv", help="write every frame to this CSV")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = until EOF/Ctrl-C)")
    p.add_argument("--quiet", action="store_true", help="no live line; print only the summary")


def run(args):
    log = Logger(args.csv, args.quiet)
    stop = threading.Event()
    proc = None
    if args.cmd:
        proc = subprocess.Popen(shlex.split(args.cmd), stdout=subprocess.PIPE)
        stream = proc.stdout
    else:
        import serial
        try:
            port = serial.Serial(args.port, args.baud, timeout=0.2)
        except serial.SerialException as e:
            sys.exit(f"cabctl log: cannot open {args.port}: {e}")
        stream = port
    reader = threading.Thread(target=_read, args=(log, stream, stop), daemon=True)
    reader.start()
    try:
        reader.join(args.seconds or None)
    except KeyboardInterrupt:
        pass
    stop.set()
    if proc:
        proc.terminate()
        proc.wait(timeout=5)
    reader.join(timeout=2)
    log.close()
    print(json.dumps(log.dec.stats()))
    return 0 if log.dec.frames else 1


def _read(log, stream, stop):
    if hasattr(stream, "fileno") and not hasattr(stream, "in_waiting"):
        log.pump(stream, stop)
        return
    while not stop.is_set():                   # pyserial
        data = stream.read(4096)
        if data:
            log.feed(data)
