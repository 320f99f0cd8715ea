"""`cabctl log --cmd`: decode a real byte stream from another process."""
import csv
import json
import subprocess
import sys
import textwrap

from cabctl.paths import FIRMWARE

# A producer that emits frames the way the firmware does (same Frame class),
# with garbage, one dropped frame and a truncated frame in between.
PRODUCER = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(FIRMWARE)!r})
    from cabinet.telemetry import Frame, load_schema
    f = Frame(load_schema({str(FIRMWARE / 'telemetry.json')!r}))
    out = sys.stdout.buffer
    out.write(b'boot noise\\r\\n')
    for seq in range(1, 41):
        f.put(f.index('seq'), seq)
        f.put(f.index('grid_w'), 17000000 + seq)
        f.put(f.index('battery_w'), -seq)
        wire = bytes(f.seal())
        if seq == 20:
            continue                      # lost on the wire
        if seq == 30:
            out.write(wire[:10])          # cut short: the next frame must still decode
            continue
        out.write(wire)
    out.flush()
""")


def test_log_from_command(tmp_path):
    producer = tmp_path / "producer.py"
    producer.write_text(PRODUCER)
    out_csv = tmp_path / "t.csv"
    r = subprocess.run([sys.executable, "-m", "cabctl", "log", "--quiet",
                        "--cmd", f"{sys.executable} {producer}", "--csv", str(out_csv),
                        "--seconds", "20"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    # 40 frames sent: #20 dropped, #30 cut short. The boot text and the cut
    # frame are glued to the frames after them; those still decode (fixed
    # length), and the garbage is counted.
    assert stats["frames_received"] == 38, stats
    assert stats["frames_lost"] == 2, stats
    assert stats["frames_corrupt"] == 2, stats
    rows = list(csv.DictReader(open(out_csv)))
    assert len(rows) == 38
    assert rows[0]["seq"] == "1" and rows[0]["grid_w"] == "17000001"
    assert rows[-1]["battery_w"] == "-40"


# A producer that boots twice (a device reset), with boot text before each run of frames.
RESETTING = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(FIRMWARE)!r})
    from cabinet.telemetry import Frame, load_schema
    f = Frame(load_schema({str(FIRMWARE / 'telemetry.json')!r}))
    out = sys.stdout.buffer
    n = int(sys.argv[1])
    for boot in range(2):
        out.write(b'MPY: soft reboot\\r\\nboot %d\\r\\n' % boot)
        for seq in range(1, n + 1):
            f.put(f.index('seq'), seq)
            f.put(f.index('grid_w'), 1000 * boot + seq)
            out.write(bytes(f.seal()))
        if boot == 0:
            out.write(bytes(f.seal())[:40])    # reset mid-frame
    out.flush()
""")


def _log(tmp_path, *args, n=50):
    producer = tmp_path / "resetting.py"
    producer.write_text(RESETTING)
    return subprocess.run([sys.executable, "-m", "cabctl", "log",
                           "--cmd", f"{sys.executable} {producer} {n}", "--seconds", "30", *args],
                          capture_output=True, text=True, timeout=60)


def test_quiet_prints_only_the_summary(tmp_path):
    r = _log(tmp_path, "--quiet", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    s = json.loads(lines[0])
    assert (s["frames_received"], s["device_resets"], s["frames_lost"]) == (100, 1, 0)
    assert s["frames_corrupt"] >= 1                      # the cut frame + boot text
    assert s["rows_written"] == 100 and s["out"] == str(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "log.json", "telemetry-0001.csv", "telemetry-0001.parquet"]
    assert json.loads((tmp_path / "run" / "log.json").read_text()) == s
    import pyarrow.parquet as pq
    t = pq.read_table(tmp_path / "run" / "telemetry-0001.parquet")
    assert t.column("seq").to_pylist() == list(range(1, 51)) * 2
    assert t.column("grid_w").to_pylist()[49:51] == [50, 1001]


def test_live_view_goes_to_stderr(tmp_path):
    r = _log(tmp_path, "--out", str(tmp_path / "run"), "--format", "csv")
    assert r.returncode == 0, r.stderr
    # Not a terminal: rich prints the view once, when the logger stops.
    for shown in ("grid_w", "soc_cpct", "frames/s", "resets", "telemetry-0001.csv"):
        assert shown in r.stderr, shown
    assert len(r.stdout.splitlines()) == 1 and json.loads(r.stdout)["frames_received"] == 100
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["log.json", "telemetry-0001.csv"]


def test_rotation_from_the_command_line(tmp_path):
    r = _log(tmp_path, "--quiet", "--out", str(tmp_path / "run"), "--rotate-mb", "0.004", n=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    csvs = sorted((tmp_path / "run").glob("telemetry-*.csv"))
    pqs = sorted((tmp_path / "run").glob("telemetry-*.parquet"))
    assert len(csvs) == len(pqs) >= 3 and len(s["files"]) == len(csvs) + len(pqs)
    seqs = [int(row["seq"]) for p in csvs for row in csv.DictReader(open(p))]
    assert seqs == list(range(1, 301)) * 2
    import pyarrow.parquet as pq
    assert [v for p in pqs for v in pq.read_table(p).column("seq").to_pylist()] == seqs


def test_default_folder_is_a_new_log_run(tmp_path, monkeypatch, capsys):
    from cabctl import cli, rig
    real = rig.new_run_dir
    monkeypatch.setattr(rig, "new_run_dir", lambda tag: real(base=tmp_path, tag=tag))
    producer = tmp_path / "resetting.py"
    producer.write_text(RESETTING)
    assert cli.main(["log", "--quiet", "--cmd", f"{sys.executable} {producer} 5"]) == 0
    s = json.loads(capsys.readouterr().out.splitlines()[-1])
    out = s["out"]
    assert out.startswith(str(tmp_path / "log-")) and s["frames_received"] == 10


def test_a_command_that_cannot_start(tmp_path, capsys):
    from cabctl import cli
    assert cli.main(["log", "--quiet", "--cmd", str(tmp_path / "nothing-here"),
                     "--out", str(tmp_path / "run")]) == 2
    assert "cabctl log: cannot run" in capsys.readouterr().err
