"""Soak, CI-sized: the firmware on the unix port against the plant for a minute
of spliced GPU-cluster load with faults injected at random (seeded), judged
by the safety monitor, the telemetry and the firmware's heap.

The release check is the same run for an hour: `cabctl soak --minutes 60`
(README, "Soak, fuzz and the safety monitor"). Every fault kind is in the
CI-sized run; the firmware bugs the soak found are pinned by the regression
tests below. A fault kind with a newly found, open firmware bug goes into
OPEN_BUGS (left out of the short soak) with a strict-xfail regression test
until it is fixed.
"""
import json
import time

from pathlib import Path

import numpy as np
import pytest

from cabctl import soak, soak_judge, truth
from cabctl.profiles import fileformat
from cabctl.profiles.core import Profile

SHORT_MIN = 1.0
SEED = 5                   # its minute has pcs-stuck and grid-outage (the kinds once excluded)
OPEN_BUGS = ()             # none open: pcs-stuck and grid-outage fixed (regressions below)
PROBE_CYCLE = Path(__file__).with_name("cycle_alloc_probe.py")


def test_short_soak(tmp_path, unix_only):
    s = soak.run(SHORT_MIN, seed=SEED, run_dir=tmp_path, status_every_s=20, exclude=OPEN_BUGS)
    (tmp_path / "verdict.json").write_text(json.dumps(s, indent=1))
    assert not s["errors"], s["errors"]
    assert s["faults_injected"] >= 3, s["faults_by_kind"]
    assert s["invariant_violations"] == 0, s["first_violations"]
    assert s["unrecovered_faults"] == 0, s["unrecovered"]
    assert s["fault_recoveries"] >= 1, s
    # The loop allocates nothing; commands leave nothing behind.
    assert s["loop_alloc_bytes"] == 0, s["heap_trace"]
    assert s["heap_growth_bytes"] == 0, s
    assert s["frames_lost"] == 0 and s["frames_corrupt"] == 0 and s["device_resets"] == 0, s
    assert s["cycles"] >= SHORT_MIN * 60 * 1000 / 50 * 0.95, s["cycles"]
    assert s["max_cycle_us"] < 2_000_000, s          # never near the watchdog
    assert s["ok"], s
    # Re-judged from the run folder's files alone (`cabctl soak --judge`): the same verdict.
    j = soak_judge.judge(tmp_path)
    assert j["invariant_violations"] == 0 and j["unrecovered_faults"] == 0, j
    assert j["faults_judged"] >= 3 and j["fault_recoveries"] == s["fault_recoveries"], (j, s)
    assert j["heap_growth_bytes"] == 0 and j["loop_alloc_bytes"] == 0, j


def test_fault_schedule_is_seeded_and_complete():
    a = soak.fault_schedule(3600, 1)
    assert a == soak.fault_schedule(3600, 1) and a != soak.fault_schedule(3600, 2)
    kinds = {k for k, _, _ in a}
    from cabctl.plant import faults
    assert kinds == set(faults.KINDS)
    for (k1, s1, d1), (k2, s2, _) in zip(a, a[1:]):
        assert s2 - (s1 + d1) >= soak.FAULT_GAP_S[0] - 1e-6       # one fault at a time
    short = soak.fault_schedule(60, SEED, OPEN_BUGS)
    assert not {k for k, _, _ in short} & set(OPEN_BUGS)
    with pytest.raises(ValueError, match="unknown fault kinds"):
        soak.fault_schedule(60, 1, ("meter-on-fire",))
    p1, segs = soak.spliced_profile(1200, 4)
    p2, _ = soak.spliced_profile(1200, 4)
    assert np.array_equal(p1.watts, p2.watts) and len(segs) >= 2


# --- regression tests: firmware bugs the soak found ------------------------------

def test_regression_command_with_the_heap_locked(make_rig, unix_only):
    rig = make_rig(site={"lock_heap": True})
    th, result = rig.run_in_background(6)
    time.sleep(0.5)
    try:
        reply = rig.command("status", timeout=2.0)
    finally:
        th.join(timeout=20)
    assert reply["ok"]
    assert result.get("ok"), result.get("errors")


def test_regression_grid_outage_with_the_heap_locked(make_rig, unix_only):
    rig = make_rig(site={"lock_heap": True, "reconnect_ms": 1000})
    rig.faults = ["grid-outage@3+2"]
    s = rig.run(8)
    assert "MemoryError" not in (rig.dir / "firmware.log").read_text()
    assert s["ok"], s["errors"]


def test_regression_grid_outage_allocates_nothing(make_rig, unix_only):
    # The soak found 448 B allocated per grid-outage flag change: the site
    # event's dict and frame were built inside the loop. Here every cycle's
    # heap is measured (cycle_alloc_probe.py), event frames included.
    rig = make_rig(site={"reconnect_ms": 1000})
    rig.launch = soak.probe_launcher(rig.dir, PROBE_CYCLE.read_text())
    rig.faults = ["grid-outage@3+2", "grid-outage@8+2"]
    s = rig.run(13)
    assert s["ok"], s["errors"]
    changes = [e for e in rig.logger.events if e.get("event") == "site"]
    assert len(changes) >= 4, changes                 # out, back, out, back: all seen
    assert [e["site_flags"] & 1 for e in changes[:4]] == [1, 0, 1, 0], changes
    log = (rig.dir / "firmware.log").read_text()
    allocs = [ln for ln in log.splitlines() if ln.startswith("LOOP_ALLOC")]
    assert not allocs, allocs


# Stuck at 0 W (load between recharge and cap: battery idle), and stuck at a
# small charge within follow_tol_w of 0 W (load just below recharge_w; the
# 60-minute soak's PCS stuck at -0.09 MW): the SAFE setpoint (0 W) is then
# met without the PCS moving, which must count as following.
STUCK_CASES = {"idle": (15_000_000, {}, (-20_000, 20_000)),
               "small-charge": (14_350_000, {"recharge_w": 14_500_000, "recharge_max_w": 3_000_000},
                                (-400_000, -25_000))}


@pytest.mark.parametrize("case", sorted(STUCK_CASES))
def test_regression_pcs_stuck_at_idle_recovers(make_rig, unix_only, tmp_path, case):
    # The low load, then ~24 MW from 4 s; a little noise, or the meter would
    # look frozen.
    low_w, site, stuck_range = STUCK_CASES[case]
    t = np.arange(0, 60, 0.1)
    noise = np.random.default_rng(5).integers(-50_000, 50_000, len(t))
    prof = Profile(0.1, np.where(t < 4.0, low_w, 24_000_000) + noise, name="step")
    path = fileformat.write(prof, tmp_path / "step.profile")
    rig = make_rig(site={"follow_ms": 1000, "pcs_revert_s": 2, **site})
    rig.profile = path
    rig.faults = ["pcs-stuck@2+6"]                    # stuck from 2 s to 8 s
    s = rig.run(16)
    assert s["ok"], s["errors"]
    stuck_w = truth.window(truth.load(rig.dir / "truth.csv"), 2.2, 7.8)["battery_w"]
    assert stuck_range[0] <= stuck_w.min() and stuck_w.max() <= stuck_range[1], \
        (stuck_w.min(), stuck_w.max())               # stuck where this case means it
    moves = s["state_transitions"]
    into = [m for m in moves if (m["to"], m["cause"]) == ("safe", "pcs_not_following")]
    assert into, moves                                # the stuck PCS was found ...
    back = [m for m in moves if m["to"] == "run" and m["t_s"] > 8.0]
    assert back and back[0]["t_s"] <= 8 + 3.5, moves  # ... and left once it follows again
    tr = truth.load(rig.dir / "truth.csv")
    after = truth.window(tr, 12.0, tr["t_s"][-1])
    assert after["battery_w"].max() > 2_000_000, "battery never dispatched after recovery"
