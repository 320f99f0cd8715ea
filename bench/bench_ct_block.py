"""Per-block cost of CT sensing (cabinet/ct.py) on the MicroPython unix port.

One block = one mains cycle of 64 samples x 4 channels (3 CTs + one voltage
sensor, phases B/C against phase A's voltage delayed 120/240 deg, so the
fractional-delay path is exercised). Figures, side by side in one JSON line:
- viper_block_ns / plain_block_ns: wall time per Ct.process() (median of 3
  runs of 2,000 blocks), and per channel;
- viper_/plain_block_instructions: the same counted by callgrind (repeatable
  on a noisy machine) when valgrind is installed;
- alloc_bytes_per_block: gc.mem_alloc() growth over the run (must be 0), and
  heap_locked_ok: the same blocks ran under micropython.heap_lock();
- cpython_block_ns: the plain path on CPython, for scale;
- rms_err_pct_fs / power_err_pct_fs: worst error over 120 cycles of the SIL
  signal (cabctl.ct_signal: harmonics, noise, bias error, 12-bit ADC) at
  3..25 MW against its true current and the plant's power, in % of full
  scale; power_err_pct_reading the same relative to the reading;
  off_nominal_*: the same with the grid at 59 and 61 Hz (the worse of the two);
- budget_ns: one mains cycle at 60 Hz, the time a block is allowed to take.

This file is also the MicroPython-side script: run under MicroPython it
measures one path (argv: blocks, viper|plain) and prints one JSON line.
"""
import sys

N, CHANNELS = 64, 4
CFG = {'n': N, 'channels': CHANNELS, 'i_ch': [0, 1, 2], 'v_ch': 3, 'ma_fs': 2250000,
       'mv_fs': 13860000, 'phase_cdeg': [0, 12000, 24000]}


def blocks(count=8):
    """Deterministic test blocks (3 phases at pf 0.9, 3rd harmonic, noise)."""
    import math
    from array import array
    out = []
    s = 12345
    for b in range(count):
        blk = array('H', [0] * (N * CHANNELS))
        for j in range(N):
            th = 2 * math.pi * (b * N + j) / N
            for c in range(CHANNELS):
                s = (s * 1103515245 + 12345) & 0x7FFFFFFF
                if c == 3:
                    x = 0.8 * math.sin(th)
                else:
                    x = 0.5 * math.sin(th - c * 2.0944 - 0.45) + 0.05 * math.sin(3 * th)
                blk[j * CHANNELS + c] = int(32900 + 32768 * x + (s >> 24) - 64)
        out.append(blk)
    return out


def mpy_main(n, viper):
    import gc
    import time
    import micropython
    from cabinet import ct
    m = ct.Ct(ct.validate(CFG), viper)
    bl = blocks()
    for b in bl:
        m.process(b)                            # warm-up (first block takes its bias)
    process = m.process
    locked_ok = True
    micropython.heap_lock()
    try:
        for i in range(64):
            process(bl[i & 7])
    except MemoryError:
        locked_ok = False
    micropython.heap_unlock()
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    t0 = time.ticks_us()
    for i in range(n):
        process(bl[i & 7])
    dt = time.ticks_diff(time.ticks_us(), t0)
    a1 = gc.mem_alloc()
    gc.enable()
    print('{"blocks": %d, "viper": %s, "block_ns": %d, "alloc_bytes": %d, "heap_locked_ok": %s}'
          % (n, 'true' if m.viper else 'false', dt * 1000 // n if n else 0, a1 - a0,
             'true' if locked_ok else 'false'))


def host_main():
    import json
    import statistics
    import subprocess
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_control_cycle import ENV, callgrind_instructions
    from cabctl import fw  # noqa: F401  (the firmware on sys.path)
    from cabctl.paths import FIRMWARE
    from cabctl.sil import micropython_exe
    from cabinet import ct

    script = Path(__file__).resolve()

    def mpy(n, mode):
        out = subprocess.run([micropython_exe(), str(script), str(n), mode], env=ENV, cwd=FIRMWARE,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    res = {}
    for mode in ("viper", "plain"):
        runs = [mpy(2000, mode) for _ in range(3)]
        assert runs[0]["viper"] == (mode == "viper"), runs[0]
        ns = int(statistics.median(r["block_ns"] for r in runs))
        res[mode] = {"ns": ns, "alloc": max(r["alloc_bytes"] for r in runs) // 2000,
                     "locked": all(r["heap_locked_ok"] for r in runs),
                     "instr": callgrind_instructions(200, script, mode)}

    m = ct.Ct(ct.validate(CFG), viper=False)
    bl = blocks()
    t0 = time.perf_counter_ns()
    for i in range(2000):
        m.process(bl[i & 7])
    cpython_ns = (time.perf_counter_ns() - t0) // 2000

    rms_err, p_err, p_rel = accuracy()
    off = [accuracy(hz) for hz in (59.0, 61.0)]
    print(json.dumps({
        "bench": "ct_block",
        "samples": N, "channels": CHANNELS,
        "viper_block_ns": res["viper"]["ns"],
        "plain_block_ns": res["plain"]["ns"],
        "viper_ns_per_channel": res["viper"]["ns"] // CHANNELS,
        "plain_ns_per_channel": res["plain"]["ns"] // CHANNELS,
        "viper_block_instructions": res["viper"]["instr"],
        "plain_block_instructions": res["plain"]["instr"],
        "alloc_bytes_per_block": max(res["viper"]["alloc"], res["plain"]["alloc"]),
        "heap_locked_ok": res["viper"]["locked"] and res["plain"]["locked"],
        "cpython_block_ns": cpython_ns,
        "rms_err_pct_fs": round(rms_err, 3),
        "power_err_pct_fs": round(p_err, 3),
        "power_err_pct_reading": round(p_rel, 3),
        "off_nominal_rms_err_pct_fs": round(max(a[0] for a in off), 3),
        "off_nominal_power_err_pct_fs": round(max(a[1] for a in off), 3),
        "budget_ns": 1_000_000_000 // 60,
    }))


def accuracy(hz=60.0):
    import numpy as np
    from cabctl.ct_signal import CtSignal, CtSignalConfig
    from cabinet import ct
    sig = CtSignal(CtSignalConfig(hz=hz), seed=3)
    c = sig.ct_config()
    m = ct.Ct(ct.validate(c), viper=False)
    fs_ma = c["ma_fs"][0] / np.sqrt(2)
    fs_w = 3 * fs_ma * c["mv_fs"] / np.sqrt(2) / 1e6
    h = np.sqrt(1 + sum(f * f for f, _ in sig.cfg.harmonics.values()))
    rms_err = p_err = p_rel = 0.0
    for _ in range(4):                          # bias and frequency tracking settle
        m.process(sig.next_array(3e6))
    for grid_w in (3e6, 8e6, 18e6, 25e6):
        m.process(sig.next_array(grid_w))
        for _ in range(30):                     # half a beat period at +-1 Hz
            m.process(sig.next_array(grid_w))
            i_true = abs(sig.currents(grid_w)) * h * 1000
            rms_err = max(rms_err, max(abs(m.rms_ma[k] - i_true[k]) for k in range(3)) / fs_ma)
            p_err = max(p_err, abs(m.total_w - grid_w) / fs_w)
            p_rel = max(p_rel, abs(m.total_w - grid_w) / grid_w)
    return rms_err * 100, p_err * 100, p_rel * 100


if __name__ == "__main__":
    if sys.implementation.name == "micropython":
        mpy_main(int(sys.argv[1]), sys.argv[2] != "plain")
    else:
        host_main()
