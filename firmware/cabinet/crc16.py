# CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), table driven.
# Used for Modbus RTU frames and for telemetry frames. Table built once at
# import; crc() allocates nothing.
from array import array


def _table():
    t = array('H', bytes(512))
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        t[i] = c
    return t


TABLE = _table()


def crc_plain(buf, start, end):
    # CRC over buf[start:end] without slicing (slices allocate).
    c = 0xFFFF
    t = TABLE
    for i in range(start, end):
        c = (c >> 8) ^ t[(c ^ buf[i]) & 0xFF]
    return c


crc = crc_plain
try:
    from cabinet import crc_viper      # MicroPython: the viper twin (same results)
    crc = crc_viper.crc
except ImportError:
    pass
