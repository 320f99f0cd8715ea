"""Reply latency of the plant emulator alone (`cabctl plant`, the Python Modbus
server of every HIL run and soak), without the firmware: the firmware's own
three transactions per cycle (meter read, PCS read, PCS write: cabinet.devmap
and cabinet.modbus, unchanged, on CPython) every 50 ms over the pty, with a
500 ms deadline instead of the firmware's 20 ms, each reply timed from the
request's write. Every transaction must succeed (CRC, unit, length checked by
cabinet.modbus) or the script fails instead of printing a number.

One JSON line: transactions, p50/p99/p99.9/max reply ms, how many took longer
than 10 ms and than the firmware's response_timeout_ms (20), and the host's
1-minute load average at the end (the figure depends on what else runs).
BENCH_PLANT_S sets the length (default 30 s).
"""
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import tty

from cabctl.paths import FIRMWARE

sys.path.insert(0, str(FIRMWARE))
_T0 = time.monotonic_ns()
# The MicroPython time functions cabinet.modbus uses, on CPython.
time.ticks_us = lambda: (time.monotonic_ns() - _T0) // 1000
time.ticks_diff = lambda a, b: a - b
time.sleep_us = lambda us: time.sleep(us / 1e6)
from cabinet import devmap, modbus  # noqa: E402

SECONDS = float(os.environ.get("BENCH_PLANT_S", "30"))
DEADLINE_MS = 500
FIRMWARE_TIMEOUT_MS = 20


class PtyBus:
    """The unix board's bus on CPython, timing each reply."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        self.replies_ms = []

    def write(self, buf):
        self.t0 = time.monotonic()
        os.write(self.fd, bytes(buf))

    def drain(self):
        while select.select([self.fd], [], [], 0)[0]:
            os.read(self.fd, 256)

    def recv_into(self, buf, want, timeout_ms):
        got = 0
        wait = timeout_ms / 1000
        while got < want and select.select([self.fd], [], [], wait)[0]:
            d = os.read(self.fd, want - got)
            buf[got:got + len(d)] = d
            got += len(d)
            wait = 0.002                  # end of frame: the unix board's gap
        self.replies_ms.append((time.monotonic() - self.t0) * 1000)
        return got


def main():
    with tempfile.TemporaryDirectory() as tmp:
        plant = subprocess.Popen([sys.executable, "-m", "cabctl", "plant", "--seconds",
                                  str(SECONDS + 10), "--truth", f"{tmp}/truth.csv",
                                  "--profile", "texas"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            bus = PtyBus(json.loads(plant.stdout.readline())["bus"])
            m = modbus.Master(bus, DEADLINE_MS)
            maps = FIRMWARE / "maps"
            meter = devmap.Device(m, 1, devmap.load_map(str(maps / "meter_sunspec.json")))
            pcs = devmap.Device(m, 2, devmap.load_map(str(maps / "pcs_sunspec.json")))
            end = time.monotonic() + SECONDS
            nxt = time.monotonic()
            while time.monotonic() < end:
                for r in (meter.read(), pcs.read(), pcs.write()):
                    if r:
                        sys.exit(f"bench_plant_reply: transaction failed: {modbus.RESULTS[r]}")
                nxt += 0.05
                time.sleep(max(0.0, nxt - time.monotonic()))
        finally:
            plant.terminate()
            plant.wait()
    ms = sorted(bus.replies_ms)
    n = len(ms)
    print(json.dumps({
        "bench": "plant_reply", "seconds": SECONDS, "transactions": n,
        "p50_ms": round(ms[n // 2], 2), "p99_ms": round(ms[int(n * 0.99)], 2),
        "p999_ms": round(ms[int(n * 0.999)], 2), "max_ms": round(ms[-1], 2),
        "over_10ms": sum(x > 10 for x in ms),
        f"over_{FIRMWARE_TIMEOUT_MS}ms": sum(x > FIRMWARE_TIMEOUT_MS for x in ms),
        "loadavg_1min": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
