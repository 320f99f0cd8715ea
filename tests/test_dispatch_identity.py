"""The dispatch engine gives bit-identical outputs on CPython and MicroPython."""
import subprocess
import sys
from pathlib import Path

from cabctl.paths import FIRMWARE
from mpy import run

TRACE = Path(__file__).parent / "firmware" / "dispatch_trace.py"


def test_same_outputs_on_cpython_and_micropython():
    cpy = subprocess.run([sys.executable, str(TRACE)], capture_output=True, text=True,
                         env={"PYTHONPATH": str(FIRMWARE)}, timeout=300)
    mpy = run([str(TRACE)], timeout=300)
    assert cpy.returncode == 0, cpy.stderr
    assert mpy.returncode == 0, mpy.stdout + mpy.stderr
    assert cpy.stdout.startswith("steps 100002 digest"), cpy.stdout
    assert mpy.stdout == cpy.stdout
    # The trace reaches every stage of the engine, not just "idle".
    reasons = dict(kv.split("=") for kv in cpy.stdout.split("reasons ")[1].split())
    unused = [k for k, n in reasons.items() if int(n) == 0 and k != "disarmed"]
    assert not unused, f"trace never exercised {unused}: {cpy.stdout}"
