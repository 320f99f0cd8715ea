"""`cabctl sim`: compare controllers on one profile and plant, faster than real time."""
import json
import sys
import time
from pathlib import Path

from .. import profiles
from ..rig import new_run_dir
from . import controllers, report, run, scenario

CONTROLLERS = ("cabinet", "none", "openems", "optimal")


def add_arguments(p):
    p.add_argument("--scenario", default="texas",
                   help=f"built-in ({', '.join(scenario.names())}) or a scenario JSON file")
    p.add_argument("--profile", help="override the scenario's load profile (name or file)")
    p.add_argument("--hours", type=float, help="override the scenario's duration")
    p.add_argument("--controller", default="all",
                   help=f"one of {', '.join(CONTROLLERS)}, or all (default)")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    p.add_argument("--out", help="run folder (default: a new one under runs/)")
    p.add_argument("--no-plot", action="store_true")


def simulate(sc, which, profile=None, hours=None):
    """Run the named controllers on one scenario; return (report dict, traces)."""
    seconds = (hours if hours is not None else sc["hours"]) * 3600
    prof = profiles.load(profile or sc["profile"], seed=sc["seed"], seconds=seconds)
    site, plant_cfg, period = sc["site_cfg"], sc["plant_cfg"], sc["period_ms"]
    out = {"scenario": sc["name"], "profile": prof.name, "seconds": seconds, "period_ms": period}
    traces = {}
    baseline = run.no_battery(prof, period, seconds)
    for name in which:
        t0 = time.process_time()
        if name == "optimal":
            load_1s = report.block_means(baseline.load_w, int(round(1000 / period)))
            out["optimal"] = {"optimal_cap_w": controllers.optimal_cap_w(
                load_1s, plant_cfg, site["reserve_cpct"], site["soc_max_cpct"])}
        else:
            if name == "none":
                tr = baseline
            else:
                ctl = controllers.Cabinet(site) if name == "cabinet" else controllers.OpenEms(site)
                tr = run.simulate(prof, plant_cfg, ctl, period, seconds)
            traces[name] = tr
            out[name] = report.metrics(tr, site, plant_cfg.capacity_wh, sc.get("tariff", {}))
        out[name]["cpu_s"] = round(time.process_time() - t0, 2)
    if "none" in out:
        for name in ("cabinet", "openems"):
            if name in out:
                out[name]["savings_usd"] = round(out["none"]["cost_usd"] - out[name]["cost_usd"], 2)
    return out, traces


def run_cli(args):
    try:
        sc = scenario.load(args.scenario)
        which = CONTROLLERS if args.controller == "all" else (args.controller,)
        if any(w not in CONTROLLERS for w in which):
            raise ValueError(f"unknown controller {args.controller!r} (one of {', '.join(CONTROLLERS)}, all)")
        out, traces = simulate(sc, which, args.profile, args.hours)
    except (ValueError, profiles.ProfileError) as e:
        print(f"cabctl sim: {e}", file=sys.stderr)
        return 2
    run_dir = Path(args.out) if args.out else new_run_dir(tag=f"sim-{sc['name']}")
    run_dir.mkdir(parents=True, exist_ok=True)
    out["run_dir"] = str(run_dir)
    if not args.no_plot and traces:
        from .plot import plot_sim
        out["plot"] = str(plot_sim(traces, sc["site_cfg"]["cap_w"], run_dir / "sim.png"))
    (run_dir / "report.json").write_text(json.dumps(out, indent=1))
    if args.json:
        print(json.dumps(out))
    else:
        print(format_table(out))
    return 0


def format_table(out):
    names = [n for n in ("none", "openems", "cabinet") if n in out]
    keys = ["peak_grid_w", "max_over_cap_ms", "energy_above_cap_wh", "minutes_at_cap",
            "max_grid_ramp_w_per_s", "demand_peak_15min_w", "battery_full_cycles", "min_soc_cpct",
            "invariant_violations", "cost_usd", "savings_usd", "cpu_s"]
    lines = [f"scenario {out['scenario']}, profile {out['profile']}, {out['seconds'] / 3600:g} h "
             f"at {out['period_ms']} ms", f"{'':24}" + "".join(f"{n:>14}" for n in names)]
    for k in keys:
        lines.append(f"{k:24}" + "".join(f"{str(out[n].get(k, '')):>14}" for n in names))
    if "optimal" in out:
        lines.append(f"optimal_cap_w (perfect foresight): {out['optimal']['optimal_cap_w']}")
    lines.append(f"run folder: {out.get('run_dir', '')}")
    return "\n".join(lines)
