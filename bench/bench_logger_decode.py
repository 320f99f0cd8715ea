"""Host side of telemetry: decode + write throughput of `cabctl log`.

A stream of firmware frames (the firmware's own Frame class, values moving
like a running site, some negative) is fed to the logger's decoder in 4096-
byte chunks, as a serial read returns them, and every frame is written to CSV
and Parquet through the same store `cabctl log` uses. Figures, one JSON line:
- frames_per_s: decode + CSV + Parquet, best of 5 runs;
- decode_frames_per_s: the same decoder without writing (best of 5);
- wire_frames_per_s: frames a 921,600-baud UART carries (10 bits per byte,
  frame = schema payload + 1 delimiter), and ratio_vs_wire = frames_per_s /
  wire_frames_per_s (must be >= 20);
- cbor2_frames_per_s: peer figure, cbor2.loads of each frame's CBOR bytes
  alone (no COBS, no CRC, no writing);
- the frame size, chunk size and bytes per frame written to each format.
"""
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import cbor2

from cabctl import telemetry as ht
from cabctl.log import Logger
from cabctl.logstore import RotatingStore
from cabctl.paths import FIRMWARE, TELEMETRY_SCHEMA

sys.path.insert(0, str(FIRMWARE))
from cabinet import telemetry as ft  # noqa: E402

BAUD = 921_600
CHUNK = 4096
FRAMES = 30_000
MIN_RATIO = 20


def stream(n, seed=1):
    """n frames as the firmware sends them, and the CBOR bytes of each."""
    schema = ft.load_schema(str(TELEMETRY_SCHEMA))
    f = ft.Frame(schema)
    idx = {name: f.index(name) for name in f.names}
    rng = random.Random(seed)
    load, soc = 17_000_000, 6000
    wire, bodies = bytearray(), []
    for seq in range(1, n + 1):
        load = max(8_000_000, min(26_000_000, load + rng.randint(-400_000, 400_000)))
        battery = max(-4_000_000, min(8_000_000, load - 18_000_000))
        soc = max(500, min(9500, soc - battery // 4_000_000))
        values = {"seq": seq, "uptime_ms": 50 * seq, "grid_w": load - battery, "battery_w": battery,
                  "setpoint_w": battery, "soc_cpct": soc, "load_w": load,
                  "reason": 1 if battery > 0 else 2,
                  "state": 1, "cycle_us": rng.randint(6000, 9000), "late_cycles": seq // 5000,
                  "charge_max_w": 8_000_000, "discharge_max_w": 8_000_000, "cap_w": 18_000_000}
        for name, v in values.items():
            if name in idx:
                f.put(idx[name], v)
        w = bytes(f.seal())
        wire += w
        bodies.append(bytes(f.buf[:len(f.buf) - 2]))
    return bytes(wire), bodies


def run_logger(data, write):
    with tempfile.TemporaryDirectory() as d:
        store = RotatingStore(Path(d), ht.load_schema()) if write else None
        log = Logger(store=store, quiet=True, keep_frames=False)
        t = time.perf_counter()
        for i in range(0, len(data), CHUNK):
            log.feed(data[i:i + CHUNK])
        log.close()
        dt = time.perf_counter() - t
        sizes = {p.suffix[1:]: p.stat().st_size for p in Path(d).iterdir()} if write else {}
    dec = log.dec
    assert (dec.frames, dec.lost, dec.corrupt) == (FRAMES, 0, 0), dec.stats()
    return FRAMES / dt, sizes


def cbor2_rate(bodies):
    loads = cbor2.loads
    t = time.perf_counter()
    for b in bodies:
        loads(b)
    return len(bodies) / (time.perf_counter() - t)


def main():
    schema = ht.load_schema()
    frame_bytes = schema["payload_len"] + 1
    wire_fps = BAUD / 10 / frame_bytes
    data, bodies = stream(FRAMES)
    assert len(data) == FRAMES * frame_bytes
    full = [run_logger(data, True) for _ in range(5)]
    fps, sizes = max(full, key=lambda r: r[0])
    decode_fps = max(run_logger(data, False)[0] for _ in range(5))
    cbor_fps = max(cbor2_rate(bodies) for _ in range(3))
    ratio = fps / wire_fps
    print(json.dumps({
        "bench": "logger_decode",
        "frames_per_s": int(fps),
        "ratio_vs_wire": round(ratio, 1),
        "wire_frames_per_s": round(wire_fps, 1),
        "baud": BAUD,
        "frame_bytes": frame_bytes,
        "chunk_bytes": CHUNK,
        "frames": FRAMES,
        "decode_frames_per_s": int(decode_fps),
        "cbor2_frames_per_s": int(cbor_fps),
        "csv_bytes_per_frame": round(sizes.get("csv", 0) / FRAMES, 1),
        "parquet_bytes_per_frame": round(sizes.get("parquet", 0) / FRAMES, 1),
        "min_ratio": MIN_RATIO,
    }))
    return 0 if ratio >= MIN_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
