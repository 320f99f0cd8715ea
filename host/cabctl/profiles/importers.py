"""Readers of power logs: nvidia-smi CSV, long, wide (DCGM-style), plain csv, Parquet.

Each reader returns a `Table`: one `Series` (time in s, power in W, source
line per sample) per GPU, or one site/node series for the plain csv layout.
Bad input raises ProfileError naming the file, line and problem; with
`skip_bad` the offending line is skipped, counted and listed instead:
malformed rows, unknown column layouts (never skippable), non-monotonic time,
negative or absurd power (> 2 kW per GPU, > 1 GW for a site), missing values.

- nvidia-smi: `nvidia-smi --query-gpu=timestamp,power.draw --format=csv -lms 100`;
  values may carry a " W" suffix (`[mW]`/`[kW]` headers are converted); one row
  per GPU per sample. With an `index`/`pci.bus_id`/`uuid` column rows are
  grouped by it; without one, GPUs are told apart by their position in each
  block of rows sharing a sample time (`gpus` forces the block size).
- long: `time, gpu_id, power_w` in any order of rows.
- wide: a time column, then one power column per GPU (e.g. DCGM exports).
- csv: `time_s, power_w`: one node or site series (no per-GPU limit).
- parquet: any of long / wide / csv laid out in columns (via pyarrow).
Times are seconds (numbers) or timestamps (`2024/05/01 12:00:00.123`, ISO 8601).
"""
import csv
import io
import math
from dataclasses import dataclass, field

import numpy as np

from .cells import GPU, POWER, TIME, Cells, find, is_data, norm
from .core import MAX_GPU_W, MAX_SITE_W, ProfileError

FORMATS = ("nvidia-smi", "long", "wide", "csv", "parquet")


@dataclass
class Series:
    name: str
    t: np.ndarray
    w: np.ndarray
    line: list


@dataclass
class Table:
    source: str
    fmt: str
    series: list = field(default_factory=list)
    per_gpu: bool = True
    rows: int = 0
    skipped: list = field(default_factory=list)       # [(line, problem)]
    notes: list = field(default_factory=list)


def _series_from(inp: Cells, groups, limit_what=("one GPU", MAX_GPU_W)):
    """{key: [(t, w, line)]} -> Series list, refusing (or skipping) non-monotonic time."""
    out = []
    for key, recs in groups.items():
        ts, ws, lines, last = [], [], [], -math.inf
        for t, w, line in recs:
            if t <= last:
                inp.bad(line, f"time not increasing for {key}: {t:.3f} after {last:.3f}")
                continue
            ts.append(t)
            ws.append(w)
            lines.append(line)
            last = t
        if ts:
            out.append(Series(str(key), np.array(ts), np.array(ws), lines))
    return out


def _blocks(inp: Cells, recs, n_forced):
    """Rows of an nvidia-smi log without a GPU column -> {gpu position: recs}."""
    t = np.array([r[0] for r in recs])
    d = np.diff(t)
    big = d[d > 0.010]
    thr = max(0.010, 0.25 * float(np.median(big))) if len(big) else math.inf
    starts = [0] + [i + 1 for i in np.flatnonzero(np.abs(d) > thr)]   # back in time: new block too
    sizes = np.diff(starts + [len(recs)])
    n = n_forced or int(np.bincount(sizes).argmax())
    odd = np.flatnonzero(sizes != n)
    if len(odd) > max(2, len(sizes) // 10) and not n_forced:
        raise ProfileError(inp.table.source, f"cannot tell the GPUs apart: blocks of rows sharing a time "
                           f"have sizes {sorted(set(sizes.tolist()))[:8]}; pass --gpus N", recs[0][2])
    groups = {f"gpu{g}": [] for g in range(n)}
    for s, k in zip(starts, sizes):
        if k != n:
            inp.bad(recs[s][2], f"GPU block of {k} rows where the log has {n} GPUs")
            continue
        for g in range(n):
            groups[f"gpu{g}"].append(recs[s + g])
    return groups


def _nvidia_smi(inp, header, rows, opts):
    cols = [norm(h) for h in header[1]]
    ti = find(cols, {"timestamp"} | TIME)
    pw = [i for i, (c, _) in enumerate(cols) if c.startswith("power.draw")]
    pi = next((i for i in pw if cols[i][0] == "power.draw"), pw[0] if pw else None)
    gi = find(cols, {"index", "pci.bus_id", "uuid", "gpu_uuid", "gpu", "gpu_id"})
    if ti is None or pi is None:
        raise ProfileError(inp.table.source, f"unknown column layout {header[1]}: nvidia-smi logs need "
                           "'timestamp' and 'power.draw [W]' columns", header[0])
    scale, recs, keyed = cols[pi][1], [], {}
    for line, f in rows:
        if [x.strip() for x in f] == [x.strip() for x in header[1]]:
            inp.table.notes.append(f"line {line}: repeated header ignored (logger restarted?)")
            continue
        if len(f) != len(cols):
            inp.bad(line, f"malformed row: {len(f)} fields where the header has {len(cols)}")
            continue
        t, w = inp.time(f[ti], line), inp.power(f[pi], line, scale)
        if t is None or w is None:
            continue
        if gi is None:
            recs.append((t, w, line))
        else:
            keyed.setdefault(f"gpu {str(f[gi]).strip()}", []).append((t, w, line))
    if gi is None and recs:
        keyed = _blocks(inp, recs, opts.get("gpus"))
    return _series_from(inp, keyed)


def _long(inp, header, rows, opts):
    cols = [norm(h) for h in header[1]]
    ti, gi, pi = find(cols, TIME), find(cols, GPU), find(cols, POWER)
    if None in (ti, gi, pi):
        raise ProfileError(inp.table.source, f"unknown column layout {header[1]}: long format needs "
                           "time, gpu_id and power_w columns", header[0])
    groups = {}
    for line, f in rows:
        if len(f) != len(cols):
            inp.bad(line, f"malformed row: {len(f)} fields where the header has {len(cols)}")
            continue
        t, w = inp.time(f[ti], line), inp.power(f[pi], line, cols[pi][1])
        if t is not None and w is not None:
            groups.setdefault(f"gpu {str(f[gi]).strip()}", []).append((t, w, line))
    return _series_from(inp, groups)


def _wide(inp, header, rows, opts, site=False):
    cols = [norm(h) for h in header[1]]
    ti = find(cols, TIME)
    if ti is None and len(cols) >= 2 and find(cols, GPU) is None:
        ti = 0                                             # e.g. "Time (s)": the first column
        inp.table.notes.append(f"time taken from the first column {header[1][0]!r}")
    if ti is None or len(cols) < 2:
        want = "time_s, power_w" if site else "a time column and one power column per GPU"
        raise ProfileError(inp.table.source, f"unknown column layout {header[1]}: expected {want}", header[0])
    if site and len(cols) != 2:
        raise ProfileError(inp.table.source, f"unknown column layout {header[1]}: csv is exactly "
                           "time_s, power_w (one column per GPU is --format wide)", header[0])
    limit, what = (MAX_SITE_W, "a site") if site else (MAX_GPU_W, "one GPU")
    pcols = [i for i in range(len(cols)) if i != ti]
    groups = {str(header[1][i]).strip() or f"col{i}": [] for i in pcols}
    keys = list(groups)
    for line, f in rows:
        if len(f) != len(cols):
            inp.bad(line, f"malformed row: {len(f)} fields where the header has {len(cols)}")
            continue
        t = inp.time(f[ti], line)
        ws = [inp.power(f[i], line, cols[i][1], limit, what) for i in pcols]
        if t is None or None in ws:
            continue
        for k, w in zip(keys, ws):
            groups[k].append((t, w, line))
    return _series_from(inp, groups)


READERS = {"nvidia-smi": _nvidia_smi, "long": _long, "wide": _wide,
           "csv": lambda inp, h, r, o: _wide(inp, h, r, o, site=True)}
DEFAULT_HEADER = {"long": {3: ["time_s", "gpu_id", "power_w"]}, "csv": {2: ["time_s", "power_w"]},
                  "nvidia-smi": {2: ["timestamp", "power.draw [W]"],            # --format=csv,noheader
                                 3: ["timestamp", "index", "power.draw [W]"]}}


def _text_rows(path, inp: Cells):
    with open(path, newline="", encoding="utf-8-sig") as f:
        text = f.read()
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:       # e.g. a lone CR inside a line; the reader goes on after it
            inp.bad(reader.line_num, f"malformed CSV line: {str(e).split(' - ')[0]}")
            continue
        if fields and any(x.strip() for x in fields):
            yield reader.line_num, fields


def _parquet_rows(path, table):
    try:
        import pyarrow.parquet as pq
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise ProfileError(path, "reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        t = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise ProfileError(path, f"not a readable Parquet file: {e}") from None
    cols = []
    for name, col in zip(t.column_names, t.columns):
        if pa.types.is_timestamp(col.type):
            unit = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[col.type.unit]
            col = [None if v is None else v / unit for v in col.cast(pa.int64()).to_pylist()]
        else:
            col = col.to_pylist()
        cols.append(col)
    names = list(t.column_names)
    normed = [norm(n)[0] for n in names]
    if any(c in GPU for c in normed):
        table.fmt = "parquet/long"
    elif len(names) == 2 and any(c in POWER for c in normed):
        table.fmt = "parquet/csv"
    else:
        table.fmt = "parquet/wide"
    rows = ((f"row {i + 1}", list(r)) for i, r in enumerate(zip(*cols)))
    return ("header", names), rows


def read(path, fmt, skip_bad=False, gpus=None) -> Table:
    """Read a power log of format `fmt` (one of FORMATS) into a Table."""
    if fmt not in FORMATS:
        raise ProfileError(path, f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    table = Table(str(path), fmt)
    inp = Cells(table, skip_bad)
    opts = {"gpus": gpus}
    if fmt == "parquet":
        header, rows = _parquet_rows(path, table)
        kind = table.fmt.split("/")[1]
    else:
        try:
            rows = _text_rows(path, inp)
            first = next(rows, None)
        except OSError as e:
            raise ProfileError(path, f"cannot read: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise ProfileError(path, f"not a text file: {e}") from None
        if first is None:
            raise ProfileError(path, "empty file", 1)
        kind = fmt
        default = DEFAULT_HEADER.get(kind, {}).get(len(first[1]))
        if default and is_data(first[1]):
            header = (first[0], default)                   # headerless: the default layout
            table.notes.append(f"no header line: columns taken as {', '.join(default)}")
            rows = _chain(first, rows)
        else:
            header = first
    counted = _count(rows, table)
    try:
        series = READERS[kind](inp, header, counted, opts)
    except UnicodeDecodeError as e:
        raise ProfileError(path, f"not a text file: {e}") from None
    table.series = series
    table.per_gpu = kind != "csv"
    if not series:
        raise ProfileError(path, f"no usable samples ({len(table.skipped)} lines skipped)")
    return table


def _chain(first, rows):
    yield first
    yield from rows


def _count(rows, table):
    for r in rows:
        table.rows += 1
        yield r
