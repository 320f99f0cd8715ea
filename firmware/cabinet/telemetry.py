# Telemetry frames: a fixed-layout CBOR map patched in place, CRC, COBS.
#
# The layout comes from telemetry.json (shared with the host). Every value is
# a 5-byte CBOR integer (0x1a + u32, or 0x3a + u32 for negatives), so a
# frame's length never changes: values are written with pack_into and the
# COBS output has a fixed length too (one overhead byte below 254 bytes).
import json
from array import array
from struct import pack_into
from cabinet.crc16 import crc


def load_schema(path):
    with open(path) as f:
        s = json.load(f)
    keys = [fd['key'] for fd in s['fields']]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        raise ValueError('%s: keys must be unique and ascending' % path)
    return s


class Frame:
    def __init__(self, schema):
        fields = schema['fields']
        n = len(fields)
        self.names = [fd['name'] for fd in fields]
        hdr = 1 if n < 24 else 2
        size = hdr + sum((1 if fd['key'] < 24 else 2) + 5 for fd in fields)
        if size + 2 > 253:
            raise ValueError('telemetry frame of %d bytes needs COBS blocks' % size)
        self.buf = bytearray(size + 2)            # CBOR + CRC
        self.wire = bytearray(size + 4)           # COBS (+1) + delimiter (+1)
        self._off = array('H', bytes(2 * n))
        b = self.buf
        o = 0
        if hdr == 1:
            b[0] = 0xA0 | n
        else:
            b[0] = 0xB8
            b[1] = n
        o = hdr
        for i, fd in enumerate(fields):
            k = fd['key']
            if k < 24:
                b[o] = k
                o += 1
            else:
                b[o] = 0x18
                b[o + 1] = k
                o += 2
            self._off[i] = o
            b[o] = 0x1A
            o += 5
        self._size = size
        self.put(self.index('version'), schema['version'])

    def index(self, name):
        if name not in self.names:
            raise ValueError('telemetry schema has no field %r' % name)
        return self.names.index(name)

    def put(self, i, v):
        # |v| < 2**30 (a small int); negatives use CBOR major type 1.
        if v >= 0:
            pack_into('>BI', self.buf, self._off[i], 0x1A, v)
        else:
            pack_into('>BI', self.buf, self._off[i], 0x3A, -1 - v)

    def seal(self):
        """CRC the CBOR bytes, COBS-encode into .wire; return .wire."""
        b = self.buf
        n = self._size
        c = crc(b, 0, n)
        b[n] = c & 0xFF
        b[n + 1] = c >> 8
        cobs_encode(b, n + 2, self.wire)
        return self.wire


def cobs_encode(src, n, dst):
    # COBS for n < 254 bytes: dst gets n + 1 bytes and a trailing 0x00.
    code_at = 0
    code = 1
    o = 1
    for i in range(n):
        c = src[i]
        if c == 0:
            dst[code_at] = code
            code_at = o
            code = 1
        else:
            dst[o] = c
            code += 1
        o += 1
    dst[code_at] = code
    dst[o] = 0
    return o + 1
