"""CT sensing in the loop (issue 8), in real time, judged from ground truth.

The plant writes one block of CT samples per mains cycle (cabctl.ct_signal,
from its grid power at the meter point) to a second pty; the unix board reads
it (CABINET_CT) and the controller dispatches on the CT power while it agrees
with the meter. Each run is ~10 s of the demo profile with an 18 MW cap.

The rig does not pass the CT pty to the firmware itself: the `ct_rig`
fixture wraps its firmware launch to set CABINET_CT from the plant's ready
line ("ct").
"""
import argparse
import json
import os
import subprocess
import threading
import time
import tty

import numpy as np
import pytest

import cabctl.rig as rigmod
from cabctl import fw  # noqa: F401  (firmware on sys.path)
from cabctl import calibrate, truth
from cabctl.ct_signal import CtSignal, CtSignalConfig
from cabctl.paths import BOARDS, FIRMWARE
from cabctl.plant.model import PlantConfig
from cabctl.plant.server import CtFeed
from cabctl.rig import Rig
from cabctl.sil import micropython_exe
from cabinet import ct_config

CAP_W = 18_000_000
SECONDS = 10
SETTLE_S = 0.5              # the first frames after boot are not judged


def ct_site(signal=None, **ct_over):
    """The site config for the plant's CT signal (ideal calibration), with
    the PCS's response as its data sheet would give it (the plant's defaults)."""
    cfg = CtSignal(CtSignalConfig(**(signal or {}))).ct_config()
    cfg.update(pcs_lag_ms=int(PlantConfig.pcs_tau_ms),
               pcs_ramp_w_per_s=int(PlantConfig.pcs_ramp_w_per_s))
    cfg.update(ct_over)
    return cfg


@pytest.fixture
def ct_rig(tmp_path, monkeypatch, unix_only):
    """make(tag, site, plant_ct): a Rig whose plant serves CT blocks (plant_ct:
    its "ct" settings; None: no CTs) and whose firmware gets CABINET_CT."""
    start = rigmod.start_firmware

    def make(tag, site, plant_ct=None, key=None):
        d = tmp_path / tag
        d.mkdir()
        rig = Rig(d, site=site, plant=None if plant_ct is None else {"ct": plant_ct}, key=key)

        def launch(bus, site_path=None, stderr=None, key_path=None, ct_path=None):
            ct = rig.plant_info.get("ct")
            if ct:
                monkeypatch.setenv("CABINET_CT", ct)
            else:
                monkeypatch.delenv("CABINET_CT", raising=False)
            return start(bus, site_path, stderr=stderr, key_path=key_path)

        monkeypatch.setattr(rigmod, "start_firmware", launch)
        return rig
    return make


def run(rig, seconds=SECONDS):
    s = rig.run(seconds)
    assert s["ok"], s["errors"]
    log = (rig.dir / "firmware.log").read_text()
    assert "Traceback" not in log and "MemoryError" not in log, log
    tr = truth.load(rig.dir / "truth.csv")
    t0 = rig.plant_info["t0_monotonic"]
    frames = [f for f in rig.logger.frames if "event" not in f]
    for f in frames:
        f["t_plant"] = f["host_time_s"] - t0
    start = frames[0]["t_plant"] + SETTLE_S
    return s, tr, [f for f in frames if f["t_plant"] >= start]


def excursions(tr, t_from):
    """Above the cap (+1 %) from t_from: each excursion's length (ms) and the
    energy over that line (MW s), from ground truth."""
    w = truth.window(tr, t_from, 1e9)
    over = np.clip(w["grid_w"] - CAP_W * 1.01, 0, None)
    dt = float(np.median(np.diff(w["t_s"])))
    edges = np.diff(np.concatenate(([0], (over > 0).astype(int), [0])))
    return ((np.flatnonzero(edges < 0) - np.flatnonzero(edges > 0)) * dt * 1000,
            float(over.sum() * dt / 1e6))


def over_cap(runs_ms, mws):
    """Excursion lengths (ms) and energy (MW s) in figures."""
    pct = (lambda q: round(float(np.percentile(runs_ms, q)), 1)) if len(runs_ms) else \
        (lambda q: 0.0)
    return {"max_over_cap_ms": round(float(max(runs_ms, default=0)), 1),
            "p90_over_cap_ms": pct(90), "p95_over_cap_ms": pct(95),
            "excursions": len(runs_ms), "over_cap_mws": round(mws, 3)}


def reaction_ms(tr, t_from):
    """Per load step that takes the grid over the cap: ms until the setpoint
    has moved by half the excess (from ground truth)."""
    w = truth.window(tr, t_from, 1e9)
    t, load, sp, grid = w["t_s"], w["load_w"], w["setpoint_w"], w["grid_w"]
    out, i = [], 1
    while i < len(t) - 60:
        if load[i] - load[i - 1] > 4e6 and grid[i] > CAP_W:
            j = i
            while j < i + 60 and sp[j] - sp[i - 1] < 0.5 * (grid[i] - CAP_W):
                j += 1
            out.append((t[j] - t[i]) * 1000)
            i += 20
        else:
            i += 1
    return out


READER = """
import sys, time, hal
from array import array
p = hal.CtPipe(sys.argv[1], 256)
arr = array('H', [0] * 256)
print('ready')
got = 0
t0 = time.ticks_ms()
while p.blocks < 3 and time.ticks_diff(time.ticks_ms(), t0) < 5000:
    got += p.read(arr)
    time.sleep_ms(5)
print('{"got": %d, "blocks": %d, "dropped": %d, "rejected": %d, "first": %d, "last": %d, "sum": %d}'
      % (got, p.blocks, p.dropped, p.rejected, arr[0], arr[255], sum(arr)))
"""


def test_ct_framing_resyncs_and_counts_dropped_blocks(tmp_path):
    # The unix HAL's CtPipe (MicroPython) reading CtFeed's blocks (CPython) on
    # a pty: line noise, a torn block, a corrupted one and a gap in the counter.
    feed = CtFeed({})
    master, slave = os.openpty()
    tty.setraw(slave)
    (tmp_path / "reader.py").write_text(READER)
    env = dict(os.environ, MICROPYPATH=f"{BOARDS / 'unix'}:{FIRMWARE}")
    mp = subprocess.Popen([micropython_exe(), str(tmp_path / "reader.py"), os.ttyname(slave)],
                          stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert mp.stdout.readline().strip() == "ready"
        b = [feed.block(12e6 + k * 1e6) for k in range(7)]
        bad = bytearray(b[3])
        bad[100] ^= 0x55
        os.write(master, b"\x00CT\x07" + b[0] + b[1][:200] + b[2] + bytes(bad) + b[5])
        time.sleep(0.2)
        os.write(master, b[6])
        out = json.loads(mp.stdout.readline())
    finally:
        mp.kill()
        mp.wait()
        os.close(master)
        os.close(slave)
    last = np.frombuffer(b[6][8:], dtype="<u2")
    print(f"\n{out}")
    # Good: 0 (found again inside the false header before it), 5, 6; 1 torn
    # swallows 2's start, so 2 is lost too; 3 corrupted; 4 never sent.
    assert out["blocks"] == 3 and out["dropped"] == 4 and out["rejected"] >= 3, out
    assert (out["first"], out["last"], out["sum"]) == (last[0], last[-1], int(last.sum())), out


def test_ct_power_agrees_with_ground_truth_and_holds_the_cap(ct_rig):
    # With the heap locked: reading, checking and processing CT blocks allocates nothing.
    site = {"cap_w": CAP_W, "ct": ct_site(), "lock_heap": True}
    fs_w = ct_config.full_scale_w(ct_config.validate(site["ct"]))
    rig = ct_rig("ct", site, plant_ct={})
    s, tr, frames = run(rig)
    # CT and meter never disagreed; CT data was fresh (bit 1 clear) but for
    # the odd frame after the busy host held up the plant or the firmware.
    alarms = [f["ct_alarm"] for f in frames]
    assert not any(a & 1 for a in alarms), alarms
    assert sum(1 for a in alarms if a & 2) <= len(alarms) // 20, alarms
    # CT power vs the plant's true grid power over the cycle before each frame,
    # where the grid was steady (a step inside the window has no one true value).
    errs = []
    tt, grid = tr["t_s"], tr["grid_w"]
    for f in frames:
        sel = (tt > f["t_plant"] - 0.04) & (tt <= f["t_plant"])
        if sel.sum() < 4 or np.ptp(grid[sel]) > 0.01 * fs_w:
            continue
        errs.append(f["ct_w"] - grid[sel].mean())
    errs = np.abs(np.array(errs))
    pct = 100 * errs / fs_w
    print(f"\nCT vs ground truth over {len(errs)} steady frames: median {np.median(pct):.3f} %, "
          f"p95 {np.percentile(pct, 95):.3f} %, max {pct.max():.3f} % of full scale "
          f"({fs_w / 1e6:.1f} MW); max_over_cap_ms {s['max_over_cap_ms']}")
    assert len(errs) >= 40, len(errs)
    assert np.percentile(pct, 95) <= 1.0 and np.median(pct) <= 0.5
    assert s["max_over_cap_ms"] <= 300 and s["peak_grid_w"] <= CAP_W * 1.03, s
    assert s["peak_load_w"] > CAP_W * 1.25, s
    assert s["frames_lost"] == 0 and s["frames_corrupt"] == 0, s


def test_ct_ends_excursions_above_the_cap_sooner_than_the_meter(ct_rig):
    # The same profile (demo, seed 1), judged from the plant's ground truth:
    # meter only, then CTs, twice, with the excursions of both runs of each
    # pooled. One run is not enough: the meter's 50 ms updates keep a fixed
    # phase to the 50 ms control cycles for a whole run, and a meter read
    # just after each update is as fresh as a CT block (up to a mains cycle
    # old, and spanning one), while one read just before is 50 ms late, so
    # the meter's figures spread over ~2x from run to run (the CTs' do not).
    # A run in which the busy host stalled the firmware (late cycles) says
    # nothing about either input: it is run again (twice at most).
    runs = {"meter": [], "ct": []}
    sites = {"meter": {"cap_w": CAP_W}, "ct": {"cap_w": CAP_W, "ct": ct_site()}}
    spare, k = 2, 0
    while len(runs["ct"]) < 2:
        for tag in ("meter", "ct"):
            if len(runs[tag]) > len(runs["meter" if tag == "ct" else "ct"]):
                continue
            rig = ct_rig(f"{tag}{k}", sites[tag], plant_ct={} if tag == "ct" else None)
            k += 1
            s, tr, frames = run(rig)
            late = frames[-1]["late_cycles"] - frames[0]["late_cycles"]
            t_from = frames[0]["t_plant"]
            r = reaction_ms(tr, t_from)
            assert r, "no load step took the grid over the cap"
            one = dict(over_cap(*excursions(tr, t_from)), reaction_ms=float(np.median(r)),
                       peak_grid_w=s["peak_grid_w"], late_cycles=late)
            print(f"\n{tag:>5}: {one}")
            if late and spare:
                spare -= 1
                continue
            runs[tag].append((excursions(tr, t_from), one))
    res = {}
    for tag, rs in runs.items():
        res[tag] = over_cap(np.concatenate([e[0][0] for e in rs]), sum(e[0][1] for e in rs))
        res[tag]["reaction_ms"] = float(np.median([e[1]["reaction_ms"] for e in rs]))
        res[tag]["peak_grid_w"] = max(e[1]["peak_grid_w"] for e in rs)
    print("pooled:\n" + "\n".join(f"{k:>5}: {v}" for k, v in res.items()))
    ct, meter = res["ct"], res["meter"]
    # CTs see a step at once: dispatch reacts sooner.
    assert ct["reaction_ms"] <= meter["reaction_ms"] + 10, res
    assert ct["peak_grid_w"] <= CAP_W * 1.03, res
    # And the grid comes back under the cap sooner, as the CT grid and the
    # modelled battery power are of the same moment (the meter's grid and the
    # PCS's battery reading are each up to 50 ms old, by different amounts):
    # shorter excursions, p90 and p95. The energy over the cap is mostly
    # that of each step's first 50-70 ms, before any input can act, and the
    # longest excursion (two load steps in a row, 115-235 ms with CTs) hangs
    # on how the cycles line up with the steps: with a lucky meter they come
    # out even, so those two must only be no worse (10 %, half a cycle).
    # Measured: README, "Current transformers".
    assert ct["p90_over_cap_ms"] < meter["p90_over_cap_ms"], res
    assert ct["p95_over_cap_ms"] < meter["p95_over_cap_ms"], res
    assert ct["over_cap_mws"] <= meter["over_cap_mws"] * 1.1, res
    assert ct["max_over_cap_ms"] <= meter["max_over_cap_ms"] + 25, res


def test_reversed_ct_raises_alarm_and_dispatch_falls_back_to_the_meter(ct_rig):
    hold_ms = 1000
    site = {"cap_w": CAP_W, "ct": ct_site(alarm_hold_ms=hold_ms), "lock_heap": True}
    rig = ct_rig("reversed", site, plant_ct={"reverse": [1]})      # CT B mounted backwards
    s, tr, frames = run(rig)
    first = frames[0]["t_plant"] - SETTLE_S
    alarm = [f for f in frames if f["ct_alarm"] & 1]
    assert alarm, [(f["ct_w"], f["grid_w"]) for f in frames[:20]]
    t_alarm = alarm[0]["t_plant"] - first
    print(f"\nreversed CT B: ct_alarm after {t_alarm * 1000:.0f} ms (hold {hold_ms} ms); "
          f"CT {alarm[0]['ct_w'] / 1e6:.1f} MW vs meter {alarm[0]['grid_w'] / 1e6:.1f} MW")
    # The filter needs a few meter readings to pass on_w, then hold_ms.
    assert t_alarm <= hold_ms / 1000 + 1.0, t_alarm
    # It stays up (the CT stays wrong) and the CT is a third low: B counts negative.
    after = [f for f in frames if f["t_plant"] >= alarm[0]["t_plant"]]
    assert all(f["ct_alarm"] & 1 for f in after), [f["ct_alarm"] for f in after]
    ratio = np.median([f["ct_w"] / f["grid_w"] for f in after if f["grid_w"] > 5e6])
    assert 0.2 < ratio < 0.45, ratio
    # Dispatch on the meter from then on: the cap is held, by the bound the
    # fault tests (test_faults.py) hold it to after a fault.
    m = over_cap(*excursions(tr, alarm[0]["t_plant"] + 0.1))
    print(f"after the alarm: {m}; late cycles {frames[-1]['late_cycles'] - frames[0]['late_cycles']}")
    assert m["max_over_cap_ms"] <= 450, m
    w = truth.window(tr, alarm[0]["t_plant"] + 0.1, 1e9)
    assert truth.rolling_mean(w["grid_w"], w["t_s"], 1.0).max() <= CAP_W * 1.03


def test_calibration_is_applied_through_the_command_channel(ct_rig):
    # The site runs with every CT's gain 10 % low; `cabctl calibrate` with a
    # known 100 A read as 90 A (and 0 as 0) sends gain 1.0 back with
    # set_config while the loop runs: CT power then matches the plant.
    key = bytes(range(32))
    site = {"cap_w": CAP_W, "ct": ct_site(gain_ppm=900000, alarm_on_w=8_000_000)}
    rig = ct_rig("calibrate", site, plant_ct={}, key=key)
    out = {}

    def calibrate_later():
        end = time.monotonic() + 20
        while len(getattr(rig, "logger").frames) < 50 and time.monotonic() < end:
            time.sleep(0.05)            # ~2.5 s of cycles on the old calibration first
        args = argparse.Namespace(point=["0:0,0,0", "100000:90000,90000,90000"], site=None,
                                  apply_to=None, apply_port=None, key_file=None)
        try:
            out["rc"] = calibrate.run(args, command=lambda c, a: rig.command(c, a, key=key,
                                                                            timeout=5.0))
        except Exception as e:          # reported by the assertion below
            out["error"] = repr(e)
        out["t"] = time.monotonic() - rig.plant_info["t0_monotonic"]

    th = threading.Thread(target=calibrate_later, daemon=True)
    th.start()
    s, tr, frames = run(rig, 8)
    th.join(timeout=10)
    assert out.get("t"), out
    assert out.get("rc") == 0, out
    cmds = [e for e in rig.logger.events if e.get("event") == "command_result"]
    assert [e["ok"] for e in cmds] == [True, True], cmds        # get_config, set_config

    def ratio(t0, t1):
        return np.median([f["ct_w"] / f["grid_w"] for f in frames
                          if t0 <= f["t_plant"] < t1 and f["grid_w"] > 5e6])
    before, after = ratio(0, out["t"] - 0.2), ratio(out["t"] + 0.3, 1e9)
    print(f"\nCT / meter: {before:.3f} before calibration, {after:.3f} after")
    assert 0.87 < before < 0.93 and 0.98 < after < 1.02, (before, after)

