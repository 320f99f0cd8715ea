"""The verdict parts of `cabctl soak` that work on telemetry frames and
files: fault recoveries, bus errors outside faults, and `judge`, which
re-judges a run folder from its files (a run cut short, or a newer safety
monitor)."""
import io
import json
from pathlib import Path

import numpy as np

from . import invariants, truth
from .plant import faults as plant_faults

STATE_RUN = 1
STATE_SAFE = 3


def recoveries(frames, t0, sched, site):
    """Per fault: back to `run` within the allowance after it cleared? + transitions to run."""
    allow = invariants.recover_ms(site) / 1000
    t = np.array([f["host_time_s"] - t0 for f in frames])
    st = np.array([f.get("state", -1) for f in frames])
    back = {"from_safe": 0, "from_degraded": 0}
    for i in range(1, len(st)):
        if st[i] == STATE_RUN and st[i - 1] != STATE_RUN and st[i - 1] != 0:
            back["from_safe" if st[i - 1] == STATE_SAFE else "from_degraded"] += 1
    unrecovered = []
    worst = 0.0
    for kind, start, length in sched:
        end = start + length
        win = (t >= end) & (t <= end + allow)
        ok = np.flatnonzero(win & (st == STATE_RUN))
        if not len(ok):
            unrecovered.append({"fault": f"{kind}@{start:g}+{length:g}",
                                "states_after": sorted(set(int(x) for x in st[win]))})
        else:
            # how long after it cleared the state was run again (and stayed, at least a frame)
            worst = max(worst, float(t[ok[0]] - end))
    return back, unrecovered, round(worst, 3)


def stray_link_errors(frames, t0, sched, site):
    """Meter/PCS errors counted while no fault was injected (nor recovering from one)."""
    grace = invariants.recover_ms(site) / 1000
    t = np.array([f["host_time_s"] - t0 for f in frames])
    quiet = np.ones(len(t), dtype=bool)
    for _, start, length in sched:
        quiet &= ~((t >= start - 1) & (t <= start + length + grace))
    out = {}
    for name in ("meter_errors", "pcs_errors"):
        e = np.array([f.get(name, 0) for f in frames])
        step = np.diff(e, prepend=e[0])
        out[f"stray_{name}"] = int(step[quiet & (step > 0)].sum())
    return out


def delta(first, last, key):
    a, b = first.get(key), last.get(key)
    return None if a is None or b is None else b - a


def _load_csv(path):
    """Columns of a CSV that may still be being written (the last line may be cut)."""
    with open(path) as f:
        lines = f.read().splitlines()
    head = lines[0].split(",")
    body = [ln for ln in lines[1:] if ln.count(",") == len(head) - 1]
    if len(body) and not body[-1].split(",")[-1]:
        body = body[:-1]
    data = np.loadtxt(io.StringIO("\n".join(body)), delimiter=",", ndmin=2)
    return {k: data[:, i] for i, k in enumerate(head)}


def judge(run_dir):
    """Re-judge a soak's run folder from its files (a run cut short, or a newer
    monitor): the monitor over the ground truth, recoveries, cycles and stray
    bus errors from the telemetry. Heap figures only come from a finished run
    (soak.json)."""
    run_dir = Path(run_dir)
    plan = json.loads((run_dir / "soak_plan.json").read_text())
    tr = _load_csv(run_dir / "truth.csv")
    tel = _load_csv(run_dir / "telemetry.csv")
    sched = [(f.kind, f.start_s, f.duration_s) for f in map(plant_faults.parse, plan["faults"])]
    site = invariants.site_config(plan["site"])
    info = run_dir / "plant_info.json"
    if info.exists():
        t0 = json.loads(info.read_text())["t0_monotonic"]
    else:
        # Line the firmware's grid reading up with the plant's meter register.
        t_tel = tel["host_time_s"] - tel["host_time_s"][0]
        best = None
        for off in np.arange(0.0, 5.0, 0.01):
            g = np.interp(t_tel[:2000] + off, tr["t_s"], tr["meter_grid_w"])
            err = float(np.mean(np.abs(g - tel["grid_w"][:2000])))
            if best is None or err < best[0]:
                best = (err, off)
        t0 = tel["host_time_s"][0] - best[1]
    t_end = float(tr["t_s"][-1])
    sched = [x for x in sched if x[1] + x[2] + invariants.recover_ms(site) / 1000 < t_end]
    frames = [{"host_time_s": h, "state": int(st), "meter_errors": int(me), "pcs_errors": int(pe)}
              for h, st, me, pe in zip(tel["host_time_s"], tel["state"], tel["meter_errors"],
                                       tel["pcs_errors"])]
    first = tel["host_time_s"][0] - t0
    mon = invariants.monitor(truth.window(tr, first, t_end), plan["site"], faults=plan["faults"])
    back, unrecovered, worst = recoveries(frames, t0, sched, site)
    cyc = tel["cycle_us"]
    st = tel["state"].astype(int)
    heap = {}
    hp = run_dir / "heap.jsonl"
    if hp.exists():
        hs = [json.loads(x) for x in hp.read_text().splitlines() if x.strip()]
        live = [d for d in hs if d.get("heap_live") is not None]
        if len(live) >= 2:
            a, b = live[1 if len(live) > 2 else 0], live[-1]     # after the warm-up
            heap = {"heap_live_start": a["heap_live"], "heap_live_end": b["heap_live"],
                    "heap_growth_bytes": b["heap_live"] - a["heap_live"],
                    "heap_live_max": max(d["heap_live"] for d in live),
                    "loop_alloc_bytes": delta(a, b, "loop_alloc_bytes"),
                    "event_alloc_bytes": delta(a, b, "event_alloc_bytes"),
                    "gc_runs": delta(a, b, "gc_runs"), "heap_samples": len(hs)}
    return {"run_dir": str(run_dir), "plant_s": round(t_end, 1), **heap, "cycles": len(cyc),
            "late_cycles": int(tel["late_cycles"][-1]), "max_cycle_us": int(cyc.max()),
            "p99_cycle_us": int(np.percentile(cyc, 99)),
            "time_in_state_pct": {n: round(100 * float(np.mean(st == i)), 1)
                                  for i, n in enumerate(("init", "run", "degraded", "safe"))},
            "faults_judged": len(sched), "fault_recoveries": back["from_safe"],
            "degraded_recoveries": back["from_degraded"], "unrecovered_faults": len(unrecovered),
            "unrecovered": unrecovered[:30], "worst_recovery_s": worst,
            **stray_link_errors(frames, t0, sched, site), **mon.summary(first=10),
            "invariant_episodes": {k: v for k, v in mon.episodes.items() if v}}
