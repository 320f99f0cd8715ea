# CRC-16/MODBUS against published vectors. Runs on CPython and on MicroPython.
from cabinet.crc16 import crc, TABLE

# (bytes, crc): check value of the catalogue, Modbus spec / simplymodbus.org frames.
VECTORS = [
    (b'123456789', 0x4B37),                               # CRC-16/MODBUS check value
    (b'', 0xFFFF),                                        # init, nothing folded in
    (b'\x01\x03\x00\x00\x00\x0a', 0xCDC5),                # wire: ... C5 CD
    (b'\x11\x03\x00\x6b\x00\x03', 0x8776),                # wire: ... 76 87
    (b'\x01\x06\x00\x01\x00\x03', 0x0B98),                # wire: ... 98 0B
    (b'\x11\x10\x00\x01\x00\x02\x04\x00\x0a\x01\x02', 0xF0C6),  # wire: ... C6 F0
]


def test_vectors():
    for data, want in VECTORS:
        got = crc(data, 0, len(data))
        assert got == want, '%r: got %04x, want %04x' % (data, got, want)


def test_range_without_slicing():
    # crc(buf, start, end) covers buf[start:end] only.
    buf = bytearray(b'xx123456789yy')
    assert crc(buf, 2, 11) == 0x4B37
    assert crc(memoryview(buf), 2, 11) == 0x4B37
    assert crc(buf, 5, 5) == 0xFFFF


def test_frame_with_its_crc_checks_to_zero():
    # Appending the CRC low byte first makes the CRC of the whole frame 0.
    f = bytearray(b'\x01\x03\x00\x00\x00\x0a\xc5\xcd')
    assert crc(f, 0, len(f)) == 0


def test_table():
    assert len(TABLE) == 256
    assert TABLE[0] == 0 and TABLE[1] == 0xC0C1 and TABLE[128] == 0xA001 and TABLE[255] == 0x4040


def test_mpy_crc_does_not_allocate():
    from alloc import no_alloc
    buf = bytearray(b'123456789')
    assert no_alloc(lambda: crc(buf, 0, 9), 100, 'crc') == 0x4B37


def test_mpy_viper_twin_agrees_with_the_plain_loop():
    from cabinet import crc16
    import os
    assert crc16.crc is not crc16.crc_plain, 'the viper CRC is not in use on MicroPython'
    for n in (0, 1, 2, 7, 64, 255, 300):
        b = bytearray(os.urandom(n))
        for start in (0, n // 3):
            assert crc16.crc(b, start, n) == crc16.crc_plain(b, start, n), (n, start)
