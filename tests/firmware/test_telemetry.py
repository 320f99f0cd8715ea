# Telemetry frame: fixed CBOR layout patched in place, CRC, COBS.
# Runs on CPython and on MicroPython.
import json
import random
from cabinet import telemetry as tm
from cabinet.crc16 import crc


def _schema_path():
    # MicroPython runs with cwd = firmware/, pytest from the repo root.
    here = __file__.rsplit('/', 1)[0] if '/' in __file__ else '.'
    for p in ('telemetry.json', 'firmware/telemetry.json', here + '/../../firmware/telemetry.json'):
        try:
            open(p).close()
            return p
        except OSError:
            pass
    raise OSError('firmware/telemetry.json not found')


SCHEMA = tm.load_schema(_schema_path())
FIELDS = SCHEMA['fields']


def cbor_map(b, n):
    """The test's own reader for the fixed layout: {key: int}, and the bytes used."""
    if len(FIELDS) < 24:
        assert b[0] == 0xA0 | len(FIELDS), b[0]
        o = 1
    else:
        assert b[0] == 0xB8 and b[1] == len(FIELDS)
        o = 2
    out = {}
    while o < n:
        if b[o] == 0x18:                       # uint key 24..255
            k = b[o + 1]
            o += 2
        else:
            k = b[o]
            assert k < 0x18, 'key head %02x at %d' % (k, o)
            o += 1
        head = b[o]
        assert head in (0x1A, 0x3A), 'value head %02x at %d' % (head, o)
        u = (b[o + 1] << 24) | (b[o + 2] << 16) | (b[o + 3] << 8) | b[o + 4]
        out[k] = u if head == 0x1A else -1 - u
        o += 5
    return out, o


def cobs_decode(w):
    out = bytearray()
    i = 0
    while i < len(w):
        code = w[i]
        assert code, 'zero inside COBS data at %d' % i
        out += w[i + 1:i + code]
        i += code
        if code < 0xFF and i < len(w):
            out.append(0)
    return bytes(out)


def size_of(fields):
    return (1 if len(fields) < 24 else 2) + sum((1 if fd['key'] < 24 else 2) + 5 for fd in fields)


def test_layout():
    f = tm.Frame(SCHEMA)
    n = size_of(FIELDS)
    assert (len(f.buf), len(f.wire)) == (n + 2, n + 4)
    values, end = cbor_map(f.buf, n)
    assert end == n
    assert list(sorted(values)) == [fd['key'] for fd in FIELDS]
    assert values[0] == SCHEMA['version']
    assert [values[k] for k in sorted(values) if k] == [0] * (len(FIELDS) - 1)
    assert f.names == [fd['name'] for fd in FIELDS]
    assert f.index('seq') == [fd['name'] for fd in FIELDS].index('seq')


def test_current_schema_size():
    # 18 fields, keys 0..17: map header + 18 * (key + 0x1a + u32) = 109 bytes.
    if len(FIELDS) == 18:
        assert size_of(FIELDS) == 109 and tm.Frame(SCHEMA).buf[0] == 0xB2


# value -> the 5 bytes written
PUTS = [
    (0, '1a 00 00 00 00'),
    (1, '1a 00 00 00 01'),
    (123456789, '1a 07 5b cd 15'),
    (2 ** 30 - 1, '1a 3f ff ff ff'),
    (-1, '3a 00 00 00 00'),
    (-12345, '3a 00 00 30 38'),
    (-25000000, '3a 01 7d 78 3f'),
    (-(2 ** 30), '3a 3f ff ff ff'),
]


def test_put():
    f = tm.Frame(SCHEMA)
    n = size_of(FIELDS)
    for name in ('seq', 'grid_w', FIELDS[-1]['name']):
        i = f.index(name)
        key = FIELDS[i]['key']
        for v, want in PUTS:
            f.put(i, v)
            o = f._off[i]
            assert bytes(f.buf[o:o + 5]) == bytes(int(x, 16) for x in want.split()), (name, v)
            assert cbor_map(f.buf, n)[0][key] == v
            assert len(f.buf) == n + 2


def test_seal():
    f = tm.Frame(SCHEMA)
    n = size_of(FIELDS)
    random.seed(7)
    for r in range(200):
        for i in range(1, len(FIELDS)):
            if r == 0:
                v = 0                            # mostly zero bytes
            else:
                v = random.randint(-(2 ** 30), 2 ** 30 - 1) >> random.randint(0, 30)
            f.put(i, v)
        w = f.seal()
        assert len(w) == n + 4 and w[-1] == 0
        assert 0 not in bytes(w[:-1]), 'zero inside the frame'
        raw = cobs_decode(bytes(w[:-1]))
        assert raw == bytes(f.buf) and len(raw) == n + 2
        assert raw[-2] | (raw[-1] << 8) == crc(raw, 0, n)    # CRC low byte first
        assert cbor_map(raw, n)[0][FIELDS[-1]['key']] == v


# Wikipedia's COBS examples (all below 254 bytes).
COBS = [
    ('', '01 00'),
    ('00', '01 01 00'),
    ('00 00', '01 01 01 00'),
    ('00 11 00', '01 02 11 01 00'),
    ('11 22 00 33', '03 11 22 02 33 00'),
    ('11 22 33 44', '05 11 22 33 44 00'),
    ('11 00 00 00', '02 11 01 01 01 00'),
]


def test_cobs_vectors():
    dst = bytearray(260)
    for src, want in COBS:
        s = bytes(int(x, 16) for x in src.split())
        w = bytes(int(x, 16) for x in want.split())
        n = tm.cobs_encode(s, len(s), dst)
        assert (n, bytes(dst[:n])) == (len(w), w), src
    s = bytes(range(1, 254))                     # 253 non-zero bytes: one block
    n = tm.cobs_encode(s, len(s), dst)
    assert bytes(dst[:n]) == b'\xfe' + s + b'\x00'


def test_schema_keys_must_ascend():
    path = '/tmp/cabinet_test_telemetry_schema.json'
    bad = {'version': 1, 'fields': [{'key': 1, 'name': 'a'}, {'key': 0, 'name': 'b'}]}
    with open(path, 'w') as fh:
        fh.write(json.dumps(bad))
    try:
        tm.load_schema(path)
        assert False, 'descending keys accepted'
    except ValueError as e:
        assert 'ascending' in str(e)


def test_mpy_put_and_seal_do_not_allocate():
    from alloc import no_alloc
    f = tm.Frame(SCHEMA)
    i, j = f.index('grid_w'), f.index('seq')
    no_alloc(lambda: f.put(i, -(2 ** 30)), 100, 'put (negative)')
    no_alloc(lambda: f.put(j, 2 ** 30 - 1), 100, 'put (positive)')
    w = no_alloc(lambda: f.seal(), 100, 'seal')
    assert w[-1] == 0 and 0 not in bytes(w[:-1])
