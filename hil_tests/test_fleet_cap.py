"""Four cabinets, four firmware processes on the MicroPython unix port, one site
meter and one cap, judged from the site plant's ground truth (fleet_judge):
without communication (fleet shares), and with the site coordinator killed
mid-peak (the cabinets fall back to their own shares and still hold the cap).

The cabinets run with meter_fail_cycles = pcs_fail_cycles = 5 instead of 3:
four firmware processes, the plant (five threads) and the rig share two
cores here, and a plant stall of ~150 ms (all four buses at once) was seen
with another load of 5-8 on the machine; with 3 that puts every cabinet in
SAFE for safe_hold_ms at once. The judge's deadlines follow the setting.
"""
import numpy as np
import pytest

from cabctl import truth
from cabctl.fleet_rig import FleetRig

CAP_W = 18_000_000
SITE = {"cap_w": CAP_W, "recharge_w": 14_500_000, "recharge_max_w": 3_000_000,
        "reserve_cpct": 1500, "soc_min_cpct": 2500, "soc_max_cpct": 9500,
        "meter_fail_cycles": 5, "pcs_fail_cycles": 5,
        "lock_heap": True}      # the fleet loop, share commands and their lapse allocate nothing
# Four 3 MW / 6 MWh cabinets: the texas profile's first minute peaks ~5 MW
# over the cap, more than any one of them can cover.
PLANT = {"charge_max_w": 3_000_000, "discharge_max_w": 3_000_000, "capacity_wh": 6_000_000}


@pytest.fixture
def fleet_rig(tmp_path, unix_only):
    def make(**kw):
        return FleetRig(tmp_path, n=4, site=SITE, profile="texas", **kw)
    return make


def _common(s):
    assert s["ok"], s["errors"]
    assert s["peak_load_w"] > CAP_W * 1.1, s              # the cap was really needed
    assert s["invariant_violations"] == 0, s["first_violations"]
    assert s["max_export_w"] == 0, s
    for k, c in enumerate(s["per_cabinet"]):
        assert c["frames_lost"] == 0 and c["frames_corrupt"] == 0, (k, c)


def test_four_cabinets_hold_a_shared_cap_without_communication(fleet_rig):
    rig = fleet_rig(plant=PLANT)
    s = rig.run(20)
    _common(s)
    # Each took part, none covered the site alone (3 MW would be its limit).
    assert all(0.4e6 < w < 2.9e6 for w in s["battery_w_by_pcs_max"]), s["battery_w_by_pcs_max"]
    print({k: s[k] for k in ("peak_grid_w", "max_over_cap_ms", "peak_load_w", "cap_bound_ms",
                             "battery_w_by_pcs_max")})


def test_coordinator_killed_mid_peak_cabinets_fall_back_and_hold(fleet_rig):
    plant = dict(PLANT, pcs=[{"soc0_cpct": s} for s in (7000, 6000, 5000, 4000)])
    rig = fleet_rig(plant=plant,
                    coordinator_args=["--reserve-cpct", "1500", "--soc-max-cpct", "9500"])
    seen = {}

    def during(rig, t):
        # Kill it at the first moment after 8 s that the site is over the cap.
        f = rig.cabs[0].logger.latest
        if rig.coord_killed_at is None and t >= 8 and f and f["load_w"] > CAP_W * 1.05:
            seen["load_w"] = f["load_w"]
            rig.kill_coordinator()
        if rig.coord_killed_at is not None and "status" not in seen and \
                t > seen.setdefault("t_kill", t) + 4.5:
            seen["status"] = [rig.command(k, "status")["data"] for k in range(4)]

    s = rig.run(19, coordinate=True, during=during)
    _common(s)
    kill = s["coordinator_killed_at_s"]
    assert kill is not None and seen["load_w"] > CAP_W, seen
    for k, c in enumerate(s["per_cabinet"]):
        assert c["shares_accepted"] >= 8, (k, c)          # it did coordinate
        assert c["share_lapsed"] == 1, (k, c)             # ... and was missed once
    # Back on their own shares (250 pm each) after coord_timeout_ms.
    for k, st in enumerate(seen["status"]):
        dis_pm, cha_pm, coord_left_ms, lapsed = st["share"]
        assert coord_left_ms == 0 and dis_pm == 250 and lapsed == 1, (k, st)
    # The cap held after the fallback too (the whole run is judged above;
    # here the part after the lapse alone, which really had peaks).
    tr = truth.load(rig.dir / "truth.csv")
    after = truth.window(tr, kill + 3.5, kill + 100)
    m = truth.metrics(after, CAP_W)
    assert m["peak_load_w"] > CAP_W * 1.1 and m["judged_seconds"] > 3, m
    assert m["max_over_cap_ms"] <= s["cap_bound_ms"], m
    # While coordinated, the fullest cabinet discharged more than the emptiest.
    before = truth.window(tr, 2.0, kill)
    e = [float(np.clip(before[f"battery_w_{k}"], 0, None).sum()) for k in range(4)]
    # Shares ~440 vs ~90 pm at the start (4.8x); equal shares give ~1 (up to
    # ~1.8 by the split's drift, README "Fleet coordination").
    assert e[0] > 2.5 * e[3], e
    print({"killed_at_s": round(kill, 2), "load_at_kill_w": seen["load_w"],
           "max_over_cap_ms_after_lapse": m["max_over_cap_ms"], "discharge_ratio_0_3":
           round(e[0] / max(e[3], 1.0), 2), **{k: s[k] for k in ("peak_grid_w", "max_over_cap_ms")}})
