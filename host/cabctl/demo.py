"""`cabctl demo`: the whole loop in software, live, then a summary and a plot."""
import json
import sys

from .rig import Rig, RigError, new_run_dir


def add_arguments(p):
    p.add_argument("--seconds", type=float, default=40)
    p.add_argument("--cap-w", type=int, default=18_000_000, help="grid import cap")
    p.add_argument("--period-ms", type=int, default=50, help="firmware control period")
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--target", default="unix", help="unix, or port:DEV for a real board")
    p.add_argument("--bus", help="RS-485 adapter the plant serves on (with --target port:DEV)")
    p.add_argument("--fault", action="append", default=[], metavar="KIND[@START[+DURATION]]",
                   help="inject a plant fault (repeatable), e.g. meter-timeout@5+3")
    p.add_argument("--profile", default="demo",
                   help="load profile: built-in scenario (cabctl profile list) or profile file")


def run(args):
    run_dir = new_run_dir(tag="demo")
    # Recharge only well below the cap, so a small site (an imported 8-GPU
    # log, say) gets a consistent config instead of a disarmed controller.
    recharge_w = min(14_000_000, args.cap_w * 3 // 4)
    rig = Rig(run_dir, site={"cap_w": args.cap_w, "recharge_w": recharge_w,
                             "period_ms": args.period_ms},
              target=args.target, bus_port=args.bus, quiet=args.json, profile=args.profile,
              faults=args.fault)
    if not args.json:
        print(f"demo: plant + firmware (MicroPython unix port) for {args.seconds:g} s, "
              f"cap {args.cap_w / 1e6:g} MW, load profile {args.profile}; run folder {run_dir}",
              file=sys.stderr)
    try:
        s = rig.run(args.seconds)
    except RigError as e:
        print(f"cabctl demo: {e}", file=sys.stderr)
        return 2
    if not args.no_plot and "peak_grid_w" in s:
        from .plot import plot_run
        s["plot"] = str(plot_run(run_dir, s["cap_w"]))
    if args.json:
        print(json.dumps(s))
    else:
        _print_summary(s)
    return 0 if s["ok"] else 1


def _print_summary(s):
    rows = [
        ("grid import cap", f"{s['cap_w'] / 1e6:.2f} MW"),
        ("peak load (truth)", f"{s.get('peak_load_w', 0) / 1e6:.2f} MW"),
        ("peak grid, 1 s average", f"{s.get('peak_grid_w', 0) / 1e6:.2f} MW"),
        ("longest time above cap + 1 %", f"{s.get('max_over_cap_ms', '?')} ms"),
        ("cycles / late", f"{s['cycles']} / {s['late_cycles']}"),
        ("frames received / lost / corrupt",
         f"{s['frames_received']} / {s['frames_lost']} / {s['frames_corrupt']}"),
        ("invariant violations (monitor)", f"{s.get('invariant_violations', '?')}"),
        ("run folder", s["run_dir"]),
    ]
    if "plot" in s:
        rows.append(("plot", s["plot"]))
    print()
    for k, v in rows:
        print(f"  {k:<34} {v}")
    for v in s.get("first_violations", []):
        print(f"  violation: {v}")
    for e in s["errors"]:
        print(f"  ERROR: {e}")
