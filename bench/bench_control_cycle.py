"""Cost of one firmware control cycle on the MicroPython unix port.

Figures, side by side in one JSON line:
- cycle_cpu_ns: Controller.cycle() with the bus answered from memory (pure
  firmware CPU: decode, dispatch, telemetry, CRCs), median of 3 runs;
- cycle_instructions: the same, counted by callgrind (repeatable on a noisy
  machine), when valgrind is installed;
- sil_cycle_us_p50/p99/max: busy time per cycle in a real SIL run against the
  plant over the pty (includes the Modbus round trips);
- bus_limit_us_115200: the physical floor of the same transactions on an
  RS-485 bus at 115,200 baud (11-bit characters, 3.5-character gaps, no
  slave turnaround), and period_ms, the budget it all has to fit in.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from cabctl.paths import BOARDS, FIRMWARE
from cabctl.rig import Rig
from cabctl.sil import micropython_exe

HERE = Path(__file__).resolve().parent
ENV = dict(os.environ, MICROPYPATH=f"{FIRMWARE}:{BOARDS / 'unix'}:.frozen")


def cycle_cost(n):
    out = subprocess.run([micropython_exe(), str(HERE / "mpy_cycle_cost.py"), str(n)],
                         env=ENV, cwd=FIRMWARE, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def callgrind_instructions(n, script=HERE / "mpy_cycle_cost.py", *args):
    """Instructions per iteration of a MicroPython bench script: (run with n - run with 0) / n.
    args: more arguments for the script, after n."""
    if not shutil.which("valgrind"):
        return None
    counts = []
    for cycles in (0, n):
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/cg.out",
                                sys.executable, "-c",
                                "import sys; from micropython_unix import main; "
                                f"sys.argv=['micropython', {str(script)!r}, '{cycles}', "
                                f"{', '.join(repr(a) for a in args)}]; "
                                "main()"],
                               env=ENV, cwd=FIRMWARE, capture_output=True, text=True)
            m = re.search(r"Collected : (\d+)", r.stderr)
            if r.returncode or not m:
                return None
            counts.append(int(m.group(1)))
    return (counts[1] - counts[0]) // n


def bus_limit_us(bus_bytes, txns, baud=115200):
    char_us = 11 * 1_000_000 / baud
    gap_us = 1750 if baud > 19200 else 3.5 * char_us
    return int(bus_bytes * char_us + 2 * txns * gap_us)


def sil_cycles(seconds=6):
    with tempfile.TemporaryDirectory() as d:
        rig = Rig(d)
        s = rig.run(seconds)
        busy = sorted(f["cycle_us"] for f in rig.logger.frames[2:])
    return s, busy


def main():
    runs = [cycle_cost(2000) for _ in range(3)]
    cpu = statistics.median(r["cycle_cpu_ns"] for r in runs)
    s, busy = sil_cycles()
    period_ms = 50
    print(json.dumps({
        "bench": "control_cycle",
        "cycle_cpu_ns": int(cpu),
        "cycle_instructions": callgrind_instructions(300),
        "sil_cycle_us_p50": busy[len(busy) // 2] if busy else None,
        "sil_cycle_us_p99": busy[int(len(busy) * 0.99)] if busy else None,
        "sil_cycle_us_max": busy[-1] if busy else None,
        "sil_late_cycles": s.get("late_cycles"),
        "txns_per_cycle": runs[0]["txns_per_cycle"],
        "bus_bytes_per_cycle": runs[0]["bus_bytes_per_cycle"],
        "bus_limit_us_115200": bus_limit_us(runs[0]["bus_bytes_per_cycle"], runs[0]["txns_per_cycle"]),
        "period_ms": period_ms,
    }))


if __name__ == "__main__":
    main()
