"""PNG of a profile: the whole of it (min/max envelope when long) and a 20 s zoom on its sharpest rise."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .core import Profile  # noqa: E402
from .stats import stats  # noqa: E402

MAX_POINTS = 20_000


def _envelope(t, y, buckets=MAX_POINTS // 2):
    k = int(np.ceil(len(y) / buckets))
    n = len(y) // k * k
    if n == 0:
        return t, y, y
    tb = t[:n].reshape(-1, k)[:, 0]
    yb = y[:n].reshape(-1, k)
    return tb, yb.min(axis=1), yb.max(axis=1)


def plot_profile(p: Profile, out, zoom_s=20.0) -> Path:
    s = stats(p)
    t = p.times()
    y = p.watts / 1e6
    fig, (ax, az) = plt.subplots(2, 1, figsize=(11, 6.5), gridspec_kw={"height_ratios": [1, 1]})
    if len(y) > MAX_POINTS:
        tb, lo, hi = _envelope(t, y)
        ax.fill_between(tb, lo, hi, color="tab:blue", lw=0, alpha=0.7, label="load (min-max)")
    else:
        ax.step(t, y, where="post", lw=0.6, color="tab:blue", label="load")
    ax.axhline(s["mean_w"] / 1e6, color="0.3", ls="--", lw=0.8, label="mean")
    for start, length, fill in p.gaps:
        ax.axvspan(start, start + length, color="tab:orange", alpha=0.3, lw=0)
        az.axvspan(start, start + length, color="tab:orange", alpha=0.3, lw=0)
    ax.set_ylabel("MW")
    ax.set_title(f"{p.name}: mean {s['mean_w'] / 1e6:.2f} MW, max {s['max_w'] / 1e6:.2f} MW, "
                 f"largest 1 s rise {s['largest_rise_1s_w'] / 1e6:.2f} MW, step {p.step_ms:g} ms"
                 + (f", {len(p.gaps)} gap(s) shaded" if p.gaps else ""), fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    mid = s["largest_rise_1s_at_s"]
    a = max(0.0, min(mid - zoom_s / 2, p.duration_s - zoom_s))
    i, j = int(a / p.step_s), int(min(p.duration_s, a + zoom_s) / p.step_s)
    az.step(t[i:j], y[i:j], where="post", lw=0.9, color="tab:blue")
    az.set_xlim(t[i], t[max(i, j - 1)] + p.step_s)
    az.set_ylabel("MW")
    az.set_xlabel("time, s")
    az.set_title(f"zoom: {zoom_s:g} s around the largest 1 s rise", fontsize=9)
    az.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
