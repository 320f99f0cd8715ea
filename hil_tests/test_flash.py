"""`cabctl flash` for real, end to end: the plant, a virtual board (`cabctl vboard`:
the MicroPython unix port behind a pty, its folder as the flash), the real
mpremote underneath. The flashed firmware must boot and hold the cap, judged
from the plant's ground truth; a re-flash must skip unchanged files."""
import json
import os
import subprocess
import sys
import time

import pytest
import serial

from cabctl import flash as flashmod
from cabctl import truth
from cabctl.build import board_names, build, load_board
from cabctl.telemetry import StreamDecoder, load_schema

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the virtual board needs Linux ptys")

CAP_W = 18_000_000
RUN_S = 9


def cabctl(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "cabctl", *args], capture_output=True,
                          text=True, timeout=timeout)


def flash_json(*args):
    r = cabctl("flash", "--json", *args)
    lines = r.stdout.strip().splitlines()
    return r, (json.loads(lines[-1]) if lines else {})


@pytest.fixture
def plant(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "cabctl", "plant", "--seconds", "45",
                          "--truth", str(tmp_path / "truth.csv")],
                         stdout=subprocess.PIPE, stderr=open(tmp_path / "plant.log", "w"),
                         text=True)
    line = p.stdout.readline()
    if not line:
        p.wait(timeout=5)
        pytest.fail(f"plant did not start (exit {p.returncode}); see {tmp_path / 'plant.log'}")
    info = json.loads(line)
    info["truth"] = tmp_path / "truth.csv"
    yield info
    p.terminate()                    # SIGTERM: the plant closes its truth CSV complete
    p.wait(timeout=10)


def start_vboard(tmp_path, bus=None):
    flash_dir = tmp_path / "flash"
    cmd = [sys.executable, "-m", "cabctl", "vboard", "--dir", str(flash_dir),
           "--log", str(tmp_path / "vboard.log")]
    if bus:
        cmd += ["--bus", bus]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    port = p.stdout.readline().strip()
    if not port:
        p.wait(timeout=5)
        pytest.fail(f"vboard did not start (exit {p.returncode})")
    return p, port, flash_dir


@pytest.fixture
def vboard(tmp_path, plant):
    p, port, flash_dir = start_vboard(tmp_path, plant["bus"])
    yield {"port": port, "flash": flash_dir, "log": tmp_path / "vboard.log"}
    p.terminate()
    p.wait(timeout=10)


def read_frames(port, seconds):
    """Telemetry from the board's console for `seconds`; (decoder, frames with host times)."""
    dec = StreamDecoder(load_schema())
    frames = []
    with serial.Serial(port, 115200, timeout=0.1, exclusive=True) as s:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            data = s.read(4096)
            now = time.monotonic()
            for f in dec.feed(data):
                f["host_time_s"] = now
                frames.append(f)
    return dec, frames


def test_flash_vboard_boots_holds_cap_and_reflash_skips(tmp_path, plant, vboard):
    port = vboard["port"]
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"cap_w": CAP_W}))
    key = tmp_path / "key.bin"
    key.write_bytes(os.urandom(32))
    common = ["--board", "unix", "--port", port, "--config", str(site), "--key-file", str(key)]

    t = time.monotonic()
    r, rep = flash_json(*common)
    full_s = time.monotonic() - t
    assert r.returncode == 0, r.stderr + r.stdout
    n = len(rep["files"])
    assert rep["ok"] and rep["verified"] and rep["written"] == n and rep["unchanged"] == 0, rep
    assert rep["device"]["mpy_arch"] == "x64" and rep["first_frame"]["seq"] >= 1, rep
    assert "written" in r.stderr                                   # progress lines
    # The vboard's flash holds exactly what the build made, key included.
    _, items = build("unix", config=site, key_file=key, out_dir=tmp_path / "build")
    for it in items:
        assert (vboard["flash"] / it.path).read_bytes() == it.data, it.path
    assert (vboard["flash"] / "key.bin").stat().st_size == 32

    # The flashed firmware controls the plant: judged from ground truth.
    dec, frames = read_frames(port, RUN_S)
    t_end = time.monotonic() - plant["t0_monotonic"]
    assert len(frames) >= RUN_S * 15, dec.stats()
    assert dec.corrupt == 0 and dec.lost == 0, dec.stats()
    assert frames[-1]["meter_errors"] == 0 and frames[-1]["state"] == 1, frames[-1]  # run
    assert frames[-1]["cap_w"] == CAP_W
    time.sleep(0.3)                                   # the plant writes truth every 5 ms
    tr = truth.load(plant["truth"])
    judged = truth.window(tr, frames[0]["host_time_s"] - plant["t0_monotonic"], t_end)
    m = truth.metrics(judged, CAP_W)
    print("judged:", m)
    assert m["judged_seconds"] > RUN_S - 1.5, m
    assert m["peak_load_w"] > CAP_W * 1.1, f"the load never exceeded the cap: {m}"
    assert m["max_over_cap_ms"] <= 300, m
    assert judged["battery_w"].max() > 1_000_000, "the battery never discharged"

    # The real mpremote CLI talks to the board while the firmware runs (Ctrl-C).
    mp = [os.path.join(os.path.dirname(sys.executable), "mpremote"), "connect", port]
    r = subprocess.run(mp + ["exec", "import os; print(sorted(os.listdir('cabinet')))"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "'controller.mpy'" in r.stdout, r.stdout + r.stderr

    # Re-flash, nothing changed: every file skipped, verified, and it boots again.
    # A stale source left on the board would be imported instead of hal.mpy.
    (vboard["flash"] / "hal.py").write_text("raise ImportError('stale hal.py')\n")
    t = time.monotonic()
    r, rep2 = flash_json(*common)
    again_s = time.monotonic() - t
    assert r.returncode == 0, r.stderr + r.stdout
    assert rep2["written"] == 0 and rep2["unchanged"] == n and rep2["bytes_written"] == 0, rep2
    assert rep2["removed"] == ["hal.py"] and not (vboard["flash"] / "hal.py").exists()
    assert rep2["verified"] and rep2["first_frame"]["seq"] >= 1
    # A changed site config is the only file written.
    site.write_text(json.dumps({"cap_w": CAP_W, "period_ms": 50}))
    r, rep3 = flash_json(*common)
    assert r.returncode == 0, r.stderr
    assert [f["path"] for f in rep3["files"] if f["action"] == "written"] == ["site.json"]
    print(f"flash: full {full_s:.2f} s (write {rep['write_seconds']:.2f} s), "
          f"unchanged {again_s:.2f} s")


def test_flash_errors_name_what_failed(tmp_path):
    p, port, _ = start_vboard(tmp_path)               # no bus: flashing needs none
    try:
        r = cabctl("flash", "--board", "rp2040_pico", "--port", port)
        assert r.returncode == flashmod.EXIT_ARCH, r.stderr
        assert "wrong architecture" in r.stderr and "x64" in r.stderr
        with serial.Serial(port, exclusive=True):
            r = cabctl("flash", "--board", "unix", "--port", port)
        assert r.returncode == flashmod.EXIT_PORT and "busy" in r.stderr, r.stderr
    finally:
        p.terminate()
        p.wait(timeout=10)
    r = cabctl("flash", "--board", "unix", "--port", str(tmp_path / "ttyNOPE"))
    assert r.returncode == flashmod.EXIT_PORT and "not found" in r.stderr, r.stderr
    master, slave = os.openpty()                      # a port where nobody answers
    try:
        r = cabctl("flash", "--board", "unix", "--port", os.ttyname(slave),
                   "--connect-timeout", "0.5")
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == flashmod.EXIT_NO_ANSWER and "not answering" in r.stderr, r.stderr
    (tmp_path / "short.key").write_bytes(os.urandom(16))
    r = cabctl("flash", "--board", "unix", "--dry-run", "--key-file", str(tmp_path / "short.key"))
    assert r.returncode == flashmod.EXIT_INPUT and "32" in r.stderr, r.stderr
    (tmp_path / "bad.json").write_text(json.dumps({"cap_w": 1000, "recharge_w": 2000}))
    r = cabctl("flash", "--board", "unix", "--dry-run", "--config", str(tmp_path / "bad.json"))
    assert r.returncode == flashmod.EXIT_INPUT and "recharge_w" in r.stderr, r.stderr


@pytest.mark.parametrize("board", board_names())
def test_dry_run_lists_files_and_touches_no_port(board, tmp_path):
    (tmp_path / "site.json").write_text("{}")
    (tmp_path / "key.bin").write_bytes(os.urandom(32))
    r, rep = flash_json("--board", board, "--dry-run", "--config", str(tmp_path / "site.json"),
                        "--key-file", str(tmp_path / "key.bin"))
    assert r.returncode == 0, r.stderr
    assert rep["dry_run"] and rep["arch"] == load_board(board)["mpy_arch"] and rep["port"] is None
    paths = {f["path"]: f["size"] for f in rep["files"]}
    assert {"main.py", "hal.mpy", "board.json", "telemetry.json", "site.json", "key.bin",
            "cabinet/controller.mpy", "maps/pcs_sunspec.json"} <= set(paths)
    assert all(size > 0 for size in paths.values()) and paths["key.bin"] == 32
    r = cabctl("flash", "--board", board, "--dry-run")
    assert r.returncode == 0 and "nothing written" in r.stdout and "hal.mpy" in r.stdout


class FakeDevice:
    """Stands in for flash.Device: a filesystem in a dict."""
    files = {}
    free = 1 << 20
    corrupt = None

    def __init__(self, port, **kw):
        self.writes = []

    def connect(self):
        pass

    def close(self):
        pass

    def feed_watchdog(self, ms):
        pass

    def probe(self, paths):
        import hashlib
        h = {p: hashlib.sha256(self.files[p]).hexdigest() if p in self.files else None
             for p in paths}
        return {"mpy": 0x0B06, "platform": "linux", "version": "fake", "hashes": h,
                "sizes": {p: len(self.files.get(p, b"")) if p in self.files else -1
                          for p in paths},
                "fs": [4096, 4096, 0, 0, self.free // 4096], "dirs": {"cabinet": True,
                                                                     "maps": True},
                "shadows": []}

    def write(self, path, data, progress=None):
        FakeDevice.files[path] = data if path != self.corrupt else data + b"!"

    def hashes(self, paths):
        return self.probe(paths)["hashes"]

    def import_all(self, modules):
        pass

    def boot(self, wait_s):
        return {"seq": 1}


def test_flash_logic_space_and_verification(monkeypatch):
    monkeypatch.setattr(flashmod, "Device", FakeDevice)
    FakeDevice.files, FakeDevice.free, FakeDevice.corrupt = {}, 8 * 4096, None
    with pytest.raises(flashmod.FlashError) as e:
        flashmod.flash("unix", "fake", out=open(os.devnull, "w"))
    assert e.value.code == flashmod.EXIT_SPACE and "too large" in str(e.value)
    assert FakeDevice.files == {}                      # refused before writing anything
    FakeDevice.free, FakeDevice.corrupt = 1 << 20, "cabinet/dispatch.mpy"
    with pytest.raises(flashmod.FlashError) as e:
        flashmod.flash("unix", "fake", out=open(os.devnull, "w"))
    assert e.value.code == flashmod.EXIT_VERIFY and "cabinet/dispatch.mpy" in str(e.value)
    FakeDevice.corrupt = None
    rep = flashmod.flash("unix", "fake", out=open(os.devnull, "w"))
    assert rep["written"] == 1 and rep["first_frame"] == {"seq": 1}   # only the bad file again
