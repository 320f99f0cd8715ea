"""`cabctl profile gen|import|stats|plot|list` and `cabctl plant --profile`."""
import json
import subprocess
import sys

import pytest

from cabctl.cli import main
from cabctl.profiles import fileformat
from cabctl.profiles.stats import FIELDS


def cabctl(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def smi_log(path, seconds=30, stall=(14.0, 6.0), gpus=8, bad_line=None):
    lines = ["timestamp, power.draw [W]"]
    for k in range(int(seconds * 10)):
        t = k / 10
        if stall[0] <= t < stall[0] + stall[1]:
            continue
        w = 650 if (k % 9) < 5 else 250
        lines += [f"2024/05/01 12:{int(t // 60):02d}:{t % 60:06.3f}, {w + g:.2f} W" for g in range(gpus)]
    if bad_line:
        lines[bad_line - 1] = "2024/05/01 12:00:0#, ?? W"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_gen_then_stats_json_prints_every_field(tmp_path, capsys):
    out = tmp_path / "steady.prof.gz"
    rc, _, err = cabctl(capsys, "profile", "gen", "steady", "--seconds", 30, "--seed", 4, "--out", out)
    assert rc == 0 and "wrote" in err and "MW" in err
    assert fileformat.read(out).duration_s == pytest.approx(30)
    rc, stdout, _ = cabctl(capsys, "profile", "stats", out, "--json")
    s = json.loads(stdout)
    assert rc == 0 and list(s) == FIELDS and s["duration_s"] == 30
    rc, stdout, _ = cabctl(capsys, "profile", "stats", "demo", "--seconds", 20, "--json")
    assert json.loads(stdout)["max_w"] > 22_500_000
    rc, stdout, _ = cabctl(capsys, "profile", "stats", out)
    assert "largest 1 s rise" in stdout and "dominant period" in stdout


def test_gen_from_config_and_list(tmp_path, capsys):
    cfg = tmp_path / "site.json"
    cfg.write_text(json.dumps({"gpus": 64, "step_ms": 100, "jobs": [{"gpus": 64, "period_s": 0.5}]}))
    rc, _, _ = cabctl(capsys, "profile", "gen", "--config", cfg, "--seconds", 10, "--out", tmp_path / "s.prof")
    assert rc == 0 and fileformat.read(tmp_path / "s.prof").name == "site"
    rc, stdout, _ = cabctl(capsys, "profile", "list")
    assert {"texas", "steady", "checkpoint-heavy", "start-crash", "mixed", "demo"} <= \
        {line.split()[0] for line in stdout.splitlines()}


def test_import_reports_the_logger_stall(tmp_path, capsys):
    log = smi_log(tmp_path / "node.csv")
    out = tmp_path / "cluster.prof"
    rc, stdout, _ = cabctl(capsys, "profile", "import", log, "--format", "nvidia-smi",
                           "--scale-to-gpus", 10240, "--overhead", 1.2, "--out", out, "--json")
    r = json.loads(stdout)
    assert rc == 0 and r["report"]["copies"] == 1280 and r["report"]["gpus_out"] == 10240
    assert len(r["report"]["gaps"]) == 1 and r["report"]["gaps"][0]["len_s"] == pytest.approx(6.1)
    assert r["stats"]["gaps"] == 1 and list(r["stats"]) == FIELDS
    rc, _, err = cabctl(capsys, "profile", "import", log, "--format", "nvidia-smi", "--gaps",
                        "interpolate", "--step-ms", 200, "--out", out)
    assert rc == 0 and "gaps (logger stalls, filled by interpolate, not load steps): 1" in err
    assert "at 13.9 s for 6.1 s" in err
    assert fileformat.read(out).gaps == [(13.9, 6.1, "interpolate")]


def test_import_error_names_file_and_line_or_skips(tmp_path, capsys):
    log = smi_log(tmp_path / "node.csv", bad_line=42)
    out = tmp_path / "x.prof"
    rc, _, err = cabctl(capsys, "profile", "import", log, "--format", "nvidia-smi", "--out", out)
    assert rc == 2 and f"{log}:42: malformed time" in err and not out.exists()
    rc, _, err = cabctl(capsys, "profile", "import", log, "--format", "nvidia-smi", "--skip-bad",
                        "--out", out)
    assert rc == 0 and "skipped lines: 2" in err and "line 42: malformed time" in err


def test_plot_writes_a_png(tmp_path, capsys):
    png = tmp_path / "p.png"
    rc, stdout, _ = cabctl(capsys, "profile", "plot", "checkpoint-heavy", "--seconds", 120, "--out", png)
    assert rc == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plant_serves_the_profile_it_is_given(tmp_path):
    prof = tmp_path / "flat.prof"
    prof.write_text("# cabinet-profile v1 step_ms=100 unit=W\n# name: flat\n" + "5000000\n" * 10)
    cmd = [sys.executable, "-m", "cabctl", "plant", "--seconds", "0.3", "--truth", str(tmp_path / "t.csv")]
    proc = subprocess.run(cmd + ["--profile", str(prof)], capture_output=True, text=True, timeout=30)
    info = json.loads(proc.stdout.splitlines()[0])
    assert proc.returncode == 0 and info["profile"] == "flat"
    loads = {line.split(",")[1] for line in (tmp_path / "t.csv").read_text().splitlines()[1:]}
    assert loads == {"5000000"}
    proc = subprocess.run(cmd + ["--profile", "no-such"], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "no-such" in proc.stderr and proc.stdout == ""
