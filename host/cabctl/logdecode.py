"""A faster StreamDecoder for the logger: same results, same counters.

The firmware's per-cycle frame has a fixed layout (telemetry.json): every
value a 5-byte CBOR integer behind a fixed key. A payload of exactly that
length is decoded here without cbor2, with crcmod's C CRC (or, without its
extension, a two-bytes-per-step table); anything
else (a cut frame, garbage, an older or newer version, a frame of another
layout) goes to StreamDecoder's own path, which decides and reports exactly
as before. The result for a well-formed frame is the dict decode_frame
returns (names in key order).
"""
import struct
import sys
from array import array
from operator import itemgetter

from .telemetry import StreamDecoder

try:
    import crcmod.crcmod
    import crcmod.predefined
    _C_CRC = crcmod.predefined.mkPredefinedCrcFun("modbus") if crcmod.crcmod._usingExtension else None
except ImportError:                                 # pragma: no cover - a dependency
    _C_CRC = None

_T8 = None
_T16 = None
_BIG = sys.byteorder == "big"
_NEG_AS_POS = bytes.maketrans(b"\x3a", b"\x1a")   # CBOR major type 1 -> 0, for the layout check


def _tables():
    """CRC-16/MODBUS tables: per byte, and per little-endian 16-bit word."""
    global _T8, _T16
    if _T16 is None:
        t8 = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
            t8.append(c)
        # Two bytes at once: with x = crc ^ word, the new crc depends on x only.
        t16 = [0] * 65536
        for x in range(65536):
            a = t8[x & 0xFF]
            t16[x] = (a >> 8) ^ t8[((x >> 8) ^ a) & 0xFF]
        _T8, _T16 = t8, t16
    return _T8, _T16


def crc16_fast(data) -> int:
    """CRC-16/MODBUS, as telemetry.crc16: crcmod's C code, or two bytes per step."""
    if _C_CRC is not None:
        return _C_CRC(bytes(data))
    t8, t16 = _tables()
    c = 0xFFFF
    n = len(data)
    i = 0
    if n & 1:
        c = (c >> 8) ^ t8[(c ^ data[0]) & 0xFF]
        i = 1
    words = array("H", bytes(data[i:]))
    if _BIG:
        words.byteswap()
    for w in words:
        c = t16[c ^ w]
    return c


class FastDecoder(StreamDecoder):
    """StreamDecoder with a fast path for frames of this host's exact layout."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if _C_CRC is None:
            _tables()
        s = self.schema
        fields = s["fields"]
        n = len(fields)
        # Two views of the CBOR bytes: the skeleton (map header, keys, the
        # major-type byte of each value) and the 32-bit values.
        skel_fmt, val_fmt = ">" + ("B" if n < 24 else "BB"), ">" + ("x" if n < 24 else "xx")
        skel = [0xA0 | n] if n < 24 else [0xB8, n]
        majors = []
        for f in fields:
            k = f["key"]
            skel_fmt += ("B" if k < 24 else "BB") + "B4x"
            val_fmt += ("x" if k < 24 else "xx") + "xI"
            skel += [k] if k < 24 else [0x18, k]
            majors.append(len(skel))
            skel.append(0x1A)
        self._majors = itemgetter(*majors)
        self._skel_struct = struct.Struct(skel_fmt)
        self._val_struct = struct.Struct(val_fmt)
        self._skel = tuple(skel)
        self._n_payload = s["payload_len"]           # COBS bytes, without the 0x00
        self._fast = (n >= 2 and fields[0]["key"] == 0 and self._n_payload < 254
                      and self._val_struct.size + 3 == self._n_payload)
        self._names = [f["name"] for f in fields]
        self._version = s["version"]

    def _decode(self, payload):
        if self._fast and len(payload) == self._n_payload:
            rec = self._decode_fixed(payload)
            if rec is not None:
                return rec
        return super()._decode(payload)               # decides and reports as before

    @staticmethod
    def _crc_py(b):
        c = 0xFFFF
        t16 = _T16
        if len(b) & 1:
            words = array("H", b[1:])
        else:
            c = (c >> 8) ^ _T8[(c ^ b[1]) & 0xFF]
            words = array("H", b[2:])
        if _BIG:
            words.byteswap()
        for w in words:
            c = t16[c ^ w]
        return c

    def _decode_fixed(self, payload):
        """The frame as a dict, or None when anything is off (the slow path then decides)."""
        n = self._n_payload
        b = bytearray(payload)
        i = b[0]
        while i < n:                                  # COBS, one block: codes become zeros
            c = b[i]
            b[i] = 0
            i += c
        if i != n:
            return None
        # CRC-16/MODBUS over CBOR + its little-endian CRC is 0 for an intact
        # frame; CBOR + CRC are the n - 1 bytes from b[1].
        if _C_CRC is not None:
            if _C_CRC(memoryview(b)[1:]):
                return None
        elif self._crc_py(b):
            return None
        values = self._val_struct.unpack_from(b, 1)
        if values[0] != self._version:
            return None
        skel = self._skel_struct.unpack_from(b, 1)
        if skel != self._skel:                        # negatives (0x3a) or not our layout
            if self._skel_struct.unpack_from(b.translate(_NEG_AS_POS), 1) != self._skel:
                return None
            majors = self._majors(skel)
            values = list(values)
            j = -1
            for _ in range(majors.count(0x3A)):       # value = -1 - n = ~n
                j = majors.index(0x3A, j + 1)
                values[j] = ~values[j]
        return dict(zip(self._names, values))
