"""Benchmark shim for MicroPython's `machine` module: UART and Pin for hardware
that doesn't exist here (the unix port has no UART or GPIO).

bench/bench_modbus_txn.py puts this folder first on MICROPYPATH, so code written
for a microcontroller's machine.UART / machine.Pin runs on the MicroPython unix
port: the PyPI micropython-modbus RTU master (umodbus.serial.Serial) and this
project's cabinet.mcu.Rs485Bus both talk through the same fake UART to the same
in-memory Modbus slave. It is not firmware and nothing under firmware/ or
boards/ imports it.

UART: write(buf) hands the request frame to the class attribute `slave`
(an object with reply_len(req, n) and answer(req, n, out)); the reply is
then pending at once, as if the slave answered instantly, for any(), read()
and readinto(). Steady state allocates only where the real C driver would:
read() returns a new bytes object like machine.UART.read(); write, any,
readinto and flush allocate nothing (reply buffers are made once per size).
Pin: on/off/value, remembering the level.
"""


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, value=None, **kw):
        self.id = id
        self.mode = mode
        self._v = value or 0

    def on(self):
        self._v = 1

    def off(self):
        self._v = 0

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0

    def __call__(self, v=None):
        return self.value(v)


class UART:
    slave = None          # set by the benchmark before the first write

    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, **kw):
        self.id = id
        self.baudrate = baudrate
        self._bufs = {}   # reply length -> bytearray, made on first use
        self._rx = None
        self._n = 0
        self._pos = 0
        self.tx_bytes = 0
        self.rx_bytes = 0
        self.last_tx = None   # the last frame written (a reference, not a copy)

    def init(self, *a, **kw):
        pass

    def deinit(self):
        pass

    def write(self, buf):
        n = len(buf)
        self.tx_bytes += n
        self.last_tx = buf
        s = self.slave
        m = s.reply_len(buf, n)
        if m:
            out = self._bufs.get(m)
            if out is None:
                out = bytearray(m)
                self._bufs[m] = out
            s.answer(buf, n, out)
            self._rx = out
            self._n = m
            self._pos = 0
            self.rx_bytes += m
        return n

    def flush(self):      # machine.UART.flush: wait until the TX FIFO is empty
        pass

    def txdone(self):
        return True

    def any(self):
        return self._n - self._pos

    def read(self, nbytes=-1):
        k = self._n - self._pos
        if not k:
            return None   # what a UART with timeout=0 returns when nothing is there
        if 0 <= nbytes < k:
            k = nbytes
        if self._pos == 0 and k == self._n:
            out = bytes(self._rx)
        else:
            out = bytes(self._rx[self._pos:self._pos + k])
        self._pos += k
        return out

    def readinto(self, buf, nbytes=-1):
        k = self._n - self._pos
        if not k:
            return None
        if nbytes < 0 or nbytes > len(buf):
            nbytes = len(buf)
        if k > nbytes:
            k = nbytes
        if self._pos == 0 and k == self._n:
            buf[0:k] = self._rx          # whole reply; no allocation
        else:
            rx = self._rx
            p = self._pos
            for i in range(k):
                buf[i] = rx[p + i]
        self._pos += k
        return k
