# Per-frame cost of the telemetry encoder (put x fields + CRC + COBS into the
# preallocated frame) vs json.dumps of the same record, on MicroPython.
import gc
import json
import sys
import time
import micropython
from cabinet import telemetry


def main(n):
    f = telemetry.Frame(telemetry.load_schema('telemetry.json'))
    names = f.names
    vals = [i * 100003 - 500000 for i in range(len(names))]
    rec = {k: v for k, v in zip(names, vals)}
    idx = list(range(len(names)))

    def encode():
        for i in idx:
            f.put(i, vals[i])
        return f.seal()

    encode()
    t0 = time.ticks_us()
    for _ in range(n):
        encode()
    ours_ns = time.ticks_diff(time.ticks_us(), t0) * 1000 // n
    micropython.heap_lock()            # proof: any allocation would raise here
    for _ in range(100):
        encode()
    micropython.heap_unlock()
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    for _ in range(100):
        encode()
    ours_bytes = (gc.mem_alloc() - a0) // 100
    gc.enable()
    t0 = time.ticks_us()
    for _ in range(n):
        s = json.dumps(rec)
    json_ns = time.ticks_diff(time.ticks_us(), t0) * 1000 // n
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    for _ in range(100):
        s = json.dumps(rec)
    json_alloc = (gc.mem_alloc() - a0) // 100
    gc.enable()
    print('{"frame_ns": %d, "frame_bytes": %d, "alloc_bytes_per_frame": %d, '
          '"json_ns": %d, "json_bytes": %d, "json_alloc_bytes_per_frame": %d}'
          % (ours_ns, len(encode()), ours_bytes, json_ns, len(s), json_alloc))


main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
