"""PNG of a run: load, grid, battery power, SoC and the cap, from ground truth."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import truth  # noqa: E402


def plot_run(run_dir, cap_w):
    run_dir = Path(run_dir)
    tr = truth.load(run_dir / "truth.csv")
    t = tr["t_s"]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(t, tr["load_w"] / 1e6, lw=0.7, color="0.6", label="site load")
    ax.plot(t, tr["grid_w"] / 1e6, lw=1.0, color="tab:blue", label="grid import")
    ax.plot(t, tr["battery_w"] / 1e6, lw=1.0, color="tab:green", label="battery (+ discharge)")
    ax.axhline(cap_w / 1e6, color="tab:red", ls="--", lw=1, label="cap")
    ax.set_ylabel("MW")
    ax.legend(loc="upper right", ncol=4, fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("Cabinet controller on MicroPython (SIL): ground truth from the plant")
    ax2.plot(t, tr["soc_cpct"] / 100, color="tab:purple")
    ax2.set_ylabel("SoC %")
    ax2.set_xlabel("plant time, s")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    out = run_dir / "run.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
