"""The predictor and the engine's feed-forward give bit-identical outputs on
CPython and MicroPython (as tests/test_dispatch_identity.py for the engine)."""
import subprocess
import sys
from pathlib import Path

from cabctl.paths import FIRMWARE
from mpy import run

TRACE = Path(__file__).parent / "firmware" / "predict_trace.py"


def test_same_outputs_on_cpython_and_micropython():
    cpy = subprocess.run([sys.executable, str(TRACE)], capture_output=True, text=True,
                         env={"PYTHONPATH": str(FIRMWARE)}, timeout=300)
    mpy = run([str(TRACE)], timeout=300)
    assert cpy.returncode == 0, cpy.stderr
    assert mpy.returncode == 0, mpy.stdout + mpy.stderr
    assert cpy.stdout.startswith("steps 30000 digest"), cpy.stdout
    assert mpy.stdout == cpy.stdout
    # The trace did pre-arm, with the fast channel open part of the time.
    acted, active = (int(w) for w in cpy.stdout.split()[5:8:2])
    assert acted > 500 and active > 3000, cpy.stdout
