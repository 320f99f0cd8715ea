"""Four cabinets (3 MW / 6 MWh each) on one site meter and an 18 MW cap, the
texas profile's first 300 s, offline (cabctl.sim.fleet: the firmware's engine
and fleet share on the fleet plant's physics, cabinets at their own phases):
fleet shares (250 pm each) against the naive rule (every cabinet alone on
its feeder, share 1000), judged by fleet_judge.
"""
import json

import numpy as np

from cabctl import fleet_judge, profiles, truth
from cabctl.plant.model import PlantConfig
from cabctl.sim.fleet import simulate_fleet

SECONDS = 300
SITE = {"cap_w": 18_000_000, "recharge_w": 14_500_000, "recharge_max_w": 3_000_000,
        "reserve_cpct": 1500, "soc_min_cpct": 2500}
PCS = PlantConfig(charge_max_w=3e6, discharge_max_w=3e6, capacity_wh=6e6)


def figures(prof, share_pm):
    sites = [dict(SITE, fleet_share_pm=share_pm)] * 4
    tr = simulate_fleet(prof, [PCS] * 4, sites, seconds=SECONDS)
    m = truth.metrics(tr, SITE["cap_w"])
    j = fleet_judge.judge(tr, sites)
    need = np.maximum(0, tr["load_w"] - SITE["cap_w"])
    beyond = np.where(tr["battery_w"] > 0, np.maximum(0, tr["battery_w"] - need), 0)
    split = [float(np.clip(tr[f"battery_w_{k}"], 0, None).mean()) for k in range(4)]
    return {"peak_grid_w": m["peak_grid_w"], "max_over_cap_ms": m["max_over_cap_ms"],
            # what the fleet discharged beyond the need, worst 1 s mean
            "discharge_beyond_need_1s_w": int(truth.rolling_mean(beyond, tr["t_s"], 1.0).max()),
            "min_grid_w": int(tr["grid_w"].min()), "max_grid_w": m["max_grid_w"],
            "invariant_violations": j["invariant_violations"],
            "discharge_split_max_over_min": round(max(split) / max(min(split), 1.0), 2)}


def main():
    prof = profiles.load("texas", seed=1, seconds=SECONDS + 60)
    line = {"bench": "fleet_share", "cabinets": 4, "seconds": SECONDS, "cap_w": SITE["cap_w"]}
    for name, pm in (("share", 250), ("naive", 1000)):
        line.update({f"{name}_{k}": v for k, v in figures(prof, pm).items()})
    print(json.dumps(line))


if __name__ == "__main__":
    main()
