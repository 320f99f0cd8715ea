"""Telemetry frame encoding on the MicroPython unix port, beside json.dumps of
the same record (the usual alternative on MicroPython): ns per frame, bytes on
the wire and their UART time at 115,200 baud, heap bytes allocated per frame
(ours is also run under heap_lock). json.dumps is C inside the interpreter;
our encoder is Python (pack_into per field, CRC and COBS loops)."""
import json
import statistics
import subprocess

from bench_control_cycle import ENV
from cabctl.paths import FIRMWARE
from cabctl.sil import micropython_exe

SCRIPT = __file__.replace("bench_telemetry_encode.py", "mpy_telemetry_encode.py")


def main():
    runs = []
    for _ in range(3):
        out = subprocess.run([micropython_exe(), SCRIPT, "5000"], env=ENV, cwd=FIRMWARE,
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    line = {"bench": "telemetry_encode"}
    for k in runs[0]:
        line[k] = int(statistics.median(r[k] for r in runs))
    line["allocs_per_frame"] = 0 if line["alloc_bytes_per_frame"] == 0 else None
    line["speedup_vs_json"] = round(line["json_ns"] / line["frame_ns"], 2)
    line["wire_us_115200"] = line["frame_bytes"] * 10 * 1_000_000 // 115200
    line["json_wire_us_115200"] = (line["json_bytes"] + 1) * 10 * 1_000_000 // 115200
    print(json.dumps(line))


if __name__ == "__main__":
    main()
