"""`cabctl log`: decode telemetry live from a serial port or a command's stdout.

Logger (used by the rig too) feeds bytes to the decoder and hands rows to a
store (logstore); `cabctl log` adds the port pick (logport), the live view
(logview) and a JSON summary on stdout.
"""
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .logdecode import FastDecoder
from .logstore import FORMATS, RotatingStore, SingleCsv, field_names
from .telemetry import load_schema


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
    """Feeds bytes to the decoder and rows to a store.

    csv_path: one CSV file (the rig's telemetry.csv); store: any object with
    write(rows, now) and close() instead (e.g. logstore.RotatingStore).
    Unless quiet, prints a live line a second to `out` (the demo's view).
    keep_frames: keep every decoded frame in .frames (the rig judges from
    them); `cabctl log` keeps only .latest. clock: host time of a frame
    (host_time_s; the time its bytes were read), monotonic seconds.
    """

    def __init__(self, csv_path=None, quiet=False, out=sys.stderr, *, store=None,
                 keep_frames=True, schema=None, clock=time.monotonic):
        self.dec = FastDecoder(schema or load_schema())
        self.names = field_names(self.dec.schema)
        self.quiet = quiet
        self.out = out
        self.keep_frames = keep_frames
        self.frames = []
        self.events = []              # event frames (transitions, boot, command results)
        self.latest = None
        self.store = store if store is not None else (
            SingleCsv(csv_path, self.dec.schema) if csv_path else None)
        self.clock = clock
        self._last_print = 0.0
        self.first_frame_monotonic = None
        self.last_frame_at = None

    def feed(self, data):
        recs = self.dec.feed(data)
        if not recs:
            return recs
        if any("event" in r for r in recs):
            now = self.clock()
            for r in recs:
                if "event" in r:
                    r["host_time_s"] = now
                    self.events.append(r)
            recs = [r for r in recs if "event" not in r]
            if not recs:
                return recs
        now = self.clock()
        if self.first_frame_monotonic is None:
            self.first_frame_monotonic = now
        self.last_frame_at = now
        store = self.store
        if store is not None:
            t = round(now, 3)
            names = self.names
            store.write([(t, *map(rec.get, names)) for rec in recs], now)
        for rec in recs:
            rec["host_time_s"] = now
        self.latest = recs[-1]
        if self.keep_frames:
            self.frames += recs
        if not self.quiet and now - self._last_print >= 1.0:
            self._last_print = now
            print(live_line(self.latest, self.dec), file=self.out, flush=True)
        return recs

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
        store, self.store = self.store, None
        if store is not None:
            store.close()


def add_arguments(p):
    src = p.add_mutually_exclusive_group()
    src.add_argument("--port", help="serial device carrying telemetry (default: the only plausible "
                                    "USB serial port, or a list of candidates)")
    src.add_argument("--cmd", help="command whose stdout carries telemetry")
    p.add_argument("--baud", type=int, default=115200, help="UART baud rate (USB CDC ignores it)")
    dst = p.add_mutually_exclusive_group()
    dst.add_argument("--out", metavar="DIR",
                     help="folder for telemetry-NNNN.csv/.parquet parts (default: a new runs/log-*)")
    dst.add_argument("--csv", metavar="FILE", help="write one CSV file instead, no rotation")
    p.add_argument("--format", choices=("csv", "parquet", "both"), default="both",
                   help="file formats in --out (default both)")
    p.add_argument("--rotate-mb", type=float, default=0,
                   help="start a new part once a file reaches this many MB (0 = never)")
    p.add_argument("--rotate-min", type=float, default=0,
                   help="start a new part after this many minutes (0 = never)")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = until EOF/Ctrl-C)")
    p.add_argument("--quiet", action="store_true", help="no live view; print only the summary")
    # --- fleet telemetry: --mqtt (mqtt_pub.py; README "Fleet telemetry: MQTT and PostgreSQL") ---
    p.add_argument("--mqtt", metavar="URL",
                   help="also publish every frame to this MQTT broker, mqtt://[user[:password]@]host[:port] "
                        "(mqtts:// for TLS), on cabinet/<site>/<cabinet>/{telemetry,event,status}")
    p.add_argument("--site", default="site", help="site name in the MQTT topics (default: site)")
    p.add_argument("--cabinet", help="cabinet name in the MQTT topics (default: this host's name)")
    p.add_argument("--mqtt-buffer", type=int, default=72000, metavar="FRAMES",
                   help="frames kept while the broker is away; beyond it the oldest are dropped "
                        "and counted (default 72000: an hour at 20 frames/s)")
    p.add_argument("--mqtt-flush-s", type=float, default=10.0,
                   help="at exit, wait this long for the broker to take the buffered frames (default 10)")
    # --- end fleet telemetry ---


def _store(args, schema):
    if args.csv:
        return SingleCsv(args.csv, schema)
    if args.out:
        out = Path(args.out)
    else:
        from .rig import new_run_dir
        out = new_run_dir(tag="log")
    formats = FORMATS if args.format == "both" else (args.format,)
    return RotatingStore(out, schema, formats,
                         rotate_bytes=int(args.rotate_mb * 1e6) or None,
                         rotate_s=args.rotate_min * 60 or None)


def run(args):
    schema = load_schema()
    proc = ser = None
    if args.cmd:
        source = f"cmd: {args.cmd}"
    else:
        import serial
        from .logport import PortError, pick_port
        port = args.port
        if not port:
            try:
                port = pick_port()
            except PortError as e:
                print(f"cabctl log: {e}", file=sys.stderr)
                return 3
            if not args.quiet:
                print(f"cabctl log: using {port}", file=sys.stderr)
        try:
            ser = serial.Serial(port, args.baud, timeout=0.2)
        except (serial.SerialException, OSError) as e:
            print(f"cabctl log: cannot open {port}: {e}", file=sys.stderr)
            return 3
        source = port
    try:
        store = _store(args, schema)
    except OSError as e:
        print(f"cabctl log: {e}", file=sys.stderr)
        return 2
    log = Logger(store=store, quiet=True, keep_frames=False, schema=schema)
    # --- fleet telemetry: --mqtt (mqtt_pub.py) ---
    pub = None
    if args.mqtt:
        from .mqtt_pub import MqttPublisher, attach
        try:
            pub = attach(log, MqttPublisher(args.mqtt, args.site, args.cabinet, buffer=args.mqtt_buffer,
                                            stats=log.dec.stats, start=False))
        except ValueError as e:
            log.close()
            print(f"cabctl log: --mqtt: {e}", file=sys.stderr)
            return 2
    # --- end fleet telemetry ---
    stop = threading.Event()
    if args.cmd:
        try:
            proc = subprocess.Popen(shlex.split(args.cmd), stdout=subprocess.PIPE)
        except (OSError, ValueError) as e:
            log.close()
            print(f"cabctl log: cannot run {args.cmd!r}: {e}", file=sys.stderr)
            return 2
        reader_obj = None
        reader = threading.Thread(target=log.pump, args=(proc.stdout, stop), daemon=True)
    else:
        from .logport import SerialReader
        reader_obj = SerialReader(ser, log.feed)
        reader = threading.Thread(target=reader_obj.run, args=(stop,), daemon=True)

    def extra():
        x = {"file": store.current(), "rows": store.rows}
        if reader_obj is not None:
            x["reconnects"] = reader_obj.reconnects
        return x

    view = None
    if not args.quiet:
        from .logview import LiveView
        view = LiveView(log, source, extra=extra)
    old_term = signal.signal(signal.SIGTERM, lambda *_: stop.set()) \
        if threading.current_thread() is threading.main_thread() else None
    t0 = time.monotonic()
    reader.start()
    if view:
        view.start()
    try:
        while reader.is_alive() and not stop.is_set():
            left = args.seconds - (time.monotonic() - t0) if args.seconds else 0.5
            if left <= 0:
                break
            reader.join(min(0.5, left))            # the view refreshes at 2 Hz
            if view:
                view.update()
    except KeyboardInterrupt:
        pass
    elapsed = time.monotonic() - t0
    stop.set()
    if proc:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
    reader.join(timeout=2)
    log.close()
    if view:
        view.stop()
    if old_term is not None:
        signal.signal(signal.SIGTERM, old_term)
    summary = dict(log.dec.stats())
    summary.update(frames_per_s=round(log.dec.frames / elapsed, 1) if elapsed > 0 else 0.0,
                   seconds=round(elapsed, 3), source=source,
                   out=str(getattr(store, "dir", "")) or None,
                   files=[str(f) for f in store.files], rows_written=store.rows)
    if reader_obj is not None:
        summary["reconnects"] = reader_obj.reconnects
    if pub is not None:                                    # fleet telemetry (--mqtt)
        summary["mqtt"] = pub.close(timeout=args.mqtt_flush_s)
    if getattr(store, "dir", None):
        (store.dir / "log.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)
    return 0 if log.dec.frames else 1
