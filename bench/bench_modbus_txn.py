"""Cost of one Modbus RTU transaction: this project's master vs micropython-modbus.

Both masters run on the MicroPython unix port (bench/mpy_modbus_txn.py) with
the same frames (read 16 holding registers, fc 3, unit 1 at 40077; write 5
registers, fc 16, unit 2 at 40100) through the same fake machine.UART and
machine.Pin (bench/peer_shim/machine.py) to the same in-memory slave, which
answers each request at once with a valid CRC-16/MODBUS reply. Ours is
cabinet.modbus Master + Txn over cabinet.mcu.Rs485Bus (the bus code the MCU
boards run); the peer is umodbus.serial.Serial from PyPI micropython-modbus,
installed for this benchmark only (pip --target under build/bench_peer/, never
into the venv: its import name `umodbus` clashes with the CPython uModbus the
plant uses). Every figure is checked against data: the decoded registers must
equal what the slave served and the slave must hold what was written, or the
script fails instead of printing a fast number.

One JSON line, figures per transaction (mean of the read and the write):
- cpu_us_per_txn: time.ticks_us around N transactions (median of 3 runs),
  minus shim_us_per_txn, the emulated slave's own work, timed apart. GC is
  enabled; with the unix port's 2 MB heap a collection is rare, so the peer's
  GC cost on an MCU's ~100-200 kB heap is not in it (see its alloc figures).
  ours: our master keeps 3.5 characters of bus silence before each request;
  that is bus time, so it is left out (gap_us = 0) and reported as
  gap_wait_us_per_txn, the wait when transactions go back to back.
  peer: with its fixed waits included, done as busy waits like sleep_us on
  an MCU (CPU kept busy); wait_us_per_txn is how much of it they are
  (time.sleep_us calls counted by the shim) and cpu_us_per_txn_excl_waits
  the same run with the sleeps counted but not performed.
- cpu_ratio_vs_peer = peer cpu_us_per_txn / ours (how many times faster ours
  is); cpu_ratio_vs_peer_excl_waits compares the code alone.
- alloc_bytes_per_txn: growth of gc.mem_alloc() over N transactions with the
  GC disabled.
- allocs_per_txn: heap objects allocated per transaction, counted as new
  object heads in micropython.mem_info(1)'s heap map (gc disabled), see
  alloc_unit; ours is also proven 0 by running it under micropython.heap_lock()
  (heap_lock_proof). gc_blocks_per_txn = alloc_bytes / gc_block_bytes.
- gc_alloc_calls_per_txn, instructions_per_txn (when valgrind is installed):
  callgrind's count of gc_alloc() calls and instructions, net of the shim.
  gc_alloc calls include VM call frames that MicroPython puts on the heap
  when it can and frees on return (with the heap locked they go on the C
  stack): they leave nothing for the GC, unlike allocs_per_txn.
- bus_time_us_115200: the physical floor of the read transaction on an RS-485
  bus at 115,200 baud: request + reply bytes x 11 bits + 2 x 1750 us gaps.
If the peer cannot be installed (no registry), "peer" is null and
"peer_error" says why; our figures are still printed.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from cabctl.paths import FIRMWARE, REPO
from cabctl.sil import micropython_exe

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "mpy_modbus_txn.py"
SHIM = HERE / "peer_shim"
PEER_SPEC = "micropython-modbus>=2.3.7,<2.4"
PEER_RANGE = ((2, 3, 7), (2, 4, 0))
PEER_DIR = REPO / "build" / "bench_peer"
PEER_LIB = PEER_DIR / "lib"
N_OURS, N_PEER, N_ALLOC, N_CALLGRIND = 1000, 500, 100, 50
RUNS = 3
BAUD = 115200


def _version(lib):
    f = lib / "umodbus" / "version.py"
    if not f.exists():
        return None
    m = re.search(r"__version_info__\s*=\s*\(([^)]*)\)", f.read_text())
    return tuple(int(x.strip(" '\"")) for x in m.group(1).split(",")) if m else None


def _in_range(v):
    return v is not None and PEER_RANGE[0] <= v < PEER_RANGE[1]


def install_peer():
    """(lib dir, version string) of micropython-modbus under build/, installing it once.

    Its sdists are made for MicroPython's old upip and hold no setup.py or
    pyproject.toml, so `pip install` downloads and unpacks one, then stops
    with "does not appear to be a Python project". With --no-clean pip keeps
    what it unpacked; the package is plain .py files, copied from there.
    """
    v = _version(PEER_LIB)
    if _in_range(v):
        return PEER_LIB, ".".join(map(str, v))
    PEER_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="install-", dir=PEER_DIR))
    try:
        (tmp / "pip-tmp").mkdir()
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-clean",
                            "--no-compile", "--disable-pip-version-check", "--timeout", "15",
                            "--retries", "1", "--target", str(tmp / "target"), PEER_SPEC],
                           env=dict(os.environ, TMPDIR=str(tmp / "pip-tmp")),
                           capture_output=True, text=True, timeout=180)
        found = tmp / "target" / "umodbus"
        if not (found / "serial.py").exists():
            hits = sorted((tmp / "pip-tmp").glob("**/umodbus/serial.py"))
            found = hits[0].parent if hits else None
        if found is None:
            lines = [ln.strip() for ln in r.stderr.splitlines() if ln.strip()]
            err = [ln for ln in lines if ln.startswith("ERROR")] or lines
            raise RuntimeError("pip install %s failed: %s"
                               % (PEER_SPEC, err[-1] if err else "exit %d" % r.returncode))
        shutil.rmtree(PEER_LIB, ignore_errors=True)
        PEER_LIB.mkdir(parents=True)
        shutil.copytree(found, PEER_LIB / "umodbus")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    v = _version(PEER_LIB)
    if not _in_range(v):
        raise RuntimeError("installed micropython-modbus %s is outside %s" % (v, PEER_SPEC))
    return PEER_LIB, ".".join(map(str, v))


def _env(peer_lib):
    path = [str(SHIM), str(FIRMWARE)] + ([str(peer_lib)] if peer_lib else [])
    return dict(os.environ, MICROPYPATH=":".join(path))


def heap_heads(lines):
    """Per '@@heap TAG N' marker: new object heads between the two heap maps after it."""
    out = {}
    tag = None
    maps = []
    cur = None
    for ln in lines:
        if ln.startswith("@@heap "):
            _, tag, n = ln.split()
            maps = []
            out[tag] = (maps, int(n))
        elif ln.startswith("GC memory layout"):
            cur = [0]
            maps.append(cur)
        elif cur is not None and re.match(r"^[0-9a-f]+: ", ln):
            row = ln.split(": ", 1)[1]
            cur[0] += sum(1 for ch in row if ch not in ".=")
        elif cur is not None and "lines all free" in ln:
            pass
        else:
            cur = None
    res = {}
    for tag, (maps, n) in out.items():
        if len(maps) != 2:
            raise RuntimeError("heap maps for %s: %d, expected 2" % (tag, len(maps)))
        res[tag] = (maps[1][0] - maps[0][0]) / n
    return res


def run_once(peer_lib):
    r = subprocess.run([micropython_exe(), str(SCRIPT), "run", str(N_OURS), str(N_PEER),
                        str(N_ALLOC), "peer" if peer_lib else "nopeer"],
                       env=_env(peer_lib), cwd=FIRMWARE, capture_output=True, text=True,
                       timeout=120)
    if r.returncode:
        raise RuntimeError("mpy_modbus_txn.py failed:\n" + r.stdout[-2000:] + r.stderr[-3000:])
    lines = r.stdout.splitlines()
    res = json.loads(lines[-1])
    res["heads"] = heap_heads(lines[:-1])
    return res


def callgrind_phases(peer_lib, n=N_CALLGRIND):
    """{phase: (gc_alloc calls, instructions)} from one callgrind run, or None."""
    if not shutil.which("valgrind"):
        return None
    names = ["setup", "empty", "ours_read", "ours_write", "shim_read", "shim_write"]
    if peer_lib:
        names += ["peer_read", "peer_write"]
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "cg.out"
        r = subprocess.run(["valgrind", "--tool=callgrind", "--dump-after=mp_micropython_stack_use",
                            "--compress-strings=no", "--compress-pos=no",
                            f"--callgrind-out-file={out}", sys.executable, "-c",
                            "import sys; from micropython_unix import main; "
                            f"sys.argv=['micropython', {str(SCRIPT)!r}, 'calls', '{n}', "
                            f"'{'peer' if peer_lib else 'nopeer'}']; main()"],
                           env=_env(peer_lib), cwd=FIRMWARE, capture_output=True, text=True,
                           timeout=300)
        if r.returncode:
            return None
        phases = {}
        for i, name in enumerate(names, 1):
            f = Path(f"{out}.{i}")
            if not f.exists():
                return None
            allocs = 0
            total = None
            lines = f.read_text().splitlines()
            for j, ln in enumerate(lines):
                if ln == "cfn=gc_alloc":
                    m = re.match(r"calls=(\d+)", lines[j + 1])
                    allocs += int(m.group(1))
                elif ln.startswith("totals:"):
                    total = int(ln.split()[1])
            phases[name] = (allocs, total)
    return phases


def per_txn_callgrind(ph, who, n=N_CALLGRIND):
    """Mean over read and write of (phase - shim phase) / n: calls and instructions."""
    if not ph:
        return None, None
    a = [(ph[f"{who}_{k}"][0] - ph[f"shim_{k}"][0]) / n for k in ("read", "write")]
    i = [(ph[f"{who}_{k}"][1] - ph[f"shim_{k}"][1]) / n for k in ("read", "write")]
    return round(sum(a) / 2, 1), int(sum(i) / 2)


def med(runs, f):
    return statistics.median(f(r) for r in runs)


def bus_time_us(nbytes, baud=BAUD):
    gap = 1750 if baud > 19200 else 3.5 * 11 * 1_000_000 / baud
    return round(nbytes * 11 * 1_000_000 / baud + 2 * gap)


def main():
    peer_lib, peer_version, peer_error = None, None, None
    try:
        peer_lib, peer_version = install_peer()
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        peer_error = str(e)[-300:]    # no registry, or a release we can't use
    runs = [run_once(peer_lib) for _ in range(RUNS)]
    r0 = runs[0]
    blk = r0["gc_block_bytes"]
    ph = callgrind_phases(peer_lib)
    ours_gcalls, ours_instr = per_txn_callgrind(ph, "ours")

    def shim(r, kind):
        return r["shim"][kind + "_ns"] / 1000

    def net(r, who, kind, suffix=""):
        return r[who][kind + "_ns" + suffix] / 1000 - shim(r, kind)

    def mean2(r, who, suffix=""):
        return (net(r, who, "read", suffix) + net(r, who, "write", suffix)) / 2

    heads = lambda who: med(runs, lambda r: (r["heads"][who + "_read"]            # noqa: E731
                                             + r["heads"][who + "_write"]) / 2)
    alloc_b = lambda who: med(runs, lambda r: (r[who]["alloc_bytes_read"]         # noqa: E731
                                               + r[who]["alloc_bytes_write"]) / (2 * N_ALLOC))
    ours_cpu = med(runs, lambda r: mean2(r, "ours"))
    ours = {
        "cpu_us_per_txn": round(ours_cpu, 1),
        "read_us": round(med(runs, lambda r: net(r, "ours", "read")), 1),
        "write_us": round(med(runs, lambda r: net(r, "ours", "write")), 1),
        "alloc_bytes_per_txn": alloc_b("ours"),
        "allocs_per_txn": heads("ours"),
        "heap_lock_proof": all(r["ours"]["heap_lock_ok"] for r in runs),
        "gap_wait_us_per_txn": r0["ours"]["gap_wait_us"],
        "gc_alloc_calls_per_txn": ours_gcalls,
        "instructions_per_txn": ours_instr,
    }
    if ours["heap_lock_proof"]:
        assert ours["allocs_per_txn"] == 0 and ours["alloc_bytes_per_txn"] == 0, ours
    out = {"bench": "modbus_txn"}
    out["ours"] = ours
    peer = None
    if peer_lib:
        gcalls, instr = per_txn_callgrind(ph, "peer")
        ab = alloc_b("peer")
        peer = {
            "name": "micropython-modbus",
            "version": peer_version,
            "cpu_us_per_txn": round(med(runs, lambda r: mean2(r, "peer")), 1),
            "cpu_us_per_txn_excl_waits": round(med(runs, lambda r: mean2(r, "peer", "_excl_waits")), 1),
            "wait_us_per_txn": r0["peer"]["wait_us"],
            "sleep_calls_per_txn": r0["peer"]["wait_calls"],
            "read_us": round(med(runs, lambda r: net(r, "peer", "read")), 1),
            "write_us": round(med(runs, lambda r: net(r, "peer", "write")), 1),
            "alloc_bytes_per_txn": ab,
            "allocs_per_txn": heads("peer"),
            "gc_blocks_per_txn": ab / blk,
            "gc_alloc_calls_per_txn": gcalls,
            "instructions_per_txn": instr,
        }
        out["cpu_ratio_vs_peer"] = round(peer["cpu_us_per_txn"] / ours_cpu, 1)
        out["cpu_ratio_vs_peer_excl_waits"] = round(peer["cpu_us_per_txn_excl_waits"] / ours_cpu, 2)
    out["peer"] = peer
    if peer_error:
        out["peer_error"] = peer_error
    out.update({
        "alloc_unit": "heap objects allocated per txn (new object heads in the GC heap map, "
                      "gc disabled); gc_blocks are %d bytes on this port" % blk,
        "gc_block_bytes": blk,
        "shim_us_per_txn": round(med(runs, lambda r: (shim(r, "read") + shim(r, "write")) / 2), 1),
        "bus_time_us_115200": bus_time_us(r0["bus_bytes_read"]),
        "bus_time_us_115200_write": bus_time_us(r0["bus_bytes_write"]),
        "frames": "fc3 unit1 @40077 x16 (%d B on the wire); fc16 unit2 @40100 x5 (%d B)"
                  % (r0["bus_bytes_read"], r0["bus_bytes_write"]),
        "n": {"ours": 2 * N_OURS, "peer": 2 * N_PEER, "alloc": 2 * N_ALLOC, "runs": RUNS},
    })
    print(json.dumps(out))


if __name__ == "__main__":
    main()
