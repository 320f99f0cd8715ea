"""The unix board's emulated hardware watchdog: fed by a completed cycle,
it resets (ends) the process when the loop stops feeding it."""
import os
import signal
import subprocess
import time

from cabctl.paths import BOARDS, FIRMWARE
from cabctl.sil import micropython_exe

SCRIPT = """
import hal, time, sys
b = hal.Board()
for _ in range(%d):          # fed: must survive well past the timeout
    b.feed_watchdog()
    time.sleep_ms(50)
sys.stderr.write('hanging\\n')
while True:                   # a hung loop: no more feeding
    time.sleep_ms(10)
"""


def run(feeds, timeout_s=10):
    master, slave = os.openpty()               # a bus for the HAL to open
    try:
        env = dict(os.environ, MICROPYPATH=f"{BOARDS / 'unix'}:{FIRMWARE}:.frozen",
                   CABINET_BUS=os.ttyname(slave))
        t0 = time.monotonic()
        p = subprocess.run([micropython_exe(), "-c", SCRIPT % feeds], env=env,
                           capture_output=True, text=True, timeout=timeout_s)
        return p, time.monotonic() - t0
    finally:
        os.close(master)
        os.close(slave)


def test_watchdog_resets_a_hung_loop_and_spares_a_fed_one():
    # board.json: watchdog_ms 2000. Fed for 4 s (80 x 50 ms), then hung.
    p, took = run(80)
    assert p.returncode == -signal.SIGUSR1, (p.returncode, p.stderr)
    assert "hanging" in p.stderr and "watchdog: not fed for 2000 ms" in p.stderr
    # The last feed is at 79 x 50 ms = 3.95 s; the reset comes 2 s after it.
    assert 3.95 + 2.0 <= took <= 3.95 + 2.0 + 3.0, took
