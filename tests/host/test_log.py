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
