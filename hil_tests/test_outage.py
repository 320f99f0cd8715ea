"""Outage ride-through, grid return and a PV day, judged from ground truth."""
import numpy as np

from cabctl import truth

# A site whose PCS could carry it alone, with a small battery so SoC moves
# within seconds, a genset and fast settings so a test takes seconds, not hours.
PLANT = {"capacity_wh": 1_000_000, "soc0_cpct": 6000, "charge_max_w": 30e6, "discharge_max_w": 30e6,
         "genset_max_w": 15e6, "genset_start_delay_s": 1.0, "genset_ramp_w_per_s": 10e6}
SITE = {"genset_map": "genset_generic", "reconnect_ms": 2000, "shed_soc_cpct": 5900,
        "genset_start_soc_cpct": 5850, "genset_start_after_ms": 600000,
        "genset_min_run_ms": 1000, "genset_cooldown_ms": 500,
        "ramp_up_w_per_s": 4_000_000, "ramp_down_w_per_s": 4_000_000}
OUT_AT, OUT_FOR = 2.0, 5.0


def first_t(tr, mask):
    idx = np.flatnonzero(mask)
    return float(tr["t_s"][idx[0]]) if len(idx) else None


def test_outage_mid_peak_then_grid_return(make_rig, unix_only):
    rig = make_rig(site=SITE, plant=PLANT)
    rig.faults = [f"grid-outage@{OUT_AT}+{OUT_FOR}"]
    s = rig.run(OUT_AT + OUT_FOR + 5)
    assert s["ok"], s["errors"]
    assert s["invariant_violations"] == 0, s["first_violations"]
    tr = truth.load(rig.dir / "truth.csv")
    out = truth.window(tr, OUT_AT + 0.05, OUT_AT + OUT_FOR)
    # The site is served throughout: PCS + PV + genset cover the load.
    assert out["unserved_w"].max() == 0
    assert (out["grid_w"] == 0).all() and out["battery_w"].max() > 10e6
    # Load shed was requested once SoC reached its threshold (telemetry), and
    # the genset was started before the battery reached its floor (truth).
    frames = rig.logger.frames
    shed = [f for f in frames if f["site_flags"] & 2]
    assert shed, "no load-shed request"
    assert min(f["soc_cpct"] for f in shed[:3]) <= SITE["shed_soc_cpct"] + 20
    t_gen = first_t(tr, tr["genset_cmd"] > 0)
    assert t_gen is not None and OUT_AT < t_gen < OUT_AT + OUT_FOR
    assert tr["soc_cpct"][tr["t_s"] <= t_gen].min() > 0
    assert out["genset_w"].max() > 2e6, "genset never took load"
    # Grid return: the firmware leaves outage mode only after reconnect_ms of
    # stable grid, then the grid takes the load back at the ramp limit.
    back = [f for f in frames if f["host_time_s"] - rig.plant_info["t0_monotonic"] > OUT_AT + 1
            and not f["site_flags"] & 1]
    assert back, "never left outage mode"
    t_back = back[0]["host_time_s"] - rig.plant_info["t0_monotonic"]
    assert t_back >= OUT_AT + OUT_FOR + SITE["reconnect_ms"] / 1000 - 0.1, t_back
    after = truth.window(tr, OUT_AT + OUT_FOR, tr["t_s"][-1])
    per_s = truth.rolling_mean(after["grid_w"], after["t_s"], 1.0)
    n = int(round(1 / np.median(np.diff(after["t_s"]))))
    ramp = np.abs(per_s[n:] - per_s[:-n]).max()
    assert ramp <= 1.5 * SITE["ramp_up_w_per_s"], ramp


def test_pv_surplus_charges_the_battery_before_anything_is_exported(make_rig, unix_only):
    # Noon with 24 MW of PV on a 9-25 MW site: a surplus the battery can take, often.
    plant = {"pv_peak_w": 24e6, "clock_start_h": 13.0, "capacity_wh": 20e6, "soc0_cpct": 5000,
             "charge_max_w": 20e6, "discharge_max_w": 20e6}
    rig = make_rig(site={"pv_map": "pv_sunspec", "recharge_w": 14_000_000,
                         "export_margin_w": 1_000_000}, plant=plant)
    s = rig.run(8)
    assert s["ok"], s["errors"]
    assert s["invariant_violations"] == 0, s["first_violations"]
    tr = truth.window(truth.load(rig.dir / "truth.csv"), 1.0, 8.0)
    surplus = tr["pv_w"] > tr["load_w"] + 1e6
    assert surplus.mean() > 0.3, "no PV surplus: proves nothing"
    # Surplus goes into the battery...
    assert (tr["battery_w"][surplus] < 0).mean() > 0.95
    # ...and export never goes beyond its limit (0) past the short reaction
    # transients of load drops (the invariant monitor's EXPORT_MS).
    exporting = tr["grid_w"] < -200e3
    assert truth.longest_run_s(exporting, tr["t_s"]) <= 0.5
    # Reported, not asserted: what leaks out while the regulation catches up
    # (measured ~12 % of the surplus energy: the meter and PCS readings are
    # up to a period apart, so zero-export regulation swings about +-1 MW).
    exported = np.clip(-tr["grid_w"], 0, None).sum()
    surplus_w = np.clip(tr["pv_w"] - tr["load_w"], 0, None).sum()
    print(f"exported {exported / surplus_w:.1%} of the PV surplus energy")
    assert rig.logger.frames[-1]["pv_w"] > 0
