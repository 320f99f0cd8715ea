"""Resource budgets: what `cabctl flash` puts on a board must fit the smaller target.

- compiled .mpy per board (each board's own -march) <= 96 KB;
- peak MicroPython heap of the firmware during a short run against the plant,
  on the unix port started with the RP2040's free heap, leaves >= 30 % margin.
  (Every module compiling for armv6m, xtensawin and x64 is in test_boards.py.)
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cabctl.build import board_names, build, load_board, mpy_total
from cabctl.sil import micropython_exe
from cabctl.telemetry import StreamDecoder, load_schema

MPY_BUDGET = 96 * 1024
# RP2040 MicroPython has ~180-190 KB free heap at boot (ESP32 has more): take
# the low end. The unix port is 64-bit, so its objects are larger than on the
# 32-bit boards and the figure measured here overstates theirs.
TARGET_HEAP = 180 * 1024
HEAP_MARGIN = 0.30
CYCLES = 30
PROBE = Path(__file__).resolve().parents[2] / "hil_tests" / "heap_probe.py"


@pytest.mark.parametrize("board", board_names())
def test_compiled_size_within_budget(board, tmp_path):
    cfg, items = build(board, out_dir=tmp_path / board)
    total = mpy_total(items)
    sizes = {it.path: it.size for it in items if it.path.endswith(".mpy")}
    assert "hal.mpy" in sizes and "cabinet/controller.mpy" in sizes
    assert total <= MPY_BUDGET, (f"{board} ({cfg['mpy_arch']}): {total} bytes of .mpy > "
                                 f"{MPY_BUDGET}: {sorted(sizes.items(), key=lambda kv: -kv[1])}")


def test_every_board_arch_is_built(tmp_path):
    # The budget above is per board's own architecture; make sure all three exist.
    assert {load_board(b)["mpy_arch"] for b in board_names()} >= {"x64", "armv6m", "xtensawin"}


@pytest.fixture
def plant(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "cabctl", "plant", "--seconds", "30",
                          "--truth", str(tmp_path / "truth.csv")],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    if not line:
        p.wait(timeout=5)
        pytest.fail(f"plant did not start (exit {p.returncode})")
    yield json.loads(line)
    p.terminate()
    p.wait(timeout=10)


def test_peak_heap_leaves_margin_on_smallest_target(plant, tmp_path):
    flash = tmp_path / "flash"
    _, items = build("unix", out_dir=flash)          # the same .mpy files cabctl flash writes
    (flash / "site.json").write_text(json.dumps({"max_cycles": CYCLES}))
    shutil.copy(PROBE, flash / "heap_probe.py")
    env = dict(os.environ, MICROPYPATH=f"{flash}:.frozen", CABINET_BUS=plant["bus"])
    env.pop("CABINET_SITE", None)
    r = subprocess.run([micropython_exe(), "-X", f"heapsize={TARGET_HEAP}", "heap_probe.py"],
                       cwd=flash, env=env, capture_output=True, timeout=60)
    err = r.stderr.decode(errors="replace")
    m = re.search(r"^HEAP (\{.*\})$", err, re.M)
    assert r.returncode == 0 and m, f"exit {r.returncode}:\n{err}\n{r.stdout[-500:]!r}"
    heap = json.loads(m.group(1))
    assert heap["error"] is None, heap
    # It really ran against the plant: every cycle's frame, no bus errors.
    dec = StreamDecoder(load_schema())
    frames = dec.feed(r.stdout)
    assert frames and dec.corrupt == 0, dec.stats()
    # Event frames (key 40: "event" once decoded) share the stream and the seq
    # counter with the cycle frames: the boot event first, then a transition
    # event per state change (INIT -> RUN here).
    cycles = [f for f in frames if "event" not in f]
    events = [f for f in frames if "event" in f]
    assert [f["seq"] for f in frames] == list(range(frames[0]["seq"], frames[0]["seq"] + len(frames)))
    # CYCLES in the loop + the warm-up cycle before it
    assert len(cycles) == CYCLES + 1, (len(cycles), [f.get("event") for f in frames], dec.stats())
    assert frames[0].get("event") == "boot", frames[0]
    transitions = [e for e in events if e["event"] == "transition"]
    assert [e["event"] for e in events] == ["boot"] + ["transition"] * len(transitions), events
    assert transitions and len(transitions) == cycles[-1]["transitions"], (transitions, cycles[-1])
    states = load_schema()["enums"]["state"]
    assert transitions[-1]["to_state"] == states[cycles[-1]["state"]], (transitions, cycles[-1])
    assert cycles[-1]["meter_errors"] == 0 and cycles[-1]["pcs_errors"] == 0, cycles[-1]
    free_at_boot = heap["heap"] - heap["base"]
    print(f"heap: {heap['peak']} B allocated with the GC off (boot garbage included), "
          f"{heap['live_after']} B live after the run, of {free_at_boot} B free")
    # The margin itself: the same firmware, GC on as on a board, must boot and
    # run every cycle in a heap 30 % smaller than the target's free heap (and
    # this 64-bit port's objects are larger than on the 32-bit targets).
    small = int(TARGET_HEAP * (1 - HEAP_MARGIN))
    r = subprocess.run([micropython_exe(), "-X", f"heapsize={small}", "main.py"],
                       cwd=flash, env=env, capture_output=True, timeout=60)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0 and "MemoryError" not in err, f"exit {r.returncode} in {small} B:\n{err}"
    dec = StreamDecoder(load_schema())
    frames = [f for f in dec.feed(r.stdout) if "event" not in f]
    assert len(frames) == CYCLES + 1 and frames[-1]["meter_errors"] == 0, dec.stats()
