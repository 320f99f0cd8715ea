"""The live view of `cabctl log`: a rich table of the latest frame and the link counters.

render() builds the table from plain data (testable with a Console writing
to a string); LiveView refreshes it on the terminal (stderr) from the main
thread while the reader thread feeds the decoder.
"""
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

# Shown first, in this order; the schema's other fields follow in key order.
FIRST = ("grid_w", "battery_w", "setpoint_w", "load_w", "cap_w", "soc_cpct", "state", "cause",
         "reason", "cycle_us", "late_cycles", "meter_errors", "pcs_errors", "pcs_alarms")
HIDDEN = ("version",)


def human(name, value, unit, enums):
    """A readable form of one field's value ('' when the raw value says it all)."""
    if value is None:
        return "not in this frame's version"
    if name in enums:
        names = enums[name]
        return names[value] if 0 <= value < len(names) else f"unknown ({value})"
    if unit == "W":
        return f"{value / 1e6:.3f} MW"
    if unit == "0.01%":
        return f"{value / 100:.2f} %"
    if unit == "us":
        return f"{value / 1000:.1f} ms"
    if unit == "ms":
        s = value // 1000
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    if name.endswith("_alarms"):
        return f"0x{value:04x}"
    return ""


def frame_table(latest, schema):
    t = Table(title="latest frame", title_justify="left", expand=False)
    t.add_column("field", no_wrap=True, min_width=15)
    t.add_column("value", justify="right", no_wrap=True, min_width=14)
    t.add_column("", justify="left", no_wrap=True, min_width=10)
    if latest is None:
        t.add_row("waiting for frames...", "", "")
        return t
    units = {f["name"]: f.get("unit", "") for f in schema["fields"]}
    order = [n for n in FIRST if n in units] + [f["name"] for f in schema["fields"]
                                                if f["name"] not in FIRST and f["name"] not in HIDDEN]
    enums = schema.get("enums", {})
    for name in order:
        v = latest.get(name)
        h = human(name, v, units[name], enums)
        style = "bold red" if name == "state" and v is not None and h != "run" else ""
        t.add_row(name, "-" if v is None else f"{v:,}", Text(h, style=style))
    if "version" in latest:
        t.add_row("version", str(latest["version"]), "")
    return t


def link_table(stats):
    t = Table(title="link", title_justify="left", expand=False)
    t.add_column("counter", no_wrap=True)
    t.add_column("value", justify="right", max_width=48, overflow="ellipsis")
    for key, label, fmt in (("source", "source", "{}"), ("frames", "frames", "{:,}"),
                            ("frames_per_s", "frames/s", "{:.1f}"), ("lost", "lost", "{:,}"),
                            ("corrupt", "corrupt", "{:,}"), ("newer_version", "newer_version", "{:,}"),
                            ("resets", "resets", "{:,}"), ("reconnects", "reconnects", "{:,}"),
                            ("last_frame_s", "last frame", "{:.1f} s ago"),
                            ("elapsed_s", "running", "{:.0f} s"), ("file", "writing", "{}"),
                            ("rows", "rows written", "{:,}"),
                            ("last_error", "last error", "{}")):
        v = stats.get(key)
        if v is None or v == "":
            continue
        style = "bold red" if key in ("lost", "corrupt", "newer_version", "resets") and v else ""
        t.add_row(label, Text(fmt.format(v), style=style))
    return t


def render(latest, schema, stats, width=120):
    """The whole view: latest frame beside the link counters (below them under 100 columns)."""
    frame, link = frame_table(latest, schema), link_table(stats)
    if width < 100:
        return Group(frame, link)
    grid = Table.grid(padding=(0, 3))
    grid.add_row(frame, link)
    return grid


def counters(dec):
    return {"frames": dec.frames, "lost": dec.lost, "corrupt": dec.corrupt,
            "newer_version": dec.newer_version, "resets": dec.resets, "last_error": dec.last_error}


class LiveView:
    """Refreshed by update(), called at least once a second by `cabctl log`'s main loop."""

    def __init__(self, logger, source, console=None, extra=None):
        self.logger = logger
        self.source = source
        self.extra = extra or (lambda: {})
        self.console = console or Console(stderr=True)
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self._t0 = self._t_prev = time.monotonic()
        self._n_prev = 0
        self.frames_per_s = 0.0

    def stats(self, now):
        dec = self.logger.dec
        s = counters(dec)
        dt = now - self._t_prev
        if dt >= 0.5:
            self.frames_per_s = (dec.frames - self._n_prev) / dt
            self._t_prev, self._n_prev = now, dec.frames
        s.update(source=self.source, frames_per_s=self.frames_per_s, elapsed_s=now - self._t0)
        if self.logger.last_frame_at is not None:
            s["last_frame_s"] = max(0.0, now - self.logger.last_frame_at)
        s.update(self.extra())
        return s

    def start(self):
        self.live.start()
        self.update()

    def update(self):
        now = time.monotonic()
        self.live.update(render(self.logger.latest, self.logger.dec.schema, self.stats(now),
                                self.console.width), refresh=True)

    def stop(self):
        self.update()
        self.live.stop()
