"""Cell values and column names shared by every log reader.

Times: seconds (numbers) or timestamps (`2024/05/01 12:00:00.123`, ISO 8601,
with or without a zone). Powers: numbers, optionally with a " W" suffix, in
the unit of the column's `[W]`/`[mW]`/`[kW]` suffix. Missing values (empty,
`[N/A]`, `nan`, ...), malformed values, negative or absurd power are errors
naming the file and line, or counted skips when the user asked for that.
"""
import math
import re
from datetime import datetime, timezone

from .core import MAX_GPU_W, ProfileError

TIME = {"timestamp", "time", "time_s", "t", "t_s", "seconds", "ts", "datetime", "date_time", "epoch"}
GPU = {"index", "gpu", "gpu_id", "gpu_index", "gpu_idx", "gpu_uuid", "uuid", "pci.bus_id",
       "device", "entity", "entity_id", "entityid"}
POWER = {"power.draw", "power_draw", "power", "power_w", "watts", "w", "power.draw.instant",
         "power.draw.average", "power_usage", "dcgm_fi_dev_power_usage", "site_w", "load_w",
         "power_draw_w"}
MISSING = {"", "n/a", "na", "nan", "null", "none", "-"}
_UNIT = re.compile(r"\s*\[([a-zA-Z%]+)\]\s*$")
_SCALE = {"w": 1.0, "mw": 1e-3, "kw": 1e3}
_EPOCH = datetime(1970, 1, 1)


class Cells:
    """Cell parsing under a table's error policy (raise, or skip and count)."""

    def __init__(self, table, skip_bad: bool):
        self.table, self.skip = table, skip_bad

    def bad(self, line, problem):
        if not self.skip:
            raise ProfileError(self.table.source, problem, line)
        sk = self.table.skipped
        if sk and sk[-1][0] == line:                 # one entry per skipped line
            sk[-1] = (line, f"{sk[-1][1]}; {problem}")
        else:
            sk.append((line, problem))

    def time(self, v, line):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if math.isfinite(v):
                return float(v)
        elif isinstance(v, datetime):
            return seconds(v)
        else:
            s = str(v).strip()
            if s.lower() not in MISSING:
                try:
                    x = float(s)
                    if math.isfinite(x):
                        return x
                except ValueError:
                    try:
                        return seconds(datetime.fromisoformat(s.replace("/", "-", 2)))
                    except ValueError:
                        self.bad(line, f"malformed time {s[:40]!r}")
                        return None
        self.bad(line, "missing time value")
        return None

    def power(self, v, line, scale=1.0, limit=MAX_GPU_W, what="one GPU"):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            x = float(v)
        else:
            s = "" if v is None else str(v).strip()
            if s and s[-1] in "Ww":                  # "312.45 W"
                s = s[:-1].rstrip()
            if s.lower() in MISSING or s.startswith("["):
                self.bad(line, f"missing power value ({s or 'empty'})")
                return None
            try:
                x = float(s)
            except ValueError:
                self.bad(line, f"malformed power value {s[:40]!r}")
                return None
        if not math.isfinite(x):
            self.bad(line, "missing power value (nan)")
            return None
        x *= scale
        if x < 0:
            self.bad(line, f"negative power {x:g} W")
            return None
        if x > limit:
            self.bad(line, f"absurd power {x:g} W for {what} (limit {limit:g} W: wrong unit?)")
            return None
        return x


def seconds(dt: datetime) -> float:
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return (dt - _EPOCH).total_seconds()


def norm(name):
    """Column name -> (normalised name, watt scale from a `[W]`/`[mW]` suffix)."""
    s = str(name).strip()
    m = _UNIT.search(s)
    scale = _SCALE.get(m.group(1).lower(), 1.0) if m else 1.0
    return _UNIT.sub("", s).strip().lower(), scale


def find(cols, names):
    for i, (c, _) in enumerate(cols):
        if c in names:
            return i
    return None


def is_data(fields):
    """True if every field is a number or a timestamp: a row of data, not a header."""
    for f in fields:
        s = str(f).replace("W", "").strip()
        try:
            float(s)
        except ValueError:
            try:
                datetime.fromisoformat(s.replace("/", "-", 2))
            except ValueError:
                return False
    return True
