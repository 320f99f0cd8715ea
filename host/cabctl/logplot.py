"""`cabctl plot RUN`: a PNG of grid, battery, load, SoC and the cap from telemetry.

RUN is a run folder (`cabctl log`: telemetry-NNNN.parquet/.csv parts;
`cabctl demo`: telemetry.csv) or one telemetry CSV/Parquet file. The plant's
ground truth has its own plot (plot.py, `--truth`), used too for a folder
with truth.csv but no telemetry.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from . import logstore
from .telemetry import load_schema


class PlotError(ValueError):
    pass


def telemetry_files(run):
    run = Path(run)
    if run.is_file():
        if run.suffix not in (".csv", ".parquet"):
            raise PlotError(f"{run}: not a telemetry .csv or .parquet file")
        return [run]
    if not run.is_dir():
        raise PlotError(f"{run}: no such run folder or file")
    return logstore.part_files(run)


def load(paths):
    """{column: float array} from telemetry files (nulls as NaN)."""
    try:
        table = logstore.read_table(paths)
    except Exception as e:           # pyarrow's errors: unreadable, truncated, mixed columns
        raise PlotError(f"cannot read {', '.join(str(p) for p in paths)}: {e}") from None
    cols = {}
    for name in table.column_names:
        col = table.column(name)
        try:
            cols[name] = col.to_numpy(zero_copy_only=False).astype(float)
        except (TypeError, ValueError):
            continue                 # a text column (not ours): ignore
    if not cols or table.num_rows == 0:
        raise PlotError(f"{paths[0]}: no telemetry rows")
    return cols


def _time_axis(cols):
    if "host_time_s" in cols and np.isfinite(cols["host_time_s"]).any():
        t = cols["host_time_s"]
        return t - np.nanmin(t), "host time"
    if "uptime_ms" in cols:
        return cols["uptime_ms"] / 1000.0, "device uptime"
    return np.arange(len(next(iter(cols.values())))), "frame"


def _with_gaps(t, cols):
    """Break lines where the stream stopped (NaN inserted after a long pause)."""
    if len(t) < 3:
        return t, cols
    dt = np.diff(t)
    step = float(np.median(dt[dt > 0])) if (dt > 0).any() else 0.0
    gaps = np.nonzero(dt > max(1.0, 20 * step))[0] + 1
    if not len(gaps):
        return t, cols
    return (np.insert(t, gaps, np.nan),
            {k: np.insert(v, gaps, np.nan) for k, v in cols.items()})


def plot_telemetry(paths, out, title=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = load(paths)
    t, xlabel = _time_axis(cols)
    order = np.argsort(t, kind="stable") if np.isfinite(t).all() else np.arange(len(t))
    t = t[order]
    cols = {k: v[order] for k, v in cols.items()}
    resets = []
    if "seq" in cols and len(t) > 1:
        back = np.nonzero(np.diff(cols["seq"]) < 0)[0] + 1
        resets = [t[i] for i in back if cols["seq"][i] <= 1]
    n = len(t)
    if n > 200_000:                  # keep the PNG quick to draw
        k = n // 100_000
        t = t[::k]
        cols = {c: v[::k] for c, v in cols.items()}
    span = np.nanmax(t) if len(t) else 0
    scale, unit = (3600.0, "h") if span > 3 * 3600 else (60.0, "min") if span > 1800 else (1.0, "s")
    t, cols = _with_gaps(t, cols)
    t = t / scale

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    lines = (("load_w", dict(lw=0.7, color="0.6", label="site load")),
             ("grid_w", dict(lw=1.0, color="tab:blue", label="grid import")),
             ("battery_w", dict(lw=1.0, color="tab:green", label="battery (+ discharge)")),
             ("setpoint_w", dict(lw=0.7, color="tab:olive", ls=":", label="setpoint")),
             ("cap_w", dict(lw=1.0, color="tab:red", ls="--", label="cap", drawstyle="steps-post")))
    drawn = 0
    for name, style in lines:
        if name in cols and np.isfinite(cols[name]).any():
            ax.plot(t, cols[name] / 1e6, **style)
            drawn += 1
    if not drawn:
        raise PlotError(f"{paths[0]}: none of grid_w, battery_w, load_w, cap_w in the telemetry")
    if "state" in cols and np.isfinite(cols["state"]).any():
        states = load_schema().get("enums", {}).get("state", [])
        if "run" in states:
            off = np.isfinite(cols["state"]) & (cols["state"] != states.index("run"))
            if off.any():
                ax.fill_between(t, 0, 1, where=off, step="post", color="tab:red", alpha=0.08,
                                transform=ax.get_xaxis_transform(), label="state not run")
    for r in resets:
        ax.axvline(r / scale, color="k", lw=0.6, ls="-.")
        ax2.axvline(r / scale, color="k", lw=0.6, ls="-.")
    if resets:
        ax.plot([], [], color="k", lw=0.6, ls="-.", label="device reset")
    ax.set_ylabel("MW")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=7, fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    fig.suptitle(title or "Cabinet telemetry", fontsize=11)
    if "soc_cpct" in cols and np.isfinite(cols["soc_cpct"]).any():
        ax2.plot(t, cols["soc_cpct"] / 100, color="tab:purple")
    ax2.set_ylabel("SoC %")
    ax2.set_xlabel(f"{xlabel}, {unit}")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _counts(folder):
    for name in ("log.json", "summary.json"):
        p = Path(folder) / name
        if p.is_file():
            try:
                s = json.loads(p.read_text())
            except ValueError:
                continue
            if "frames_received" in s:
                return (f"{s['frames_received']:,} frames, {s.get('frames_lost', 0):,} lost, "
                        f"{s.get('frames_corrupt', 0):,} corrupt")
    return ""


def _cap_from_folder(folder):
    for name in ("site.json", "summary.json"):
        p = Path(folder) / name
        if p.is_file():
            try:
                cap = json.loads(p.read_text()).get("cap_w")
            except ValueError:
                continue
            if cap:
                return cap
    return 18_000_000


def plot(run, out=None, truth=False):
    """Make the PNG; return its path. PlotError says what is missing."""
    run = Path(run)
    if truth or (run.is_dir() and not logstore.part_files(run) and (run / "truth.csv").is_file()):
        if not (run / "truth.csv").is_file():
            raise PlotError(f"{run}: no truth.csv (only `cabctl demo` runs have ground truth)")
        from .plot import plot_run
        png = Path(plot_run(run, _cap_from_folder(run)))   # always RUN/run.png
        if out:
            shutil.copyfile(png, out)
            png = Path(out)
        return png
    paths = telemetry_files(run)
    if not paths:
        hint = ""
        if (run / "report.json").is_file():
            hint = " (a `cabctl sim` folder has its plot already: sim.png)"
        raise PlotError(f"{run}: no telemetry here "
                        f"(telemetry-NNNN.parquet/.csv or telemetry.csv){hint}")
    folder = run if run.is_dir() else run.parent
    if out is None:
        out = (run / "telemetry.png") if run.is_dir() else run.with_suffix(".png")
    counts = _counts(folder) if run.is_dir() else ""
    title = f"Cabinet telemetry: {run.name}" + (f" ({counts})" if counts else "")
    return plot_telemetry(paths, out, title)


def add_arguments(p):
    p.add_argument("run_path", metavar="RUN",
                   help="run folder (cabctl log / demo) or a telemetry .csv/.parquet file")
    p.add_argument("--out", help="PNG path (default: RUN/telemetry.png, or the file's name with .png)")
    p.add_argument("--truth", action="store_true",
                   help="plot the plant's ground truth (truth.csv of a demo run) instead")


def run(args):
    try:
        png = plot(args.run_path, args.out, args.truth)
    except PlotError as e:
        print(f"cabctl plot: {e}", file=sys.stderr)
        return 2
    print(png)
    return 0
