# Modbus RTU master for a fixed set of transactions.
#
# Each Txn owns request and response buffers sized once, so run() allocates
# nothing: the cycle patches register values into the request, runs it, and
# reads values out of the response. Errors are small-int result codes, not
# exceptions. The bus object comes from the board HAL (write / recv_into /
# drain); only the HAL knows about UARTs, direction pins and ptys.
import time
from struct import pack_into
from cabinet.crc16 import crc

OK = 0
TIMEOUT = 1      # nothing came back before the response timeout
CRC_ERR = 2      # CRC mismatch
WRONG_REPLY = 3  # wrong unit id or function code in the reply
EXCEPTION = 4    # exception response; code in Txn.exc_code
SHORT = 5        # fewer bytes than the function code implies

RESULTS = ('ok', 'timeout', 'crc', 'wrong_reply', 'exception', 'short')

# 3.5 character times of silence between frames; fixed above 19,200 baud.
def frame_gap_us(baud):
    return 1750 if baud > 19200 else (35 * 11 * 1000000) // (10 * baud) + 1


class Txn:
    """One request (fc 3, 4, 6 or 16) with its preallocated response buffer."""

    def __init__(self, unit, fc, addr, count=1):
        if fc in (3, 4):
            self.req = bytearray(8)
            pack_into('>BBHH', self.req, 0, unit, fc, addr, count)
            self.resp = bytearray(5 + 2 * count)
        elif fc == 6:
            self.req = bytearray(8)
            pack_into('>BBH', self.req, 0, unit, fc, addr)
            self.resp = bytearray(8)
            count = 1
        elif fc == 16:
            self.req = bytearray(9 + 2 * count)
            pack_into('>BBHHB', self.req, 0, unit, fc, addr, count, 2 * count)
            self.resp = bytearray(8)
        else:
            raise ValueError('function code %d not supported' % fc)
        self.unit = unit
        self.fc = fc
        self.addr = addr
        self.count = count
        self.exc_code = 0
        self._data = 7 if fc == 16 else 4   # offset of the first register in req
        self._seal()

    def _seal(self):
        n = len(self.req) - 2
        c = crc(self.req, 0, n)
        self.req[n] = c & 0xFF
        self.req[n + 1] = c >> 8

    def set_reg(self, i, value):
        # Register i of a write request (0..count-1); value is 0..65535.
        o = self._data + 2 * i
        self.req[o] = (value >> 8) & 0xFF
        self.req[o + 1] = value & 0xFF

    def reg_out(self, i):
        # Register i of a write request, as it will be sent.
        o = self._data + 2 * i
        return (self.req[o] << 8) | self.req[o + 1]

    def reg(self, i):
        # Register i of a read response, unsigned.
        o = 3 + 2 * i
        return (self.resp[o] << 8) | self.resp[o + 1]


class Master:
    def __init__(self, bus, timeout_ms, baud=115200):
        self.bus = bus
        self.timeout_ms = timeout_ms
        self.gap_us = frame_gap_us(baud)
        self._last_us = time.ticks_us()
        self.errors = 0

    def run(self, txn):
        if txn.fc == 6 or txn.fc == 16:
            txn._seal()
        # Keep 3.5 character times of silence since the last frame on the bus.
        wait = self.gap_us - time.ticks_diff(time.ticks_us(), self._last_us)
        if wait > 0:
            time.sleep_us(wait)
        self.bus.drain()                  # drop late replies and line noise
        self.bus.write(txn.req)
        resp = txn.resp
        n = self.bus.recv_into(resp, len(resp), self.timeout_ms)
        self._last_us = time.ticks_us()
        r = self._check(txn, resp, n)
        if r:
            self.errors += 1
        return r

    def _check(self, txn, resp, n):
        if n == 0:
            return TIMEOUT
        if n >= 5 and resp[1] == (txn.fc | 0x80):
            if crc(resp, 0, 3) != resp[3] | (resp[4] << 8):
                return CRC_ERR
            if resp[0] != txn.unit:
                return WRONG_REPLY
            txn.exc_code = resp[2]
            return EXCEPTION
        if n < len(resp):
            return SHORT
        if crc(resp, 0, n - 2) != resp[n - 2] | (resp[n - 1] << 8):
            return CRC_ERR
        if resp[0] != txn.unit or resp[1] != txn.fc:
            return WRONG_REPLY
        if txn.fc <= 4:
            if resp[2] != 2 * txn.count:
                return SHORT
            return OK
        # fc 6/16 echo the address and the value (6) or count (16): RTU has no
        # transaction id, so a late reply to another write must not confirm this one.
        req = txn.req
        for i in range(2, 6):
            if resp[i] != req[i]:
                return WRONG_REPLY
        return OK
