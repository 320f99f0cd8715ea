"""`cabctl sim`: compare controllers on one profile and plant, faster than real time.

`--prediction on` runs the cabinet controller with the firmware's predictor
(cabinet/predict.py) feeding the engine, `both` runs it with and without
(columns `cabinet` and `cabinet_pred`); `--hints on` (default) also gives
the predictor the job events the profile generator knows (starts, first
compute after loading or a checkpoint, checkpoint starts, planned stops;
not crashes), each `--hint-lead-s` before it is due.
"""
import json
import sys
import time
from pathlib import Path

from .. import profiles
from ..rig import new_run_dir
from . import controllers, report, run, scenario
from . import site as site_sim

CONTROLLERS = ("cabinet", "none", "openems", "optimal")
PRED = "cabinet_pred"


def add_arguments(p):
    p.add_argument("--scenario", default="texas",
                   help=f"built-in ({', '.join(scenario.names())}) or a scenario JSON file")
    p.add_argument("--profile", help="override the scenario's load profile (name or file)")
    p.add_argument("--hours", type=float, help="override the scenario's duration")
    p.add_argument("--controller", default="all",
                   help=f"one of {', '.join(CONTROLLERS)}, or all (default)")
    p.add_argument("--prediction", choices=("off", "on", "both"), default="off",
                   help="cabinet controller with the load predictor (on), without (off, "
                        "default), or both side by side")
    p.add_argument("--hints", choices=("on", "off"), default="on",
                   help="with --prediction: job events from the profile generator as hints")
    p.add_argument("--hint-lead-s", type=float, default=5.0,
                   help="how long before an event its hint is sent (default 5 s)")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    p.add_argument("--out", help="run folder (default: a new one under runs/)")
    p.add_argument("--no-plot", action="store_true")


def job_events(spec, seed, seconds):
    """The generator's job events for a built-in profile or generator config, else []."""
    from ..profiles import config as pconfig, generator
    spec = str(spec)
    if spec in pconfig.scenario_names():
        cfg = pconfig.scenario(spec)
    elif spec.endswith(".json") and Path(spec).is_file():
        cfg = pconfig.load_file(spec)
    else:
        return []
    return generator.job_events(cfg, seed=seed, seconds=seconds)


def simulate(sc, which, profile=None, hours=None, prediction="off", hints=True, hint_lead_s=5.0,
             pred_cfg=None):
    """Run the named controllers on one scenario; return (report dict, traces).

    prediction: "off", "on" (the cabinet controller runs with the predictor)
    or "both" (`cabinet` without, `cabinet_pred` with)."""
    seconds = (hours if hours is not None else sc["hours"]) * 3600
    spec = profile or sc["profile"]
    prof = profiles.load(spec, seed=sc["seed"], seconds=seconds)
    site, plant_cfg, period = sc["site_cfg"], sc["plant_cfg"], sc["period_ms"]
    judged = sc.get("judge_cfg", site)        # the contracted ramp limit (scenario.py)
    out = {"scenario": sc["name"], "profile": prof.name, "seconds": seconds, "period_ms": period}
    # Outage, PV, genset: the cabinet runs with the firmware's site logic;
    # the other controllers have none, so such a scenario runs only it.
    on_site = [k for k in ("outage", "pv", "genset") if k in sc]
    if on_site:
        which = [w for w in which if w == "cabinet"]
        if not which:
            raise ValueError(f"scenario {sc['name']} has {'/'.join(on_site)}: "
                             f"only the cabinet controller runs it")
    outage = sc.get("outage")
    faults = [f"grid-outage@{outage.start_s:g}+{outage.duration_s:g}"] if outage else []
    traces = {}
    baseline = run.no_battery(prof, period, seconds)
    events = []
    if prediction != "off":
        events = job_events(spec, sc["seed"], seconds) if hints else []
        which = list(which)
        if prediction == "both" and "cabinet" in which:
            which.insert(which.index("cabinet") + 1, PRED)
        elif "cabinet" in which:
            which[which.index("cabinet")] = PRED
        out["prediction"] = {"mode": prediction, "hints": len(events), "hint_lead_s": hint_lead_s}
    ctls = {}
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
                cls = site_sim.CabinetSite if on_site else controllers.Cabinet
                kw = {"pv": "pv" in sc} if on_site else {}
                if name == "cabinet":
                    ctl = cls(site, **kw)
                elif name == PRED:
                    ctl = cls(site, prediction=True, hints=events, pred_cfg=pred_cfg,
                              hint_lead_s=hint_lead_s, **kw)
                else:
                    ctl = controllers.OpenEms(site)
                ctls[name] = ctl
                tr = run.simulate(prof, plant_cfg, ctl, period, seconds, outage=outage)
            traces[name] = tr
            out[name] = report.metrics(tr, judged, plant_cfg.capacity_wh, sc.get("tariff", {}),
                                       faults=faults)
            if outage is not None and outage.start_s < seconds and tr.islanded is not None:
                out[name]["outage"] = site_sim.ride_through(tr, outage, judged)
            if "pv" in sc and tr.pv_w is not None:
                out[name]["pv"] = site_sim.pv_figures(tr)
            if name == PRED:
                out[name]["predictor"] = ctl.summary(len(tr.t_s) // 2)
        out[name]["cpu_s"] = round(time.process_time() - t0, 2)
    if "none" in out:
        for name in ("cabinet", PRED, "openems"):
            if name in out:
                out[name]["savings_usd"] = round(out["none"]["cost_usd"] - out[name]["cost_usd"], 2)
    starts = [e["t_s"] for e in job_events(spec, sc["seed"], seconds) if e["kind"] == "train_start"] \
        if prediction != "off" else []
    for name in ("cabinet", PRED):
        if name in traces and starts:
            wh, over_w = report.excursion_near(traces[name], site["cap_w"], starts)
            out[name]["startup_excursion_wh"] = wh
            out[name]["startup_max_over_cap_w"] = over_w
    if "cabinet" in out and PRED in out:
        a, b = out["cabinet"], out[PRED]
        out["prediction"]["energy_above_cap_cut_pct"] = (
            round(100 * (1 - b["energy_above_cap_wh"] / a["energy_above_cap_wh"]), 1)
            if a["energy_above_cap_wh"] else 0.0)
    return out, traces


def run_cli(args):
    try:
        sc = scenario.load(args.scenario)
        which = CONTROLLERS if args.controller == "all" else (args.controller,)
        if any(w not in CONTROLLERS for w in which):
            raise ValueError(f"unknown controller {args.controller!r} (one of {', '.join(CONTROLLERS)}, all)")
        out, traces = simulate(sc, which, args.profile, args.hours, args.prediction,
                               args.hints == "on", args.hint_lead_s)
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
    names = [n for n in ("none", "openems", "cabinet", PRED) if n in out]
    keys = ["peak_grid_w", "max_over_cap_ms", "energy_above_cap_wh", "minutes_at_cap",
            "max_grid_ramp_w_per_s", "demand_peak_15min_w", "battery_full_cycles", "min_soc_cpct",
            "invariant_violations", "cost_usd", "savings_usd", "startup_excursion_wh",
            "startup_max_over_cap_w", "cpu_s"]
    lines = [f"scenario {out['scenario']}, profile {out['profile']}, {out['seconds'] / 3600:g} h "
             f"at {out['period_ms']} ms", f"{'':24}" + "".join(f"{n:>14}" for n in names)]
    for k in keys:
        lines.append(f"{k:24}" + "".join(f"{str(out[n].get(k, '')):>14}" for n in names))
    if "optimal" in out:
        lines.append(f"optimal_cap_w (perfect foresight): {out['optimal']['optimal_cap_w']}")
    if PRED in out:
        p = out[PRED]["predictor"]
        lines.append(f"predictor: active {p['active_share']:.0%} of cycles, period {p['period_ms']} ms "
                     f"(confidence {p['conf_pm']}/1000, false-alarm share {p['err_pm']}/1000), "
                     f"checkpoint period {p['slow_period_ms'] / 1000:g} s; hints {p['hints_added']} "
                     f"sent, {p['hints_seen']} seen, {p['hints_expired']} expired")
        if "energy_above_cap_cut_pct" in out["prediction"]:
            lines.append(f"energy above cap with prediction: "
                         f"-{out['prediction']['energy_above_cap_cut_pct']} % vs reactive")
    for n in names:
        lines += site_sim.format_lines(n, out[n])
    lines.append(f"run folder: {out.get('run_dir', '')}")
    return "\n".join(lines)
