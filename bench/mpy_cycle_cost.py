# Runs under MicroPython: cost of one full Controller.cycle() with the bus
# answered instantly from memory, so the figure is the firmware's own CPU time
# (decode, dispatch, encode, CRCs, COBS), not the wait for the slaves.
import sys
import time
from cabinet import config
from cabinet.controller import Controller
from cabinet.crc16 import crc


class InstantBus:
    """Answers every request at once with a valid reply of the expected size."""

    def __init__(self):
        self.req = None

    def write(self, buf):
        self.req = buf

    def drain(self):
        pass

    def recv_into(self, buf, want, timeout_ms):
        q = self.req
        buf[0] = q[0]
        buf[1] = q[1]
        if q[1] in (3, 4):
            buf[2] = want - 5
            for i in range(3, want - 2):
                buf[i] = 0
        else:                       # fc 16 echo: unit, fc, addr, count
            for i in range(2, 6):
                buf[i] = q[i]
        c = crc(buf, 0, want - 2)
        buf[want - 2] = c & 0xFF
        buf[want - 1] = c >> 8
        return want


class Board:
    baud = 115200

    def __init__(self):
        self.bus = InstantBus()
        self.cfg = {'name': 'bench'}

    def send_telemetry(self, frame):
        pass

    def feed_watchdog(self):
        pass

    def set_output(self, name, on):
        pass

    def console_readinto(self, buf):
        return 0


def main(n):
    c = Controller(Board(), config.validate({}))
    # The master keeps 3.5 character times of bus silence between frames; that
    # is bus time, not CPU time, so leave it out of this figure.
    c.meter.master.gap_us = 0
    c.cycle(50)
    t0 = time.ticks_us()
    for _ in range(n):
        c.cycle(50)
    dt = time.ticks_diff(time.ticks_us(), t0)
    txns = c.meter.reads + c.pcs.reads + c.pcs.writes
    wire = sum(len(t.req) + len(t.resp) for t in txns)
    print('{"cycles": %d, "cycle_cpu_ns": %d, "txns_per_cycle": %d, "bus_bytes_per_cycle": %d}'
          % (n, dt * 1000 // n if n else 0, len(txns), wire))


main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
