# CRC-16/MODBUS compiled by the viper emitter (machine-word integers, direct
# buffer pointers): the same table and result as cabinet.crc16.crc, several
# times faster on a board. MicroPython only; crc16.py falls back to its plain
# loop where this module cannot be imported (CPython).
import micropython
from cabinet.crc16 import TABLE


@micropython.viper
def crc(buf, start: int, end: int) -> int:
    t = ptr16(TABLE)
    b = ptr8(buf)
    c = 0xFFFF
    i = start
    while i < end:
        c = (c >> 8) ^ t[(c ^ b[i]) & 0xFF]
        i += 1
    return c
