"""`cabctl profile gen|import|stats|plot|list`: make, import, inspect load profiles."""
import json
import sys
from pathlib import Path

from . import config, fileformat, load
from .core import ProfileError
from .importers import FORMATS


def add_arguments(p):
    sub = p.add_subparsers(dest="profile_command", required=True)

    g = sub.add_parser("gen", help="generate a training-cluster profile from a scenario or config")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("name", nargs="?", help=f"built-in scenario ({', '.join(config.scenario_names())})")
    src.add_argument("--config", help="generator config JSON (fields as in profiles/scenarios/*.json)")
    g.add_argument("--out", required=True, help="profile file to write (.gz: gzip)")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--seconds", type=float, help="duration (default: the scenario's own)")
    g.set_defaults(profile_run=run_gen)

    i = sub.add_parser("import", help="import a GPU power log as a site profile")
    i.add_argument("file")
    i.add_argument("--format", required=True, choices=FORMATS)
    i.add_argument("--out", required=True, help="profile file to write (.gz: gzip)")
    i.add_argument("--gpus-per-node", type=int, help="GPUs summed into one node (default: the whole log)")
    scale = i.add_mutually_exclusive_group()
    scale.add_argument("--nodes", type=int, help="build a cluster of N nodes from the log's nodes")
    scale.add_argument("--scale-to-gpus", type=int, help="build a cluster of N GPUs")
    i.add_argument("--shift", choices=("random", "none"), default="none",
                   help="copies synchronized (none: worst case) or randomly time-shifted")
    i.add_argument("--seed", type=int, default=1, help="seed of the random shifts")
    i.add_argument("--overhead", type=float, default=1.0, metavar="PUE",
                   help="facility overhead, a slow component (60 s lag) on top of IT power")
    i.add_argument("--step-ms", type=float, help="output step (default: the log's sample interval)")
    i.add_argument("--gaps", choices=("hold", "interpolate"), default="hold",
                   help="how logger stalls are filled (they are always reported)")
    i.add_argument("--gap-s", type=float, help="a sample interval longer than this is a stall "
                   "(default: max(3 x median interval, median + 0.5 s))")
    i.add_argument("--gpus", type=int, help="nvidia-smi without an index column: GPUs per block")
    i.add_argument("--skip-bad", action="store_true", help="skip bad lines (counted and reported)")
    i.add_argument("--json", action="store_true", help="print the import report and stats as JSON")
    i.set_defaults(profile_run=run_import)

    s = sub.add_parser("stats", help="duration, mean/min/max, steps, 1 s rise/fall, period, gaps")
    s.add_argument("profile", help="profile file or built-in scenario")
    s.add_argument("--json", action="store_true")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--seconds", type=float)
    s.set_defaults(profile_run=run_stats)

    pl = sub.add_parser("plot", help="PNG of a profile")
    pl.add_argument("profile", help="profile file or built-in scenario")
    pl.add_argument("--out", help="PNG path (default: <profile>.png)")
    pl.add_argument("--seed", type=int, default=1)
    pl.add_argument("--seconds", type=float)
    pl.set_defaults(profile_run=run_plot)

    ls = sub.add_parser("list", help="built-in scenarios")
    ls.set_defaults(profile_run=run_list)


def run(args):
    try:
        return args.profile_run(args) or 0
    except ProfileError as e:
        print(f"cabctl profile: {e}", file=sys.stderr)
        return 2


def _summary(p):
    from .stats import fmt_w, stats
    s = stats(p)
    return (f"{s['duration_s']:g} s at {s['step_ms']:g} ms: mean {fmt_w(s['mean_w'])}, "
            f"max {fmt_w(s['max_w'])}, largest 1 s rise {fmt_w(s['largest_rise_1s_w'])}")


def run_gen(args):
    from .generator import generate
    cfg = config.load_file(args.config) if args.config else config.scenario(args.name)
    p = generate(cfg, seed=args.seed, seconds=args.seconds)
    fileformat.write(p, args.out)
    print(f"wrote {args.out}: {p.name}, {_summary(p)}", file=sys.stderr)


def run_import(args):
    from . import importers, resample
    from .stats import stats
    table = importers.read(args.file, args.format, skip_bad=args.skip_bad, gpus=args.gpus)
    opts = resample.Options(step_ms=args.step_ms, gaps=args.gaps, gap_s=args.gap_s,
                            gpus_per_node=args.gpus_per_node, nodes=args.nodes,
                            scale_to_gpus=args.scale_to_gpus, shift=args.shift, seed=args.seed,
                            overhead=args.overhead)
    p, rep = resample.build(table, opts, name=Path(args.out).name.split(".")[0])
    fileformat.write(p, args.out)
    if args.json:
        print(json.dumps({"report": rep.to_dict(), "stats": stats(p), "out": str(args.out)}))
        return
    r = rep
    print(f"imported {r.source} ({r.format}): {r.rows} rows, {r.series} series, "
          f"sample interval {r.sample_interval_ms:g} ms -> step {r.step_ms:g} ms, {r.duration_s:g} s",
          file=sys.stderr)
    print(f"  gaps (logger stalls, filled by {r.gap_fill}, not load steps): {len(r.gaps)}"
          + "".join(f"\n    at {g['start_s']:g} s for {g['len_s']:g} s" for g in r.gaps), file=sys.stderr)
    if r.skipped_lines:
        print(f"  skipped lines: {r.skipped_lines}" + "".join(f"\n    {x}" for x in r.skipped),
              file=sys.stderr)
    for note in r.notes:
        print(f"  note: {note}", file=sys.stderr)
    print(f"  {r.nodes_in_log} node(s) of {r.gpus_per_node} GPUs in the log -> {r.copies} copies "
          f"({r.gpus_out} GPUs), shift {r.shift}, overhead PUE {r.overhead:g}", file=sys.stderr)
    print(f"wrote {args.out}: {_summary(p)}", file=sys.stderr)


def run_stats(args):
    from .stats import format_text, stats
    s = stats(load(args.profile, seed=args.seed, seconds=args.seconds))
    print(json.dumps(s) if args.json else format_text(s))


def run_plot(args):
    from .plot import plot_profile
    p = load(args.profile, seed=args.seed, seconds=args.seconds)
    out = args.out or f"{Path(args.profile).name.split('.')[0]}.png"
    print(plot_profile(p, out))


def run_list(args):
    for name in config.scenario_names():
        cfg = config.scenario(name)
        print(f"{name:<18} {cfg.seconds:>6g} s  {cfg.step_ms:g} ms  {cfg.description}")
