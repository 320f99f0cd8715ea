# Runs under MicroPython (unix port), started by bench/bench_modbus_txn.py with
# MICROPYPATH = bench/peer_shim (fake `machine`) : firmware : the peer's install.
#
# Cost of one Modbus RTU transaction, this project's master (cabinet.modbus
# Master + Txn over cabinet.mcu.Rs485Bus, the bus code the MCU boards run)
# against the PyPI micropython-modbus master (umodbus.serial.Serial). Both
# drive the same fake machine.UART / machine.Pin, whose writes go to the same
# in-memory slave (Slave below): it checks the request's CRC, serves or stores
# the registers and answers at once with a CRC-16/MODBUS reply.
#
# The frames: read 16 holding registers (fc 3) from unit 1 at 40077; write 5
# registers (fc 16) to unit 2 at 40100. A "pair" is one of each.
#
#   micropython mpy_modbus_txn.py run N_OURS N_PEER N_ALLOC peer|nopeer
#       heap maps (see alloc_bytes()), then one JSON line with every figure
#       of this run (see measure())
#   micropython mpy_modbus_txn.py calls N peer|nopeer
#       setup and checks, then N reads, N writes of each master and of the
#       slave alone, one phase each: run under callgrind to count gc_alloc
#       calls and instructions per phase (see calls())
import gc
import json
import sys
import time
import micropython
from array import array

import machine
from cabinet import modbus
from cabinet.crc16 import crc
from cabinet.mcu import Rs485Bus

BAUD = 115200
BASE = 40000                  # the slave's register space: 40000..40255
READ = (1, 3, 40077, 16)      # unit, fc, address, count
WRITE = (2, 16, 40100, 5)
WVALS = [0x0001, 0x1234, 0x7FFF, 0x8000, 0xFFFF]   # signed/unsigned edges


class Slave:
    """In-memory Modbus RTU slave for units 1 and 2: holding registers, fc 3 and 16."""

    def __init__(self):
        self.regs = array('H', bytes(512))
        self.served = 0
        self.bad = 0

    def fill(self, seed):
        r = self.regs
        for i in range(len(r)):
            r[i] = (seed * 40503 + i * 2654435761) & 0xFFFF

    def reply_len(self, req, n):
        if n < 8:
            return 0
        fc = req[1]
        if fc == 3:
            return 5 + 2 * ((req[4] << 8) | req[5])
        return 8

    def answer(self, req, n, out):
        """Write the reply to req[0:n] into out (len(out) == reply_len)."""
        fc = req[1]
        addr = (req[2] << 8) | req[3]
        cnt = (req[4] << 8) | req[5]
        o = addr - BASE
        ok = (crc(req, 0, n - 2) == req[n - 2] | (req[n - 1] << 8)
              and req[0] in (1, 2) and 0 <= o and o + cnt <= len(self.regs))
        if ok and fc == 3 and n == 8:
            out[0] = req[0]
            out[1] = 3
            out[2] = 2 * cnt
            r = self.regs
            j = 3
            for i in range(o, o + cnt):
                v = r[i]
                out[j] = v >> 8
                out[j + 1] = v & 0xFF
                j += 2
        elif ok and fc == 16 and n == 9 + 2 * cnt and req[6] == 2 * cnt:
            r = self.regs
            j = 7
            for i in range(o, o + cnt):
                r[i] = (req[j] << 8) | req[j + 1]
                j += 2
            for i in range(6):
                out[i] = req[i]
        else:                     # garbage in: a reply no master may accept
            self.bad += 1
            for i in range(len(out)):
                out[i] = 0
            return
        m = len(out) - 2
        c = crc(out, 0, m)
        out[m] = c & 0xFF
        out[m + 1] = c >> 8
        self.served += 1


# time.sleep_us stand-in for both masters' modules: counts the requested
# microseconds; with Sleep.busy it waits them out in a busy loop, which is
# what sleep_us does on the MCU ports for delays this short (CPU kept busy).
_ticks_us = time.ticks_us
_ticks_diff = time.ticks_diff


class Sleep:
    us = 0
    calls = 0
    busy = False


def _sleep_us(us):
    if us > 0:
        Sleep.us += us
        Sleep.calls += 1
        if Sleep.busy:
            t0 = _ticks_us()
            while _ticks_diff(_ticks_us(), t0) < us:
                pass


class CountingTime:
    ticks_us = time.ticks_us
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
    sleep_us = _sleep_us

    @staticmethod
    def sleep_ms(ms):
        _sleep_us(ms * 1000)


def reset_sleep(busy):
    Sleep.us = 0
    Sleep.calls = 0
    Sleep.busy = busy


# ---- this project's master ------------------------------------------------

class Ours:
    def __init__(self, slave):
        modbus.time = CountingTime
        self.uart = machine.UART(1, baudrate=BAUD, bits=8, parity=None, stop=1,
                                 tx=17, rx=16, timeout=0, timeout_char=0)
        self.uart.slave = slave
        self.bus = Rs485Bus(self.uart, machine.Pin(4, machine.Pin.OUT, value=0), BAUD)
        self.m = modbus.Master(self.bus, 100, BAUD)
        self.m.gap_us = 0         # bus silence, not CPU: measured apart (gap_wait)
        self.rd = modbus.Txn(*READ)
        self.wr = modbus.Txn(*WRITE)
        self.vals = array('H', bytes(2 * READ[3]))
        self.wv = array('H', WVALS)

    def reads(self, n):
        m = self.m
        t = self.rd
        vals = self.vals
        bad = 0
        for _ in range(n):
            bad |= m.run(t)
            for i in range(16):
                vals[i] = t.reg(i)
        return bad

    def writes(self, n):
        m = self.m
        t = self.wr
        wv = self.wv
        bad = 0
        for _ in range(n):
            for i in range(5):
                t.set_reg(i, wv[i])
            bad |= m.run(t)
        return bad

    def read_values(self):
        assert self.m.run(self.rd) == modbus.OK
        return [self.rd.reg(i) for i in range(READ[3])]

    def write_values(self, vals):
        for i in range(len(vals)):
            self.wr.set_reg(i, vals[i])
        assert self.m.run(self.wr) == modbus.OK


# ---- the PyPI micropython-modbus master -------------------------------------

class Peer:
    def __init__(self, slave):
        from umodbus import serial, __version__
        self.version = __version__
        serial.time = CountingTime
        # ctrl_pin: the RS-485 driver-enable pin, as on this project's boards
        self.h = serial.Serial(uart_id=1, baudrate=BAUD, data_bits=8, stop_bits=1,
                               parity=None, pins=(17, 16), ctrl_pin=4)
        self.uart = self.h._uart
        self.uart.slave = slave
        self.wv = list(WVALS)

    def reads(self, n):
        h = self.h
        bad = 0
        for _ in range(n):
            v = h.read_holding_registers(1, 40077, 16, False)
            if len(v) != 16:
                bad = 1
        return bad

    def writes(self, n):
        h = self.h
        wv = self.wv
        bad = 0
        for _ in range(n):
            if not h.write_multiple_registers(2, 40100, wv, False):
                bad = 1
        return bad

    def read_values(self):
        return list(self.h.read_holding_registers(1, READ[2], READ[3], False))

    def write_values(self, vals):
        assert self.h.write_multiple_registers(2, WRITE[2], list(vals), False)


def shim_cost(slave, uart, reqs, n):
    """The emulated slave's own work for n requests (charged to both masters)."""
    w = uart.write
    t0 = _ticks_us()
    for _ in range(n):
        w(reqs)
        uart._n = 0
    return _ticks_diff(_ticks_us(), t0)


def check(slave, master, name):
    """Real data both ways, or no figures: a broken shim must not look fast."""
    for k in range(1, 6):
        slave.fill(k)
        want = [slave.regs[READ[2] - BASE + i] for i in range(READ[3])]
        got = master.read_values()
        assert got == want, (name, 'read', got, want)
        vals = [(k * 9973 + i * 30011) & 0xFFFF for i in range(WRITE[3])]
        master.write_values(vals)
        o = WRITE[2] - BASE
        assert list(slave.regs[o:o + WRITE[3]]) == vals, (name, 'write')
    slave.fill(0)


def frames(m):
    """The request frames a master puts on the wire for the two transactions."""
    m.reads(1)
    r = bytes(m.uart.last_tx)
    m.writes(1)
    return r, bytes(m.uart.last_tx)


def verify_after(slave, served0, expect, o_vals):
    assert slave.bad == 0, 'slave saw bad requests'
    assert slave.served - served0 == expect, (slave.served - served0, expect)
    o = WRITE[2] - BASE
    assert list(slave.regs[o:o + WRITE[3]]) == o_vals


def timed(fn, n):
    t0 = _ticks_us()
    bad = fn(n)
    dt = _ticks_diff(_ticks_us(), t0)
    assert not bad, 'a transaction failed'
    return dt


def alloc_bytes(tag, fn, n):
    """Bytes the GC heap grew by over n calls, gc disabled. Around the calls,
    micropython.mem_info(1) prints the heap map (one character per block:
    '.' free, '=' tail, anything else the head of an object), after a line
    '@@heap TAG N': the bench counts the new heads = objects allocated."""
    gc.collect()
    gc.disable()
    print('@@heap', tag, n)
    micropython.mem_info(1)
    a = gc.mem_alloc()
    fn(n)
    b = gc.mem_alloc()
    micropython.mem_info(1)
    gc.enable()
    return b - a


def block_bytes(y):
    gc.collect()
    a = gc.mem_alloc()
    x = y * 1.5               # one boxed float: the smallest allocation, one block
    return gc.mem_alloc() - a, x


def heap_locked_ok(fn, n):
    micropython.heap_lock()
    try:
        bad = fn(n)
    except MemoryError:
        bad = -1
    micropython.heap_unlock()
    return bad == 0


def kinds(slave, m, n, uart):
    """ns per read and per write transaction, bytes on the wire per kind."""
    s0 = slave.served
    tx0, rx0 = uart.tx_bytes, uart.rx_bytes
    m.reads(1)
    rd_bytes = uart.tx_bytes - tx0 + uart.rx_bytes - rx0
    tx0, rx0 = uart.tx_bytes, uart.rx_bytes
    m.writes(1)
    wr_bytes = uart.tx_bytes - tx0 + uart.rx_bytes - rx0
    r = timed(m.reads, n) * 1000 // n
    w = timed(m.writes, n) * 1000 // n
    verify_after(slave, s0, 2 * n + 2, WVALS)
    return r, w, rd_bytes, wr_bytes


def measure(n_ours, n_peer, n_alloc, with_peer):
    slave = Slave()
    slave.fill(0)
    ours = Ours(slave)
    check(slave, ours, 'ours')
    res = {'gc_block_bytes': block_bytes(2.0)[0]}

    reset_sleep(False)
    o = {}
    o['read_ns'], o['write_ns'], rd_b, wr_b = kinds(slave, ours, n_ours, ours.uart)
    assert Sleep.calls == 0
    o['heap_lock_ok'] = heap_locked_ok(ours.reads, n_alloc) and heap_locked_ok(ours.writes, n_alloc)
    o['alloc_bytes_read'] = alloc_bytes('ours_read', ours.reads, n_alloc)
    o['alloc_bytes_write'] = alloc_bytes('ours_write', ours.writes, n_alloc)
    # The 3.5-character silence the master keeps before each request when
    # transactions go back to back (counted, not slept).
    ours.m.gap_us = modbus.frame_gap_us(BAUD)
    reset_sleep(False)
    ours.reads(n_alloc)
    ours.writes(n_alloc)
    o['gap_wait_us'] = Sleep.us // (2 * n_alloc)
    ours.m.gap_us = 0
    res['ours'] = o
    res['bus_bytes_read'] = rd_b
    res['bus_bytes_write'] = wr_b

    # what the emulated slave costs per request (same for both masters)
    n = n_ours
    s = {'read_ns': shim_cost(slave, ours.uart, ours.rd.req, n) * 1000 // n}
    ours.wr._seal()
    s['write_ns'] = shim_cost(slave, ours.uart, ours.wr.req, n) * 1000 // n
    res['shim'] = s

    if with_peer:
        peer = Peer(slave)
        check(slave, peer, 'peer')
        p = {'version': peer.version}
        reset_sleep(False)       # sleeps counted, not performed
        p['read_ns_excl_waits'], p['write_ns_excl_waits'], prd_b, pwr_b = kinds(slave, peer, n_peer, peer.uart)
        assert (prd_b, pwr_b) == (rd_b, wr_b), 'different reply sizes'
        assert frames(peer) == frames(ours), 'different request frames'
        p['wait_us'] = Sleep.us // (2 * n_peer + 2)
        p['wait_calls'] = Sleep.calls // (2 * n_peer + 2)
        reset_sleep(True)        # sleeps busy-wait, as on the MCU
        p['read_ns'], p['write_ns'], _, _ = kinds(slave, peer, n_peer, peer.uart)
        reset_sleep(False)
        p['alloc_bytes_read'] = alloc_bytes('peer_read', peer.reads, n_alloc)
        p['alloc_bytes_write'] = alloc_bytes('peer_write', peer.writes, n_alloc)
        res['peer'] = p
    res['n'] = {'ours': n_ours, 'peer': n_peer, 'alloc': n_alloc}
    print(json.dumps(res))


def calls(pairs, with_peer):
    """Setup and checks, then one phase per kind, each ended by
    micropython.stack_use(): callgrind, told to dump after that function,
    writes one profile per phase (the bench counts gc_alloc calls and
    instructions in each). The first phase is empty: the phase overhead."""
    mark = micropython.stack_use
    slave = Slave()
    slave.fill(0)
    ours = Ours(slave)
    check(slave, ours, 'ours')
    peer = None
    if with_peer:
        peer = Peer(slave)
        check(slave, peer, 'peer')
    reset_sleep(False)
    for m in (ours, peer):
        if m:
            m.reads(2)
            m.writes(2)
    ours.wr._seal()
    uart = ours.uart
    gc.collect()
    mark()                    # end of setup
    ours.reads(0)
    mark()                    # empty
    ours.reads(pairs)
    mark()                    # ours_read
    ours.writes(pairs)
    mark()                    # ours_write
    shim_cost(slave, uart, ours.rd.req, pairs)
    mark()                    # shim_read
    shim_cost(slave, uart, ours.wr.req, pairs)
    mark()                    # shim_write
    if peer:
        peer.reads(pairs)
        mark()                # peer_read
        peer.writes(pairs)
        mark()                # peer_write
    assert slave.bad == 0


def main(argv):
    if argv[1] == 'run':
        measure(int(argv[2]), int(argv[3]), int(argv[4]), argv[5] == 'peer')
    else:
        calls(int(argv[2]), argv[3] == 'peer')


main(sys.argv)
