"""PNG of a simulated run: grid per controller against the cap, load, SoC."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .report import block_means  # noqa: E402


def plot_sim(traces, cap_w, path):
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(12, 7), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    any_tr = next(iter(traces.values()))
    per_s = int(round(1 / any_tr.period_s))
    t = block_means(any_tr.t_s, per_s) / 3600
    ax.plot(t, block_means(any_tr.load_w, per_s) / 1e6, color="0.75", lw=0.5, label="load (1 s)")
    colors = {"none": "0.4", "openems": "tab:orange", "cabinet": "tab:blue",
              "cabinet_pred": "tab:green"}
    for name, tr in traces.items():
        if name != "none":
            ax.plot(t, block_means(tr.grid_w, per_s) / 1e6, lw=0.7, color=colors.get(name),
                    label=f"grid, {name} (1 s)")
            ax2.plot(t, block_means(tr.soc_cpct, per_s) / 100, color=colors.get(name), label=name)
    site = next((tr for tr in traces.values() if getattr(tr, "pv_w", None) is not None), None)
    if site is not None:                  # outage/PV/genset runs (sim/site.py)
        ax.plot(t, block_means(site.pv_w, per_s) / 1e6, lw=0.7, color="gold", label="PV (1 s)")
        ax.plot(t, block_means(site.genset_w, per_s) / 1e6, lw=0.9, color="tab:brown",
                label="genset (1 s)")
    ax.axhline(cap_w / 1e6, color="tab:red", ls="--", lw=1, label="cap")
    ax.set_ylabel("MW")
    ax.legend(loc="upper right", ncol=5, fontsize=8)
    ax.grid(alpha=0.3)
    ax2.set_ylabel("SoC %")
    ax2.set_xlabel("hours")
    ax2.grid(alpha=0.3)
    if np.isfinite(ax2.get_ylim()).all():
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
