"""Run firmware code on the real MicroPython unix port from pytest."""
import os
import subprocess
from pathlib import Path

from cabctl.paths import BOARDS, FIRMWARE
from cabctl.sil import micropython_exe

TESTS = Path(__file__).resolve().parent


def run(args, timeout=120, cwd=None, env_extra=None):
    """Run `micropython *args` with the firmware and test folders on its path."""
    env = dict(os.environ)
    env["MICROPYPATH"] = f"{FIRMWARE}:{BOARDS / 'unix'}:{TESTS / 'firmware'}:.frozen"
    env.update(env_extra or {})
    return subprocess.run([micropython_exe(), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or FIRMWARE, env=env)


def run_code(code, **kw):
    return run(["-c", code], **kw)
