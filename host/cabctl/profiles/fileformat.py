"""The cabinet profile file: the one format every cabctl tool reads and writes.

A text file (gzip-compressed when the name ends in `.gz`; a gzip file is
recognised by its magic bytes whatever its name):

    # cabinet-profile v1 step_ms=100 unit=W
    # name: texas
    # source: generated seed=1 seconds=900
    # gap: start_s=12.300 len_s=4.100 fill=hold
    15012345
    15230112
    ...

- Line 1 is the header: `# cabinet-profile v1`, then `step_ms=<number>` (the
  fixed sample step, > 0) and `unit=W`. Both fields are required; the order of
  the `key=value` fields is free.
- Further lines starting with `#` before the first sample are metadata, one
  `# key: value` each (free text). `gap` may repeat: a stretch of the source
  that had no data (a logger stall) and was filled (`hold` or `interpolate`)
  on import; `cabctl profile stats` reports them and never counts a gap's
  edge as a load step. Other `#` lines are comments.
- Then one sample per line: site power in integer watts, >= 0 and <= 1 GW,
  sample k covering [k * step, (k + 1) * step). No blank lines between samples.

One hour at 100 ms is 36,000 lines, ~300 kB (~60 kB gzipped).
"""
import gzip
import re
from pathlib import Path

import numpy as np

from .core import MAX_SITE_W, Profile, ProfileError

MAGIC = "# cabinet-profile v1"
_GAP = re.compile(r"start_s=([-0-9.eE+]+)\s+len_s=([0-9.eE+]+)(?:\s+fill=(\w+))?")


def _open_text(path):
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


def is_profile_file(path) -> bool:
    try:
        with _open_text(path) as f:
            return f.readline().startswith(MAGIC)
    except (OSError, UnicodeDecodeError, EOFError):
        return False


def _header(src, line):
    if not line.startswith(MAGIC):
        raise ProfileError(src, f"not a cabinet profile: line 1 must start with '{MAGIC}' "
                           "(power logs are converted with `cabctl profile import`)", 1)
    fields = {}
    for tok in line[len(MAGIC):].split():
        if "=" not in tok:
            raise ProfileError(src, f"header field {tok!r} is not key=value", 1)
        k, v = tok.split("=", 1)
        fields[k] = v
    if fields.get("unit") != "W":
        raise ProfileError(src, f"header needs unit=W (got {fields.get('unit')!r})", 1)
    try:
        step_ms = float(fields["step_ms"])
    except (KeyError, ValueError):
        raise ProfileError(src, "header needs step_ms=<number>", 1) from None
    if not 0 < step_ms <= 3_600_000:
        raise ProfileError(src, f"step_ms={step_ms:g} out of range (0, 3600000]", 1)
    return step_ms


def read(path) -> Profile:
    """Read a profile file; ProfileError names the file, line and problem."""
    src = str(path)
    try:
        with _open_text(path) as f:
            text = f.read()
    except OSError as e:
        raise ProfileError(src, f"cannot read: {e.strerror or e}") from None
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise ProfileError(src, f"not a text profile: {e}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln.rstrip("\r") for ln in lines]
    if not lines:
        raise ProfileError(src, "empty file", 1)
    step_ms = _header(src, lines[0])
    meta, gaps = {}, []
    i = 1
    while i < len(lines) and lines[i].startswith("#"):
        body = lines[i][1:].strip()
        key, sep, value = body.partition(":")
        if sep and key.strip() and " " not in key.strip():
            key, value = key.strip(), value.strip()
            if key == "gap":
                m = _GAP.search(value)
                if not m:
                    raise ProfileError(src, f"gap line needs start_s=.. len_s=.. (got {value!r})", i + 1)
                gaps.append((float(m.group(1)), float(m.group(2)), m.group(3) or "hold"))
            else:
                meta[key] = value
        i += 1
    first = i
    data = lines[first:]
    if not data:
        raise ProfileError(src, "no samples after the header", first + 1)
    try:
        watts = np.array(data).astype(np.int64)
    except (ValueError, OverflowError):
        watts = None
    if watts is None or len(watts) != len(data):
        for k, s in enumerate(data):
            try:
                int(s)
            except ValueError:
                what = "missing value (blank line)" if not s.strip() else f"not an integer watt value: {s[:40]!r}"
                raise ProfileError(src, what, first + k + 1) from None
        raise ProfileError(src, "unreadable samples", first + 1)
    bad = np.flatnonzero((watts < 0) | (watts > MAX_SITE_W))
    if len(bad):
        k = int(bad[0])
        what = "negative power" if watts[k] < 0 else "absurd power (> 1 GW for a site)"
        raise ProfileError(src, f"{what}: {int(watts[k])} W", first + k + 1)
    name = meta.get("name") or Path(src).name
    return Profile(step_ms / 1000, watts, name=name, meta=meta, gaps=gaps)


def dumps(profile: Profile) -> str:
    step_ms = profile.step_s * 1000
    step_txt = f"{step_ms:.0f}" if abs(step_ms - round(step_ms)) < 1e-9 else f"{step_ms:.6g}"
    out = [f"{MAGIC} step_ms={step_txt} unit=W"]
    meta = {"name": profile.name} if profile.name else {}
    meta.update((k, v) for k, v in profile.meta.items() if k != "name")
    for k, v in meta.items():
        v = " ".join(str(v).split())          # one line per field
        out.append(f"# {k}: {v}")
    for start, length, fill in profile.gaps:
        out.append(f"# gap: start_s={start:.3f} len_s={length:.3f} fill={fill}")
    w = profile.watts
    if len(w) and (w.min() < 0 or w.max() > MAX_SITE_W):
        raise ProfileError(profile.name or "profile", "power outside 0 W .. 1 GW, refusing to write")
    out.append("\n".join(map(str, w.tolist())))
    return "\n".join(out) + "\n"


def write(profile: Profile, path) -> Path:
    path = Path(path)
    text = dumps(profile)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path
