"""`cabctl plot RUN`: a PNG from a run folder's telemetry (log parts or the demo's telemetry.csv)."""
import json

import pytest

from cabctl import cli, logplot, logstore
from cabctl.log import Logger
from cabctl.paths import TELEMETRY_SCHEMA
from cabctl.telemetry import load_schema
from cabinet import telemetry as ft          # the firmware module (tests/conftest.py)

SCHEMA = load_schema()
FW_SCHEMA = ft.load_schema(str(TELEMETRY_SCHEMA))
PNG = b"\x89PNG\r\n\x1a\n"


class Clock:
    t = 100.0

    def __call__(self):
        self.t += 0.05
        return self.t


def stream(n, reset_at=None):
    f = ft.Frame(FW_SCHEMA)
    out = bytearray()
    seq = 0
    for i in range(n):
        seq = 1 if i == reset_at else seq + 1
        load = 17_000_000 + (6_000_000 if (i // 40) % 2 else 0)
        battery = max(0, load - 18_000_000)
        for name, v in (("seq", seq), ("load_w", load), ("battery_w", battery),
                        ("grid_w", load - battery), ("setpoint_w", battery), ("cap_w", 18_000_000),
                        ("soc_cpct", 6000 - i), ("state", 1 if i < n - 20 else 2)):
            f.put(f.index(name), v)
        out += f.seal()
    return bytes(out)


def write_run(folder, store, n=400, reset_at=150):
    log = Logger(store=store, quiet=True, keep_frames=False, clock=Clock())
    data = stream(n, reset_at)
    for i in range(0, len(data), 125):                      # one frame per read
        log.feed(data[i:i + 125])
    log.close()
    return folder


def is_png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000


def test_plot_a_log_run_folder(tmp_path, capsys):
    run = write_run(tmp_path / "log-1", logstore.RotatingStore(tmp_path / "log-1", SCHEMA,
                                                               rotate_bytes=15_000))
    (run / "log.json").write_text(json.dumps({"frames_received": 400, "frames_lost": 0,
                                              "frames_corrupt": 0}))
    assert len(logstore.part_files(run)) >= 2
    assert cli.main(["plot", str(run)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(run / "telemetry.png") and is_png(run / "telemetry.png")


def test_plot_a_demo_folder_and_a_single_file(tmp_path):
    run = tmp_path / "demo-1"
    run.mkdir()
    write_run(run, logstore.SingleCsv(run / "telemetry.csv", SCHEMA))
    assert logplot.plot(run) == run / "telemetry.png" and is_png(run / "telemetry.png")
    png = logplot.plot(run / "telemetry.csv", out=tmp_path / "x.png")
    assert png == tmp_path / "x.png" and is_png(png)
    assert logplot.plot(run / "telemetry.csv") == run / "telemetry.png"


def test_plot_ground_truth_of_a_demo_folder(tmp_path):
    run = tmp_path / "demo-2"
    run.mkdir()
    rows = ["t_s,load_w,grid_w,battery_w,soc_cpct"]
    rows += [f"{i * 0.005:.3f},{17e6 + i},{17e6},{i},{6000}" for i in range(400)]
    (run / "truth.csv").write_text("\n".join(rows) + "\n")
    (run / "site.json").write_text(json.dumps({"cap_w": 18_000_000}))
    assert logplot.plot(run) == run / "run.png" and is_png(run / "run.png")   # no telemetry: truth
    assert cli.main(["plot", str(run), "--truth", "--out", str(tmp_path / "t.png")]) == 0
    assert is_png(tmp_path / "t.png")


@pytest.mark.parametrize("make, msg", [
    (lambda d: d, "no telemetry here"),
    (lambda d: (d / "report.json").write_text("{}") and d, "sim.png"),
    (lambda d: d / "missing", "no such run folder"),
    (lambda d: (d / "notes.txt").write_text("x") and d / "notes.txt", "not a telemetry"),
])
def test_plot_errors_say_what_is_missing(tmp_path, capsys, make, msg):
    target = make(tmp_path)
    assert cli.main(["plot", str(target)]) == 2
    assert msg in capsys.readouterr().err
