"""From per-GPU series to a site profile: gaps, fixed step, nodes, cluster scaling, overhead.

- Gaps: a sample interval longer than max(3 x median, median + 0.5 s) is a
  logger stall, not a load step: `hold` keeps the last value over it,
  `interpolate` ramps linearly; either way it is reported (and recorded in the
  profile so `stats` never counts its edge as a step).
- Fixed step: each step is the exact average of the sample-and-hold signal
  over that step (down- and up-sampling alike), on the time span all series share.
- Nodes: GPUs summed into nodes of `gpus_per_node`, in the log's GPU order
  (default: the whole log is one node).
- Scaling: `nodes` N or `scale_to_gpus` G builds the cluster from copies of the
  log's nodes: `shift="none"` = synchronized copies (the worst case: every
  node steps at once); `shift="random"` = each copy circularly time-shifted by
  a random offset (independent jobs), deterministic from `seed`.
- Overhead: facility power (PUE - 1) x IT power through a 60 s first-order
  lag (cooling does not follow a 100 ms edge), as the generator does.
"""
from dataclasses import asdict, dataclass, field

import numpy as np

from .core import MAX_SITE_W, Profile, ProfileError
from .generator import lagged
from .importers import Table

OVERHEAD_TAU_S = 60.0
MAX_STEPS = 10_000_000      # e.g. 11.6 days at 100 ms; beyond, a time jump rather than a log


@dataclass
class Options:
    step_ms: float | None = None       # default: the log's median sample interval
    gaps: str = "hold"                 # or "interpolate"
    gap_s: float | None = None         # stall threshold; default max(3 x median, median + 0.5 s)
    gpus_per_node: int | None = None
    nodes: int | None = None
    scale_to_gpus: int | None = None
    shift: str = "none"                # or "random"
    seed: int = 1
    overhead: float = 1.0              # PUE


@dataclass
class Report:
    source: str
    format: str
    rows: int
    series: int
    gpus_in_log: int | None
    sample_interval_ms: float
    step_ms: float
    duration_s: float
    gap_fill: str
    gaps: list = field(default_factory=list)
    skipped_lines: int = 0
    skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    gpus_per_node: int | None = None
    nodes_in_log: int = 1
    copies: int = 1
    gpus_out: int | None = None
    shift: str = "none"
    seed: int = 1
    overhead: float = 1.0

    def to_dict(self):
        return asdict(self)


def _median_dt(t):
    return float(np.median(np.diff(t))) if len(t) > 1 else 1.0


def find_gaps(t, threshold):
    """[(start, stop)] of sample intervals longer than threshold."""
    d = np.diff(t)
    return [(float(t[i]), float(t[i + 1])) for i in np.flatnonzero(d > threshold)]


def interpolate_gaps(t, w, gaps, spacing):
    """Insert linearly interpolated samples every `spacing` inside each gap."""
    ts, ws = [t], [w]
    for a, b in gaps:
        k = int((b - a) / spacing)
        if k > 1:
            x = a + spacing * np.arange(1, k)
            x = x[x < b]
            ts.append(x)
            ws.append(np.interp(x, t, w))
    t2, w2 = np.concatenate(ts), np.concatenate(ws)
    order = np.argsort(t2, kind="stable")
    return t2[order], w2[order]


def bin_average(t, w, start, step, n):
    """Average of the sample-and-hold signal over [start + k*step, start + (k+1)*step)."""
    cum = np.concatenate([[0.0], np.cumsum(w[:-1] * np.diff(t))])
    x = start + np.arange(n + 1) * step
    i = np.clip(np.searchsorted(t, x, side="right") - 1, 0, len(t) - 1)
    f = cum[i] + w[i] * (x - t[i])
    return np.diff(f) / step


def _merge(spans):
    out = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _shifted_sum(trace, copies, rng):
    """Sum of `copies` circular shifts of trace by random offsets (one FFT, any count)."""
    n = len(trace)
    hist = np.bincount(rng.integers(0, n, copies), minlength=n).astype(np.float64)
    return np.fft.irfft(np.fft.rfft(trace) * np.fft.rfft(hist), n)


def _too_long(src, series, problem):
    """A ProfileError for more than MAX_STEPS slots, naming the largest time jump
    (checked before anything allocates one slot per step)."""
    jumps = [(float(np.max(np.diff(s.t))), s) for s in series if len(s.t) > 1]
    if not jumps:
        return ProfileError(src, problem)
    d, s = max(jumps, key=lambda j: j[0])
    i = int(np.argmax(np.diff(s.t)))
    return ProfileError(src, f"{problem}: time jumps {d:.0f} s from {s.t[i]:.3f} to "
                        f"{s.t[i + 1]:.3f} ({s.name}); check the time column or give a "
                        "longer step", s.line[i + 1])


def build(table: Table, opts: Options, name=None):
    """Table -> (Profile, Report)."""
    src = table.source
    if opts.gaps not in ("hold", "interpolate"):
        raise ProfileError(src, f"--gaps must be hold or interpolate, not {opts.gaps!r}")
    if opts.shift not in ("none", "random"):
        raise ProfileError(src, f"--shift must be random or none, not {opts.shift!r}")
    if opts.nodes and opts.scale_to_gpus:
        raise ProfileError(src, "give --nodes or --scale-to-gpus, not both")
    if not 1.0 <= opts.overhead <= 3.0:
        raise ProfileError(src, f"--overhead {opts.overhead:g} is not a PUE in [1, 3]")
    series = table.series
    meds = [_median_dt(s.t) for s in series]
    med = float(np.median(meds))
    step = (opts.step_ms / 1000) if opts.step_ms else max(0.001, round(med, 3))
    if not 0.001 <= step <= 3600:
        raise ProfileError(src, f"step {step * 1000:g} ms out of range [1 ms, 1 h]")
    threshold = opts.gap_s or max(3 * med, med + 0.5)
    start = max(float(s.t[0]) for s in series)
    end = min(float(s.t[-1]) + m for s, m in zip(series, meds))
    n = int(np.floor((end - start) / step + 1e-9))
    if n < 1:
        raise ProfileError(src, f"the series share {max(end - start, 0):.3f} s, less than one "
                           f"{step * 1000:g} ms step")
    if n > MAX_STEPS:
        raise _too_long(src, series, f"the log spans {n * step:.0f} s = {n} steps of "
                                     f"{step * 1000:g} ms, more than {MAX_STEPS}")
    spans, grid = [], []
    for s, m in zip(series, meds):
        gaps = find_gaps(s.t, threshold)
        spans += gaps
        t, w = s.t, s.w
        if gaps and opts.gaps == "interpolate":
            # Only the span needs filling (cut there), and the fill is bounded like the grid.
            stop = start + n * step + m
            inside = [(a, min(b, stop)) for a, b in gaps if b > start and a < stop]
            fill = sum(b - a for a, b in inside) / m
            if fill > MAX_STEPS:
                raise _too_long(src, series, f"interpolating the gaps takes {fill:.0f} samples "
                                             f"of {m * 1000:g} ms, more than {MAX_STEPS}")
            t, w = interpolate_gaps(t, w, inside, m)
        grid.append(bin_average(t, w, start, step, n))
    gaps = [(round(a - start, 3), round(b - a, 3), opts.gaps)
            for a, b in _merge(spans) if b > start and a < start + n * step]

    per_gpu = table.per_gpu
    gpus_in_log = len(series) if per_gpu else opts.gpus_per_node
    gpn = opts.gpus_per_node or (len(series) if per_gpu else None)
    if per_gpu:
        if len(series) % gpn:
            raise ProfileError(src, f"{len(series)} GPUs in the log do not split into nodes of {gpn}")
        grid = np.array(grid)
        nodes = grid.reshape(len(series) // gpn, gpn, n).sum(axis=1)
    else:
        nodes = np.array(grid)
    m = len(nodes)
    if opts.scale_to_gpus:
        if not gpn:
            raise ProfileError(src, "--scale-to-gpus needs --gpus-per-node for a csv trace "
                               "(how many GPUs the trace holds)")
        copies_f = opts.scale_to_gpus / gpn
    elif opts.nodes:
        copies_f = float(opts.nodes)
    else:
        copies_f = float(m)
    copies = max(1, int(round(copies_f)))
    factor = copies_f / copies
    rng = np.random.default_rng(opts.seed)
    counts = np.bincount(np.arange(copies) % m, minlength=m)
    it = np.zeros(n)
    for j in range(m):
        if counts[j] == 0:
            continue
        if opts.shift == "random" and (opts.nodes or opts.scale_to_gpus):
            it += _shifted_sum(nodes[j], int(counts[j]), rng)
        else:
            it += counts[j] * nodes[j]
    it *= factor
    total = it + (opts.overhead - 1.0) * lagged(it, step, OVERHEAD_TAU_S) if opts.overhead > 1 else it
    if total.max() > MAX_SITE_W:
        raise ProfileError(src, f"the scaled profile peaks at {total.max() / 1e6:.0f} MW, above 1 GW: "
                           "check --nodes / --scale-to-gpus")
    watts = np.clip(np.rint(total), 0, None).astype(np.int64)
    shifted = opts.shift == "random" and (opts.nodes or opts.scale_to_gpus)
    gpus_out = int(round(copies_f * gpn)) if gpn else None
    report = Report(
        source=src, format=table.fmt, rows=table.rows, series=len(series), gpus_in_log=gpus_in_log,
        sample_interval_ms=round(med * 1000, 3), step_ms=round(step * 1000, 3),
        duration_s=round(n * step, 3), gap_fill=opts.gaps,
        gaps=[{"start_s": a, "len_s": b} for a, b, _ in gaps],
        skipped_lines=len(table.skipped),
        skipped=[f"line {ln}: {why}" if isinstance(ln, int) else f"{ln}: {why}"
                 for ln, why in table.skipped[:20]],
        notes=list(table.notes), gpus_per_node=gpn, nodes_in_log=m, copies=copies,
        gpus_out=gpus_out, shift=opts.shift if shifted else "none", seed=opts.seed,
        overhead=opts.overhead)
    meta = {"source": f"imported {src} format={table.fmt} rows={table.rows}",
            "scaling": f"gpus_in_log={gpus_in_log} gpus_per_node={gpn} nodes_in_log={m} "
                       f"copies={copies} gpus={gpus_out} shift={report.shift} seed={opts.seed} "
                       f"overhead={opts.overhead:g}",
            "skipped_lines": str(len(table.skipped))}
    if shifted and gaps:
        # Each copy has its stalls elsewhere: positions no longer apply to the sum.
        meta["source_gaps"] = f"{len(gaps)} ({sum(g[1] for g in gaps):.3f} s, filled by {opts.gaps})"
        gaps = []
    prof = Profile(step, watts, name=name or src.rsplit("/", 1)[-1], meta=meta, gaps=gaps)
    return prof, report
