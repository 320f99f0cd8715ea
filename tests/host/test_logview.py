"""The live view of `cabctl log`: latest values with units and enum names, link counters."""
import io

from rich.console import Console

from cabctl import logview
from cabctl.log import Logger
from cabctl.paths import TELEMETRY_SCHEMA
from cabctl.telemetry import load_schema
from cabinet import telemetry as ft          # the firmware module (tests/conftest.py)

SCHEMA = load_schema()
FW_SCHEMA = ft.load_schema(str(TELEMETRY_SCHEMA))
ENUMS = SCHEMA["enums"]

VALUES = {"grid_w": 17_000_001, "battery_w": -1_250_000, "setpoint_w": -1_300_000,
          "load_w": 15_750_001, "soc_cpct": 5523, "state": ENUMS["state"].index("run"),
          "reason": ENUMS["reason"].index("recharge"), "cycle_us": 7900, "late_cycles": 3,
          "meter_errors": 4, "pcs_errors": 5, "cap_w": 18_000_000, "pcs_alarms": 0x12}


def frame(seq, **values):
    f = ft.Frame(FW_SCHEMA)
    f.put(f.index("seq"), seq)
    for name, v in values.items():
        f.put(f.index(name), v)
    return bytes(f.seal())


def text_of(renderable, width=140):
    con = Console(file=io.StringIO(), width=width, color_system=None)
    con.print(renderable)
    return con.file.getvalue()


def test_render_shows_the_latest_values_and_counters():
    log = Logger(quiet=True, keep_frames=False)
    log.feed(b"garbage\x00" + frame(1, **VALUES) + frame(3, **VALUES))
    stats = logview.counters(log.dec)
    stats.update(source="/dev/ttyACM0", frames_per_s=20.0, file="telemetry-0001.{csv,parquet}")
    out = text_of(logview.render(log.latest, SCHEMA, stats))
    for name in ("grid_w", "battery_w", "setpoint_w", "load_w", "soc_cpct", "state", "reason",
                 "cycle_us", "late_cycles", "meter_errors", "pcs_errors", "cap_w"):
        assert f"│ {name} " in out, name
    for shown in ("17,000,001", "17.000 MW", "-1,250,000", "-1.250 MW", "55.23 %", "run", "recharge",
                  "7.9 ms", "0x0012", "18.000 MW"):
        assert shown in out, shown
    for label, value in (("frames", "2"), ("frames/s", "20.0"), ("lost", "1"), ("corrupt", "1"),
                         ("newer_version", "0"), ("resets", "0")):
        line = next(ln for ln in out.splitlines() if f"│ {label} " in ln)
        assert line.rstrip().rstrip("│").rstrip().endswith(value), (label, line)
    assert "/dev/ttyACM0" in out and "telemetry-0001.{csv,parquet}" in out


def test_enum_names_come_from_the_schema():
    for field, names in ENUMS.items():
        if field in SCHEMA["by_key"].values():
            for i, name in enumerate(names):
                assert logview.human(field, i, "", ENUMS) == name
            assert logview.human(field, len(names), "", ENUMS) == f"unknown ({len(names)})"


def test_waiting_and_narrow_terminal():
    out = text_of(logview.render(None, SCHEMA, {"frames": 0, "source": "cmd: x [y]"}, width=80),
                  width=80)
    assert "waiting for frames" in out and "cmd: x [y]" in out          # no markup in user text
    lines = out.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    assert lines.index(next(ln for ln in lines if "link" in ln)) > 5    # stacked, not side by side


def test_live_view_refreshes_from_the_logger():
    log = Logger(quiet=True, keep_frames=False)
    con = Console(file=io.StringIO(), width=140, color_system=None)
    view = logview.LiveView(log, "test", console=con)
    view.start()
    log.feed(frame(1, **VALUES))
    view._t_prev -= 1.0                                           # a second has passed
    view.update()
    view.stop()
    out = con.file.getvalue()                                     # not a terminal: the last view
    assert "17,000,001" in out and "frames/s" in out and "last frame" in out
