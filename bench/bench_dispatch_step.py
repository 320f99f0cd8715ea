"""Per-step cost of the dispatch engine on the MicroPython unix port.

step_ns: wall time per Engine.step with every stage active (median of 3 runs
of 20,000 steps); step_instructions: the same counted by callgrind (repeatable
on a noisy machine) when valgrind is installed; cpython_step_ns: the same
engine module on CPython, for scale; budget_ns: the 50 ms control period.
ff_step_ns / ff_step_instructions: the same with a pre-arm every step (the
feed-forward's ramp guard, cabinet/ffguard.py, scans its 20 blocks).
"""
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench_control_cycle import ENV, callgrind_instructions
from cabctl.paths import FIRMWARE
from cabctl.sil import micropython_exe

SCRIPT = Path(__file__).resolve().parent / "mpy_dispatch_step.py"


def mpy_step_ns(n=20000, *args):
    out = subprocess.run([micropython_exe(), str(SCRIPT), str(n), *args], env=ENV, cwd=FIRMWARE,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["step_ns"]


def cpython_step_ns(n=20000):
    out = subprocess.run([sys.executable, str(SCRIPT), str(n)], cwd=FIRMWARE,
                         env={"PYTHONPATH": str(FIRMWARE)}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["step_ns"]


def main():
    print(json.dumps({
        "bench": "dispatch_step",
        "step_ns": int(statistics.median(mpy_step_ns() for _ in range(3))),
        "step_instructions": callgrind_instructions(2000, SCRIPT),
        "cpython_step_ns": cpython_step_ns(),
        "ff_step_ns": int(statistics.median(mpy_step_ns(20000, "ff") for _ in range(3))),
        "ff_step_instructions": callgrind_instructions(2000, SCRIPT, "ff"),
        "budget_ns": 50_000_000,
    }))


if __name__ == "__main__":
    main()
