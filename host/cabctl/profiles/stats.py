"""Figures of a profile: level, steps, 1 s rise and fall, periods, gaps.

Steps and rises are never counted across a recorded gap (a logger stall
filled on import): the edge where data resumes is not a load step.
"""
import numpy as np

from .core import Profile

FIELDS = [
    "name", "duration_s", "step_ms", "samples", "mean_w", "min_w", "max_w", "peak_to_mean",
    "largest_step_w", "largest_step_at_s", "largest_rise_1s_w", "largest_rise_1s_at_s",
    "largest_fall_1s_w", "largest_fall_1s_at_s", "dominant_period_s", "fast_period_s",
    "gaps", "gap_s", "gap_list",
]


def _gap_flags(p: Profile):
    """1 for samples inside a recorded gap and the first sample after it."""
    g = np.zeros(len(p.watts), dtype=np.int64)
    for start, length, _fill in p.gaps:
        i = int(np.floor(start / p.step_s))
        j = int(np.floor((start + length) / p.step_s)) + 2
        g[max(i, 0):max(min(j, len(g)), 0)] = 1
    return g


def _rise_fall(x, step, flags, seconds=1.0):
    """Largest increase and decrease within any `seconds` window, with their start times."""
    n = len(x)
    w = max(1, int(round(seconds / step)))
    cs = np.concatenate([[0], np.cumsum(flags)])
    best = [(0.0, 0.0), (0.0, 0.0)]             # (value, at_s) for rise, fall
    for k in range(1, min(w, n - 1) + 1):
        d = x[k:] - x[:-k]
        bad = (cs[k + 1:n + 1] - cs[1:n - k + 1]) > 0    # a flag in (i, i + k]
        if bad.any():
            d = np.where(bad, 0.0, d)
        i, j = int(d.argmax()), int(d.argmin())
        if d[i] > best[0][0]:
            best[0] = (float(d[i]), i * step)
        if -d[j] > best[1][0]:
            best[1] = (float(-d[j]), j * step)
    return best


def _acf(x):
    x = x - x.mean()
    n = len(x)
    if n < 4 or not x.any():
        return None
    f = np.fft.rfft(x, 2 * n)
    a = np.fft.irfft(f * np.conj(f))[:n]
    return a / a[0]


def _period(acf, step, lo_s, hi_s):
    """Lag of the highest autocorrelation peak after the first zero crossing, within [lo, hi]."""
    if acf is None:
        return None
    neg = np.flatnonzero(acf < 0)
    if not len(neg):
        return None
    lo = max(int(neg[0]), int(np.ceil(lo_s / step)))
    hi = min(len(acf) // 2, int(hi_s / step) + 1)
    if hi <= lo + 1:
        return None
    lag = lo + int(acf[lo:hi].argmax())
    if acf[lag] < 0.1:
        return None
    return round(lag * step, 3)


def _moving_mean(x, w):
    if w < 2 or len(x) <= w:
        return np.full(len(x), x.mean())
    c = np.concatenate([[0.0], np.cumsum(x)])
    m = (c[w:] - c[:-w]) / w
    pad = w // 2
    return np.concatenate([np.full(pad, m[0]), m, np.full(len(x) - len(m) - pad, m[-1])])


def stats(p: Profile) -> dict:
    x = p.watts.astype(np.float64)
    step = p.step_s
    flags = _gap_flags(p)
    d = np.diff(x)
    if len(d):
        d = np.where(flags[1:] > 0, 0.0, d)
        k = int(np.abs(d).argmax())
        step_w, step_at = float(abs(d[k])), (k + 1) * step
    else:
        step_w, step_at = 0.0, 0.0
    (rise, rise_at), (fall, fall_at) = _rise_fall(x, step, flags)
    mean = float(x.mean())
    dominant = _period(_acf(x), step, 2 * step, p.duration_s / 2)
    fast = None
    if step <= 0.25:
        hp = x - _moving_mean(x, int(round(5.0 / step)))
        fast = _period(_acf(hp), step, max(0.2, 2 * step), 5.0)
    gap_total = sum(g[1] for g in p.gaps)
    s = {
        "name": p.name,
        "duration_s": round(p.duration_s, 3),
        "step_ms": round(p.step_ms, 3),
        "samples": int(len(x)),
        "mean_w": int(round(mean)),
        "min_w": int(x.min()),
        "max_w": int(x.max()),
        "peak_to_mean": round(float(x.max()) / mean, 3) if mean > 0 else None,
        "largest_step_w": int(round(step_w)),
        "largest_step_at_s": round(step_at, 3),
        "largest_rise_1s_w": int(round(rise)),
        "largest_rise_1s_at_s": round(rise_at, 3),
        "largest_fall_1s_w": int(round(fall)),
        "largest_fall_1s_at_s": round(fall_at, 3),
        "dominant_period_s": dominant,
        "fast_period_s": fast,
        "gaps": len(p.gaps),
        "gap_s": round(gap_total, 3),
        "gap_list": [{"start_s": round(a, 3), "len_s": round(b, 3), "fill": f} for a, b, f in p.gaps],
    }
    assert list(s) == FIELDS
    return s


def fmt_w(w):
    if abs(w) >= 1e5:
        return f"{w / 1e6:.3f} MW"
    return f"{w / 1e3:.2f} kW" if abs(w) >= 1e3 else f"{w:.0f} W"


def format_text(s: dict) -> str:
    per = lambda v: "none found" if v is None else f"{v:g} s"   # noqa: E731
    rows = [
        ("profile", s["name"]),
        ("duration / step", f"{s['duration_s']:g} s / {s['step_ms']:g} ms ({s['samples']} samples)"),
        ("mean / min / max", f"{fmt_w(s['mean_w'])} / {fmt_w(s['min_w'])} / {fmt_w(s['max_w'])}"),
        ("peak to mean", f"{s['peak_to_mean']}"),
        ("largest step between samples", f"{fmt_w(s['largest_step_w'])} at {s['largest_step_at_s']:g} s"),
        ("largest 1 s rise", f"{fmt_w(s['largest_rise_1s_w'])} at {s['largest_rise_1s_at_s']:g} s"),
        ("largest 1 s fall", f"{fmt_w(s['largest_fall_1s_w'])} at {s['largest_fall_1s_at_s']:g} s"),
        ("dominant period (autocorrelation)", per(s["dominant_period_s"])),
        ("fast period (< 5 s)", per(s["fast_period_s"])),
        ("gaps found (filled on import)", f"{s['gaps']} ({s['gap_s']:g} s)"),
    ]
    lines = [f"  {k:<36} {v}" for k, v in rows]
    for g in s["gap_list"]:
        lines.append(f"    gap at {g['start_s']:g} s for {g['len_s']:g} s, filled by {g['fill']}")
    return "\n".join(lines)
