# Register maps -> Devices; read spans over readable points, roles, decoding of
# filled read responses into firmware units; the fc-16 write clusters built by
# set() and sent by write(). Runs on CPython and on MicroPython.
import os
import random
import struct
from cabinet import devmap as dm
from cabinet import modbus as mb
from cabinet.crc16 import crc

INVALID = dm.INVALID
MW = 1000000


def _maps_dir():
    # MicroPython runs with cwd = firmware/, pytest from the repo root.
    here = __file__.rsplit('/', 1)[0] if '/' in __file__ else '.'
    for d in ('maps', 'firmware/maps', here + '/../../firmware/maps'):
        try:
            os.listdir(d)
            return d
        except OSError:
            pass
    raise OSError('firmware/maps not found')


MAPS = _maps_dir()
NAMES = sorted(n[:-5] for n in os.listdir(MAPS) if n.endswith('.json'))


def device(name, master=None, unit=1):
    return dm.Device(master, unit, dm.load_map('%s/%s.json' % (MAPS, name)))


def is_rw(p):
    return p.get('access') == 'rw'


def readable(dev):
    """Indexes of the points read from the device (value()/raw() apply to these)."""
    pts = dev.map['points']
    return [i for i, n in enumerate(dev.names) if not is_rw(pts[n])]


def writable(dev):
    pts = dev.map['points']
    return [i for i, n in enumerate(dev.names) if is_rw(pts[n])]


def rw_registers(dev):
    """{address: point name} for every register a rw point occupies."""
    pts = dev.map['points']
    regs = {}
    for n in dev.names:
        p = pts[n]
        if is_rw(p):
            for k in range(dm.WIDTH[p['type']]):
                assert p['addr'] + k not in regs, (n, regs.get(p['addr'] + k))   # no overlaps
                regs[p['addr'] + k] = n
    return regs


def check_clusters(dev, what):
    """The fc-16 writes cover exactly the rw points' registers, each once, in
    address order: no unmapped register inside a write (it may be a setting
    and would get a zero), and no two clusters adjacent (they would be one);
    a cluster is 'always' iff one of its points has a role in ALWAYS."""
    regs = rw_registers(dev)
    pts = dev.map['points']
    written = []
    for c in range(len(dev.writes)):
        t = dev.writes[c]
        assert t.fc == 16 and 0 < t.count <= 123, (what, t.addr, t.count)
        for a in range(t.addr, t.addr + t.count):
            assert a in regs, (what, 'unmapped register written', t.addr, t.count, a)
            assert dev._wc[dev.index(regs[a])] == c, (what, a)
            written.append(a)
        if c:
            prev = dev.writes[c - 1]
            assert t.addr > prev.addr + prev.count, (what, prev.addr, prev.count, t.addr)
        names = [n for n in dev.names if dev._wc[dev.index(n)] == c]
        assert dev.always[c] == any([pts[n].get('role') in dm.ALWAYS for n in names]), (what, c)
    assert sorted(written) == sorted(regs), what


def encode(typ, v):
    # A point's raw value as register bytes, big-endian (floats via struct).
    if typ == 'float32':
        return struct.pack('>f', v)
    if typ in ('int32', 'uint32'):
        return struct.pack('>I', v & 0xFFFFFFFF)
    return struct.pack('>H', v & 0xFFFF)


def fill(dev, raw):
    """Write complete read responses (unit, fc, byte count, data, CRC); gaps read 0."""
    pts = dev.map['points']
    for t in dev.reads:
        r = t.resp
        for i in range(len(r)):
            r[i] = 0
        r[0] = t.unit
        r[1] = t.fc
        r[2] = 2 * t.count
    for name, v in raw.items():
        p = pts[name]
        assert not is_rw(p), 'rw point %r is not read' % name
        t = [x for x in dev.reads if x.fc == p['fc']][0]
        o = 3 + 2 * (p['addr'] - t.addr)
        b = encode(p['type'], v)
        for j in range(len(b)):
            t.resp[o + j] = b[j]
    for t in dev.reads:
        n = len(t.resp) - 2
        c = crc(t.resp, 0, n)
        t.resp[n] = c & 0xFF
        t.resp[n + 1] = c >> 8
        assert mb.Master._check(None, t, t.resp, len(t.resp)) == mb.OK


def test_every_map_builds():
    assert NAMES, MAPS
    for name in NAMES:
        dev = device(name)
        pts = dev.map['points']
        assert dev.names == list(pts)
        for t in dev.reads:
            assert t.fc in (3, 4) and 0 < t.count <= 125
        assert len([t.fc for t in dev.reads]) == len(set([t.fc for t in dev.reads])), name
        for i, n in enumerate(dev.names):
            p = pts[n]
            w = dm.WIDTH[p['type']]
            if is_rw(p):                      # in its write cluster, not read
                assert dev._txn[i] is None and 0 <= dev._wc[i] < len(dev.writes), (name, n)
                t = dev.writes[dev._wc[i]]
                assert t.fc == 16 and 0 < t.count <= 123, (name, n)
            else:                             # inside its read, in no write
                t = dev._txn[i]
                assert dev._wc[i] == -1 and t.fc == p['fc'], (name, n)
            assert 0 <= dev._reg[i] and dev._reg[i] + w <= t.count, (name, n)
            assert t.addr + dev._reg[i] == p['addr'], (name, n)
        rw = [n for n in dev.names if is_rw(pts[n])]
        assert (dev.writes == []) == (not rw), name
        assert len(dev.always) == len(dev.dirty) == len(dev.writes), name
        check_clusters(dev, name)
        # Nothing is dirty before set(): the first write() sends only the
        # always clusters (no zeros into start/stop command registers).
        assert dev.dirty == [False] * len(dev.writes), name
        rec = Recorder()
        dev.master = rec
        assert dev.write() == mb.OK, name
        assert rec.ran == [t.addr for c, t in enumerate(dev.writes) if dev.always[c]], name
        fill(dev, {})
        for i in readable(dev):
            assert dev.value(i) == 0, (name, dev.names[i])


# Read spans: (map, fc, first address, register count). Only readable points
# count: pcs_sunspec's rw block at 40100..40105 is below its read.
SPANS = [
    ('genset_generic', 3, 1010, 3),
    ('meter_sdm630', 4, 0, 72),
    ('meter_sunspec', 3, 40077, 16),
    ('pcs_sunspec', 3, 40110, 10),
    ('pcs_vendor', 3, 120, 5),
    ('pv_sunspec', 3, 40083, 2),
]


def test_read_spans_cover_only_readable_points():
    assert sorted(set([s[0] for s in SPANS])) == NAMES
    for name, fc, addr, count in SPANS:
        dev = device(name, unit=7)
        assert [(t.unit, t.fc, t.addr, t.count) for t in dev.reads] == [(7, fc, addr, count)], name
    for name in NAMES:                      # the span is exactly the readable points'
        dev = device(name)
        pts = dev.map['points']
        for t in dev.reads:
            ps = [p for p in pts.values() if p['fc'] == t.fc and not is_rw(p)]
            assert t.addr == min([p['addr'] for p in ps]), name
            assert t.addr + t.count == max([p['addr'] + dm.WIDTH[p['type']] for p in ps]), name
        for p in pts.values():              # (in these maps) no rw register is read at all
            if is_rw(p):
                for t in dev.reads:
                    assert not t.addr <= p['addr'] < t.addr + t.count, (name, p['addr'])


ROLES = ('grid_w', 'battery_w', 'soc_cpct', 'charge_max_w', 'discharge_max_w', 'alarms',
         'setpoint_w', 'enable', 'heartbeat', 'revert_s', 'start', 'stop', 'voltage_dv',
         'freq_mhz', 'running', 'genset_w', 'pv_w', 'pv_limit_w', 'connect')
# What the controller looks up with role(name) (required=True), by map kind.
REQUIRED = {'meter': ('grid_w',),
            'pcs': ('battery_w', 'soc_cpct', 'charge_max_w', 'discharge_max_w', 'alarms',
                    'setpoint_w'),
            'genset': ('start', 'genset_w'),
            'pv': ('pv_w',)}


def test_role_lookup():
    for name in NAMES:
        dev = device(name)
        pts = dev.map['points']
        roles = [pts[n]['role'] for n in dev.names if 'role' in pts[n]]
        assert len(roles) == len(set(roles)), name     # role() would find only the first
        for n in dev.names:
            r = pts[n].get('role')
            if r is not None:
                assert r in ROLES, (name, n, r)
                assert dev.role(r) == dev.index(n) == dev.role(r, False), (name, r)
                assert dev.roles[dev.role(r)] == r
        for r in REQUIRED[dev.map['kind']]:
            assert r in roles, (name, r)
        if dev.map['kind'] == 'pcs':        # reading roles are read, commands are written
            for r in ('battery_w', 'soc_cpct', 'charge_max_w', 'discharge_max_w', 'alarms'):
                assert dev._txn[dev.role(r)] is not None, (name, r)
            for r in ('setpoint_w', 'enable', 'heartbeat', 'revert_s', 'start', 'stop', 'connect'):
                if r in roles:
                    assert dev._wc[dev.role(r)] >= 0, (name, r)
            assert 'enable' in roles or ('start' in roles and 'stop' in roles), name
        for r in ROLES:
            if r in roles:
                continue
            assert dev.role(r, False) == -1, (name, r)
            msg = 'no error'
            try:
                dev.role(r)
            except ValueError as e:
                msg = str(e)
            assert 'map %s ' % name in msg and repr(r) in msg, (name, r, msg)
    dev = device('pcs_vendor')
    assert dev.role('setpoint_w') == dev.index('P_set')
    assert dev.role('revert_s') == dev.index('Watchdog')
    assert dev.role('start') == dev.index('Start') and dev.role('stop') == dev.index('Stop')
    assert dev.role('enable', False) == -1 and dev.role('heartbeat', False) == -1
    msg = 'no error'
    try:
        dev.role('heartbeat')
    except ValueError as e:
        msg = str(e)
    assert msg == "map pcs_vendor has no point with role 'heartbeat'", msg
    dev = device('pcs_sunspec')
    assert dev.role('heartbeat') == dev.index('CtrlHb') and dev.role('start', False) == -1


# map, point, scale-factor register value (or None), raw register value -> value()
TABLE = [
    # SunSpec meter: int16 W with W_SF (25 MW needs SF 3), V and Hz with exp.
    ('meter_sunspec', 'grid_w', 3, 25000, 25 * MW),
    ('meter_sunspec', 'grid_w', 3, -1234, -1234000),
    ('meter_sunspec', 'grid_w', 3, -32767, -32767000),
    ('meter_sunspec', 'grid_w', 3, -32768, INVALID),      # 0x8000: SunSpec "not implemented"
    ('meter_sunspec', 'grid_w', 0, 32767, 32767),
    ('meter_sunspec', 'grid_w', -2, 12345, 123),
    ('meter_sunspec', 'grid_w', -2, -12345, -123),          # toward zero
    ('meter_sunspec', 'grid_w', 4, 32767, 327670000),
    ('meter_sunspec', 'grid_w', 5, 5367, 536700000),
    ('meter_sunspec', 'grid_w', 5, 5369, INVALID),           # 536.9 MW >= 2**29
    ('meter_sunspec', 'grid_w', 5, 32767, INVALID),
    ('meter_sunspec', 'grid_w', 9, 1, INVALID),
    ('meter_sunspec', 'voltage_dv', -1, 2400, 2400),         # 240.0 V in 0.1 V
    ('meter_sunspec', 'voltage_dv', 0, 240, 2400),
    ('meter_sunspec', 'voltage_dv', -2, 23046, 2304),
    ('meter_sunspec', 'freq_mhz', -2, 6000, 60000),          # 60.00 Hz -> mHz
    ('meter_sunspec', 'freq_mhz', -3, 59987, 59987),
    ('meter_sunspec', 'freq_mhz', -2, 65535, 655350),        # uint16: no sign
    # SunSpec PCS: int32 W with W_SF, uint16 SoC with SoC_SF and exp 2, uint32 limits.
    ('pcs_sunspec', 'W', 0, 0, 0),
    ('pcs_sunspec', 'W', 0, -1, -1),
    ('pcs_sunspec', 'W', 0, -65536, -65536),
    ('pcs_sunspec', 'W', 0, -65535, -65535),
    ('pcs_sunspec', 'W', 0, 65536, 65536),
    ('pcs_sunspec', 'W', 0, 2 ** 29 - 1, 2 ** 29 - 1),
    ('pcs_sunspec', 'W', 0, -(2 ** 29 - 1), -(2 ** 29 - 1)),
    ('pcs_sunspec', 'W', 0, 2 ** 29, INVALID),
    ('pcs_sunspec', 'W', 0, -(2 ** 29), INVALID),
    ('pcs_sunspec', 'W', 0, 2 ** 31 - 1, INVALID),
    ('pcs_sunspec', 'W', 0, -(2 ** 31), INVALID),
    ('pcs_sunspec', 'W', 1, -12345678, -123456780),
    ('pcs_sunspec', 'W', 1, 2 ** 28, INVALID),
    ('pcs_sunspec', 'W', -1, -12345678, -1234567),
    ('pcs_sunspec', 'W', -1, 2 ** 29 - 1, 53687091),
    ('pcs_sunspec', 'W', -1, 2 ** 29, INVALID),              # raw guard, not only scale's
    ('pcs_sunspec', 'W', -1, -(2 ** 29), INVALID),
    ('pcs_sunspec', 'SoC', -1, 555, 5550),                   # 55.5 % -> 0.01 %
    ('pcs_sunspec', 'SoC', -1, 1000, 10000),
    ('pcs_sunspec', 'SoC', -1, 0, 0),
    ('pcs_sunspec', 'SoC', 0, 55, 5500),
    ('pcs_sunspec', 'SoC', -2, 5555, 5555),
    ('pcs_sunspec', 'WChaMax', None, 10 * MW, 10 * MW),
    ('pcs_sunspec', 'WChaMax', None, 2 ** 29 - 1, 2 ** 29 - 1),
    ('pcs_sunspec', 'WChaMax', None, 2 ** 29, INVALID),
    ('pcs_sunspec', 'WDisChaMax', None, 2 ** 32 - 1, INVALID),
    ('pcs_sunspec', 'Evt1', None, 0xFFFF, 0xFFFF),
    # An int16 scale factor of 0x8000 ("not implemented") makes its points INVALID.
    ('pcs_sunspec', 'W', -32768, 100, INVALID),
    ('pcs_sunspec', 'SoC', -32768, 555, INVALID),
    ('meter_sunspec', 'grid_w', -32768, 25000, INVALID),
    ('meter_sunspec', 'freq_mhz', -32768, 6000, INVALID),
    # Vendor PCS: int16/uint16 in 100 W (exp 2), SoC in 0.1 % (exp 1), no scale factors.
    ('pcs_vendor', 'P_act', None, 25000, 2500000),
    ('pcs_vendor', 'P_act', None, -250, -25000),
    ('pcs_vendor', 'P_act', None, 32767, 3276700),
    ('pcs_vendor', 'P_act', None, -32767, -3276700),
    ('pcs_vendor', 'P_act', None, -32768, INVALID),          # 0x8000 on any int16
    ('pcs_vendor', 'P_act', None, 0, 0),
    ('pcs_vendor', 'SOC', None, 555, 5550),
    ('pcs_vendor', 'SOC', None, 1000, 10000),
    ('pcs_vendor', 'P_cha_max', None, 65535, 6553500),       # uint16: no sign, no 0x8000 rule
    ('pcs_vendor', 'P_dis_max', None, 0x8000, 3276800),
    ('pcs_vendor', 'P_dis_max', None, 100, 10000),
    ('pcs_vendor', 'Fault', None, 0xFFFF, 0xFFFF),
    ('pcs_vendor', 'Fault', None, 1, 1),
]


def test_raw_guards():
    dev = device('pcs_sunspec')
    for point, raw, want in (('W', 2 ** 29, INVALID), ('W', -(2 ** 29) + 1, -(2 ** 29) + 1),
                             ('W', -(2 ** 29) - 1, INVALID), ('WChaMax', 2 ** 29, INVALID),
                             ('WChaMax', 2 ** 29 - 1, 2 ** 29 - 1), ('Evt1', 0x8000, 0x8000),
                             ('W_SF', -32768, INVALID), ('W_SF', -32767, -32767),
                             ('W_SF', 32767, 32767)):
        fill(dev, {point: raw})
        assert dev.raw(dev.index(point)) == want, (point, raw)
    dev = device('pcs_vendor')
    for point, raw, want in (('P_act', -32768, INVALID), ('P_act', -1, -1),
                             ('P_act', 32767, 32767), ('SOC', 0x8000, 0x8000)):
        fill(dev, {point: raw})
        assert dev.raw(dev.index(point)) == want, (point, raw)


def test_integer_points():
    for i, (mapname, point, sf, raw, want) in enumerate(TABLE):
        dev = device(mapname)
        p = dev.map['points'][point]
        regs = {point: raw}
        if sf is not None:
            regs[p['sf']] = sf
        fill(dev, regs)
        got = dev.value(dev.index(point))
        assert got == want, 'row %d %s=%r sf %r: got %r, want %r' % (i, point, raw, sf, got, want)


# Float32 points (SDM630): register pair, fixed on both interpreters -> value().
FLOATS = [
    ('voltage_dv', 0x4370, 0x0000, 2400),         # 240.0 V -> 0.1 V (exp 1)
    ('voltage_dv', 0x4366, 0x75C3, 2305),         # 230.46 V
    ('grid_w', 0x0000, 0x0000, 0),                # 0.0
    ('grid_w', 0x8000, 0x0000, 0),                # -0.0
    ('grid_w', 0x4BBE, 0xBC20, 25 * MW),          # 25e6
    ('grid_w', 0xC996, 0xB438, -1234567),         # -1234567.0
    ('grid_w', 0x3ECC, 0xCCCD, 0),                # 0.4
    ('grid_w', 0x3F00, 0x0000, 1),                # 0.5: half away from zero
    ('grid_w', 0xBF00, 0x0000, -1),               # -0.5
    ('grid_w', 0x4020, 0x0000, 3),                # 2.5
    ('grid_w', 0xC020, 0x0000, -3),               # -2.5
    ('grid_w', 0x4DFF, 0xFFFF, 536870880),        # 2**29 - 32: largest below the limit
    ('grid_w', 0x4E00, 0x0000, INVALID),          # 2**29
    ('grid_w', 0x4E0F, 0x0D18, INVALID),          # 6e8
    ('grid_w', 0xCE0F, 0x0D18, INVALID),          # -6e8
    ('grid_w', 0x7F61, 0xB1E6, INVALID),          # 3e38
    ('grid_w', 0x7F80, 0x0000, INVALID),          # inf
    ('grid_w', 0xFF80, 0x0000, INVALID),          # -inf
    ('grid_w', 0x7FC0, 0x0000, INVALID),          # NaN
    ('grid_w', 0x0000, 0x0001, 0),                # 1e-45 (subnormal)
    ('freq_mhz', 0x4270, 0x0000, 60000),          # 60.0 Hz -> mHz (exp 3)
    ('freq_mhz', 0x426F, 0xF2B0, 59987),          # 59.987 Hz
    ('freq_mhz', 0xC26F, 0xF2B0, -59987),         # -59.987
    ('freq_mhz', 0x4902, 0xDC00, 536000000),      # 536000.0
    ('freq_mhz', 0x4903, 0x1270, INVALID),        # 536871.0: * 1000 >= 2**29
]


def test_float32_points():
    dev = device('meter_sdm630')
    for point, hi, lo, want in FLOATS:
        x = struct.unpack('>f', struct.pack('>HH', hi, lo))[0]
        if x == x:                                # struct agrees with the table
            assert struct.pack('>f', x) == struct.pack('>HH', hi, lo), (point, x)
        fill(dev, {point: x})
        got = dev.value(dev.index(point))
        assert got == want, '%s = %r (%04x %04x): got %r, want %r' % (point, x, hi, lo, got, want)


def test_float32_tiny_values_round_to_nearest():
    # BUG (cabinet/devmap.py float32_scaled, `elif k >= 24 + 10: v = 0`): with
    # e = 3 (x 1000) a float32 in [2**-11, 2**-10) still scales to 0.49..0.98,
    # but the shift cut-off returns 0 before rounding: 0.0009 Hz -> 0 mHz.
    for x, want in ((0.0009, 1), (0.0006, 1), (-0.0009, -1), (0.00049, 0), (0.001, 1)):
        hi, lo = struct.unpack('>HH', struct.pack('>f', x))
        got = dm.float32_scaled(hi, lo, 3)
        assert got == want, '%r Hz: got %r mHz, want %r' % (x, got, want)


def _check_float(hi, lo, e):
    x = struct.unpack('>f', struct.pack('>HH', hi, lo))[0]
    got = dm.float32_scaled(hi, lo, e)
    p = dm.POW10[e]
    where = '%04x %04x e=%d (%r): got %r' % (hi, lo, e, x, got)
    if x != x or x in (float('inf'), float('-inf')):
        assert got == INVALID, where
        return
    if e == 3 and 2 ** -11 <= abs(x) < 2 ** -10:
        return                              # see test_float32_tiny_values_round_to_nearest
    exact = x * p
    if abs(exact) >= 2 ** 29:
        assert got == INVALID, where
    elif got == INVALID:
        assert abs(exact) >= 2 ** 29 - 2 * p, where    # small conservative guard band
    else:
        # Nearest, up to the remainder cut to 19 bits (documented): p / 2**19.
        assert abs(got - exact) <= 0.5 + p / 2 ** 19 + 1e-6, where


def test_float32_random():
    random.seed(20240607)
    for _ in range(3000):                       # random bit patterns: every exponent
        hi, lo = random.getrandbits(16), random.getrandbits(16)
        _check_float(hi, lo, random.getrandbits(2))
    for _ in range(3000):                       # random values over many decades
        x = random.uniform(-1, 1) * 10 ** random.randint(-6, 10)
        hi, lo = struct.unpack('>HH', struct.pack('>f', x))
        _check_float(hi, lo, random.getrandbits(2))


def test_float32_exp_outside_0_3_is_invalid():
    dev = device('meter_sdm630')
    dev._exp[dev.index('grid_w')] = 4
    fill(dev, {'grid_w': 1.0})
    assert dev.value(dev.index('grid_w')) == INVALID


def test_set_builds_the_write_request():
    dev = device('pcs_sunspec', unit=2)
    # One cluster: the whole rw block 40100..40105 (adjacent registers, Conn
    # after WSetRvrtTms), always sent (it holds setpoint and heartbeat).
    assert [(t.unit, t.fc, t.addr, t.count) for t in dev.writes] == [(2, 16, 40100, 6)]
    assert dev.always == [True] and dev.dirty == [False]
    for point, v in (('WSetEna', 1), ('WSet', -5 * MW), ('CtrlHb', 65535), ('WSetRvrtTms', 5),
                     ('Conn', 1)):
        dev.set(dev.index(point), v)
    assert dev.dirty == [True]
    t = dev.writes[0]
    t._seal()
    want = bytes((2, 16, 0x9C, 0xA4, 0, 6, 12, 0, 1, 0xFF, 0xB3, 0xB4, 0xC0, 0xFF, 0xFF, 0, 5,
                  0, 1))
    c = crc(want, 0, len(want))
    assert bytes(t.req) == want + bytes((c & 0xFF, c >> 8))
    assert [t.reg_out(k) for k in range(t.count)] == [1, 0xFFB3, 0xB4C0, 0xFFFF, 5, 1]
    r = dev._reg[dev.index('WSet')]
    o = 7 + 2 * r
    for v in (-1, -(2 ** 29 - 1), -65536, -65535, 2 ** 29 - 1, 0):
        dev.set(dev.index('WSet'), v)
        assert struct.unpack('>i', bytes(t.req[o:o + 4]))[0] == v, v
        assert (t.reg_out(r) << 16) | t.reg_out(r + 1) == v & 0xFFFFFFFF, v
        # the neighbours keep their words
        assert (t.reg_out(0), t.reg_out(3), t.reg_out(4), t.reg_out(5)) == (1, 0xFFFF, 5, 1), v


def test_vendor_write_clusters():
    dev = device('pcs_vendor', unit=3)
    # One write per run of adjacent rw registers: P_set alone (always:
    # setpoint); Start/Stop (commands: only when changed); Watchdog alone
    # (always: revert_s). 652..659 are not in the map: never written.
    assert [(t.unit, t.fc, t.addr, t.count) for t in dev.writes] == \
        [(3, 16, 135, 1), (3, 16, 650, 2), (3, 16, 660, 1)]
    assert dev.always == [True, False, True]
    assert dev.dirty == [False, False, False]
    check_clusters(dev, 'pcs_vendor')
    s, st, sp, wd = [dev.index(n) for n in ('P_set', 'Start', 'Stop', 'Watchdog')]
    assert (dev._wc[s], dev._wc[st], dev._wc[sp], dev._wc[wd]) == (0, 1, 1, 2)
    assert (dev._reg[s], dev._reg[st], dev._reg[sp], dev._reg[wd]) == (0, 0, 1, 0)
    dev.set(s, -1234500)                    # W -> 100 W: -12345
    dev.set(st, 1)
    dev.set(sp, 0)
    dev.set(wd, 10)
    t = dev.writes[0]
    t._seal()
    want = bytes((3, 16, 0, 135, 0, 1, 2, 0xCF, 0xC7))
    c = crc(want, 0, len(want))
    assert bytes(t.req) == want + bytes((c & 0xFF, c >> 8))
    t = dev.writes[1]
    t._seal()
    want = bytes((3, 16, 0x02, 0x8A, 0, 2, 4, 0, 1, 0, 0))
    c = crc(want, 0, len(want))
    assert bytes(t.req) == want + bytes((c & 0xFF, c >> 8))
    assert (t.reg_out(0), t.reg_out(1)) == (1, 0)
    t = dev.writes[2]
    t._seal()
    want = bytes((3, 16, 0x02, 0x94, 0, 1, 2, 0, 10))
    c = crc(want, 0, len(want))
    assert bytes(t.req) == want + bytes((c & 0xFF, c >> 8))
    # Without the watchdog, start/stop are still commands, sent only when changed.
    m = dm.load_map('%s/pcs_vendor.json' % MAPS)
    del m['points']['Watchdog']
    dev = dm.Device(None, 3, m)
    assert [(t.addr, t.count) for t in dev.writes] == [(135, 1), (650, 2)]
    assert dev.always == [True, False]


def _rw_map(addrs):
    """A map of rw points {name: (addr, type, role or None)}."""
    pts = {}
    for n in addrs:
        a, typ, role = addrs[n]
        pts[n] = {'fc': 3, 'addr': a, 'type': typ, 'access': 'rw'}
        if role:
            pts[n]['role'] = role
    pts['P'] = {'fc': 3, 'addr': 5, 'type': 'int16', 'role': 'battery_w'}
    return {'name': 'rw_test', 'kind': 'pcs', 'points': pts}


def test_write_clusters_join_only_adjacent_points():
    for addrs, want, always in (
            # adjacent registers: one write
            ({'A': (100, 'uint16', 'start'), 'B': (101, 'uint16', None)},
             [(100, 2)], [False]),
            # one unmapped register between them: two writes, it is not touched
            ({'A': (100, 'uint16', 'start'), 'B': (102, 'uint16', 'heartbeat')},
             [(100, 1), (102, 1)], [False, True]),
            # 8 unmapped registers (the old GAP joined these): two writes
            ({'A': (100, 'uint16', 'start'), 'B': (109, 'uint16', None)},
             [(100, 1), (109, 1)], [False, False]),
            # adjacency counts from a 32-bit point's end
            ({'A': (100, 'int32', 'setpoint_w'), 'B': (102, 'uint16', 'stop')},
             [(100, 3)], [True]),
            ({'A': (100, 'int32', 'setpoint_w'), 'B': (103, 'uint16', 'stop')},
             [(100, 2), (103, 1)], [True, False]),
            ({'A': (100, 'uint16', 'stop'), 'B': (101, 'uint32', None), 'C': (103, 'int32', None)},
             [(100, 5)], [False]),
            # clusters come in address order whatever the map's order; each role in ALWAYS
            ({'C': (300, 'uint16', 'enable'), 'A': (10, 'uint16', 'revert_s'),
              'B': (200, 'uint16', None), 'D': (301, 'uint16', 'stop')},
             [(10, 1), (200, 1), (300, 2)], [True, False, True]),
            ({'D': (303, 'uint16', 'stop'), 'C': (302, 'uint16', None), 'B': (301, 'uint16', 'start'),
              'A': (300, 'uint16', None)},
             [(300, 4)], [False])):
        dev = dm.Device(None, 4, _rw_map(addrs))
        assert [(t.fc, t.addr, t.count) for t in dev.writes] == \
            [(16, a, n) for a, n in want], (addrs, [(t.addr, t.count) for t in dev.writes])
        assert dev.always == always, addrs
        assert dev.dirty == [False] * len(want), addrs
        assert [(t.addr, t.count) for t in dev.reads] == [(5, 1)]
        check_clusters(dev, addrs)
        for n in addrs:
            i = dev.index(n)
            t = dev.writes[dev._wc[i]]
            assert t.addr + dev._reg[i] == addrs[n][0], n


INT_TYPES = ('int16', 'uint16', 'int32', 'uint32')
ROLE_CHOICES = (None, None, 'setpoint_w', 'heartbeat', 'revert_s', 'enable', 'start', 'stop')


def _clamped(typ, v):
    lo, hi = {'int16': (-32767, 32767), 'uint16': (0, 65535),
              'int32': (-(1 << 29), (1 << 29) - 1), 'uint32': (0, (1 << 29) - 1)}[typ]
    return lo if v < lo else hi if v > hi else v


def _sent(t, o, typ):
    """The value a write request carries for a point, as the device reads it."""
    if dm.WIDTH[typ] == 1:
        w = t.reg_out(o)
        return w - 0x10000 if typ == 'int16' and w & 0x8000 else w
    v = (t.reg_out(o) << 16) | t.reg_out(o + 1)
    return v - (1 << 32) if typ == 'int32' and v & 0x80000000 else v


def test_random_layouts_write_only_mapped_registers():
    random.seed(20241128)
    for k in range(60):
        addrs = {}
        a = 100
        for j in range(random.randint(1, 8)):
            typ = INT_TYPES[random.randint(0, 3)]
            addrs['R%d' % j] = (a, typ, ROLE_CHOICES[random.randint(0, len(ROLE_CHOICES) - 1)])
            a += dm.WIDTH[typ] + (0 if random.randint(0, 1) else random.randint(1, 9))
        dev = dm.Device(None, 4, _rw_map(addrs))
        check_clusters(dev, addrs)
        assert dev.dirty == [False] * len(dev.writes)
        for _ in range(20):                 # any value: clamped, 0x8000 never in an int16
            n = 'R%d' % random.randint(0, len(addrs) - 1)
            i, typ = dev.index(n), addrs[n][1]
            v = random.randint(0, 0x3FFFFFFF) >> random.randint(0, 30)
            if random.randint(0, 1):
                v = -v
            dev.set(i, v)
            t = dev.writes[dev._wc[i]]
            assert _sent(t, dev._reg[i], typ) == _clamped(typ, v), (addrs, n, v)
            if typ == 'int16':
                assert t.reg_out(dev._reg[i]) != 0x8000, (n, v)


def test_set_clamps_to_the_register_range():
    dev = dm.Device(None, 4, _rw_map({
        'I16': (100, 'int16', None), 'U16': (101, 'uint16', None),
        'I32': (102, 'int32', None), 'U32': (104, 'uint32', None)}))
    assert [(t.addr, t.count) for t in dev.writes] == [(100, 6)]
    t = dev.writes[0]
    big = 1 << 29
    for name, cases in (
            # int16: -32767..32767; -32768 (0x8000, SunSpec's 'not implemented') is never sent
            ('I16', ((32767, (0x7FFF,)), (32768, (0x7FFF,)), (65535, (0x7FFF,)),
                     (65536 + 5, (0x7FFF,)), (4 * MW, (0x7FFF,)), (big - 1, (0x7FFF,)),
                     (-1, (0xFFFF,)), (-32767, (0x8001,)), (-32768, (0x8001,)),
                     (-65536, (0x8001,)), (-4 * MW, (0x8001,)), (-big, (0x8001,)),
                     (0, (0,)), (12345, (12345,)), (-12345, (-12345 & 0xFFFF,)))),
            # uint16: 0..65535, no wrap of 65536 to 0 or of -1 to 65535
            ('U16', ((65535, (0xFFFF,)), (65536, (0xFFFF,)), (0x10001, (0xFFFF,)),
                     (4 * MW, (0xFFFF,)), (-1, (0,)), (-32768, (0,)), (-big, (0,)),
                     (1, (1,)), (0x8000, (0x8000,)))),
            # int32: within the firmware's 2**29 decode limit
            ('I32', ((big - 1, (0x1FFF, 0xFFFF)), (big, (0x1FFF, 0xFFFF)),
                     (big + 65536, (0x1FFF, 0xFFFF)), (-big, (0xE000, 0)),
                     (-big - 1, (0xE000, 0)), (-big - 65536, (0xE000, 0)),
                     (-1, (0xFFFF, 0xFFFF)), (-5 * MW, (0xFFB3, 0xB4C0)), (65536, (1, 0)))),
            ('U32', ((big - 1, (0x1FFF, 0xFFFF)), (big, (0x1FFF, 0xFFFF)),
                     (big + 1, (0x1FFF, 0xFFFF)), (-1, (0, 0)), (-big, (0, 0)),
                     (65535, (0, 0xFFFF)), (5 * MW, (0x4C, 0x4B40))))):
        i = dev.index(name)
        o = dev._reg[i]
        for v, words in cases:
            dev.set(i, v)
            assert tuple([t.reg_out(o + k) for k in range(len(words))]) == words, \
                (name, v, [t.reg_out(o + k) for k in range(len(words))], words)
    # Each point kept its own registers: the last values of the tables.
    assert [t.reg_out(k) for k in range(6)] == [-12345 & 0xFFFF, 0x8000, 1, 0, 0x4C, 0x4B40]
    # Values past 32 bits (bigints) are clamped as well.
    huge = 1 << 40
    for name, v, words in (('I32', huge, (0x1FFF, 0xFFFF)), ('I32', -huge, (0xE000, 0)),
                           ('U32', huge, (0x1FFF, 0xFFFF)), ('U32', -huge, (0, 0)),
                           ('I16', -huge, (0x8001,)), ('U16', huge, (0xFFFF,))):
        i = dev.index(name)
        dev.set(i, v)
        o = dev._reg[i]
        assert tuple([t.reg_out(o + k) for k in range(len(words))]) == words, (name, v)


def test_vendor_setpoint_clamps_never_flips_sign():
    # int16 x 100 W: +/-3 276 700 W is the most the register carries. A 4 MW
    # discharge wrapped would be (40000 - 65536) x 100 W = a 2.55 MW charge.
    dev = device('pcs_vendor')
    s = dev.role('setpoint_w')
    t = dev.writes[dev._wc[s]]
    o = dev._reg[s]
    for v, word in ((4 * MW, 32767), (-4 * MW, 0x8001), (3276799, 32767), (-3276799, 0x8001),
                    (3276800, 32767), (-3276800, 0x8001),     # -32768 after the division
                    (3276899, 32767), (-3276899, 0x8001), (6553600, 32767), (-6553600, 0x8001),
                    (10 * MW, 32767), (-10 * MW, 0x8001), ((1 << 29) - 1, 32767),
                    (-(1 << 29), 0x8001), (3276700, 32767), (-3276700, 0x8001),
                    (3276699, 32766), (-3276699, -32766 & 0xFFFF)):
        dev.set(s, v)
        assert t.reg_out(o) == word, (v, t.reg_out(o), word)
    # A sweep: never 0x8000, never the other sign, never more power than asked.
    for v in list(range(-5 * MW, 5 * MW + 1, 99991)) + list(range(-3277000, -3276000, 7)) + \
            list(range(3276000, 3277000, 7)):
        dev.set(s, v)
        w = t.reg_out(o)
        assert w != 0x8000, v
        r = w - 0x10000 if w & 0x8000 else w
        assert (r >= 0) == (v >= 0) or r == 0, (v, r)
        assert abs(r) * 100 <= abs(v), (v, r)
        assert r == _clamped('int16', v // 100 if v >= 0 else -((-v) // 100)), (v, r)


def test_set_divides_by_exp():
    dev = device('pcs_vendor')
    s = dev.role('setpoint_w')
    t = dev.writes[dev._wc[s]]
    o = dev._reg[s]
    # firmware W -> register in 100 W, toward zero (never more power than asked)
    for v, word in ((2500000, 25000), (-2500000, -25000 & 0xFFFF), (2500099, 25000),
                    (-2500099, -25000 & 0xFFFF), (99, 0), (-99, 0), (100, 1),
                    (-100, 0xFFFF), (199, 1), (-199, 0xFFFF), (3276700, 32767),
                    (-3276700, 0x8001), (0, 0)):
        dev.set(s, v)
        assert t.reg_out(o) == word, (v, t.reg_out(o), word)
    # exp 0 points are sent as they are
    wd = dev.role('revert_s')
    dev.set(wd, 65535)
    assert dev.writes[dev._wc[wd]].reg_out(dev._reg[wd]) == 65535
    dev = device('pcs_sunspec')
    w = dev.role('setpoint_w')
    dev.set(w, 1234567)
    t = dev.writes[dev._wc[w]]
    assert (t.reg_out(dev._reg[w]) << 16) | t.reg_out(dev._reg[w] + 1) == 1234567


class Recorder:
    """A master that records which Txns ran; results by start address (default OK)."""

    def __init__(self):
        self.ran = []
        self.results = {}

    def run(self, txn):
        self.ran.append(txn.addr)
        return self.results.get(txn.addr, mb.OK)


def test_set_marks_dirty_only_on_change():
    rec = Recorder()
    dev = device('pcs_vendor', rec)
    s, st, sp, wd = [dev.role(r) for r in ('setpoint_w', 'start', 'stop', 'revert_s')]
    assert dev.dirty == [False, False, False]   # nothing set yet
    assert dev.write() == mb.OK and dev.dirty == [False, False, False]
    for v in (0, 99, -99):                    # register stays 0
        dev.set(s, v)
        assert dev.dirty == [False, False, False], v
    dev.set(s, 2500000)
    assert dev.dirty == [True, False, False]
    dev.write()
    assert dev.dirty == [False, False, False]
    for v in (2500000, 2500050, 2500099):     # register stays 25000
        dev.set(s, v)
        assert dev.dirty == [False, False, False], v
    dev.set(s, 2500100)
    assert dev.dirty == [True, False, False]
    dev.set(st, 0)                            # already 0
    assert dev.dirty == [True, False, False]
    dev.set(st, 1)
    assert dev.dirty == [True, True, False]
    dev.set(wd, 10)
    assert dev.dirty == [True, True, True]
    dev.write()
    assert dev.dirty == [False, False, False]
    dev.set(st, 1)
    dev.set(sp, 0)
    dev.set(wd, 10)
    assert dev.dirty == [False, False, False]
    dev.set(st, 0x10001)                      # clamped to 65535, not wrapped to 1: a change
    assert dev.dirty == [False, True, False]
    dev.write()
    for v in (0x20000, 65535, 1 << 29):       # all 65535: no change
        dev.set(st, v)
        assert dev.dirty == [False, False, False], v
    dev.set(sp, 1)
    assert dev.dirty == [False, True, False]
    dev.write()
    # Beyond the register's range the clamped word stays the same: no change.
    dev.set(s, 4 * MW)
    assert dev.dirty == [True, False, False]
    dev.write()
    for v in (5 * MW, 3276700, 3276799, (1 << 29) - 1):
        dev.set(s, v)
        assert dev.dirty == [False, False, False], v
    dev.set(s, -4 * MW)
    assert dev.dirty == [True, False, False]
    dev.write()
    for v in (-3276700, -3276800, -5 * MW, -(1 << 29)):
        dev.set(s, v)
        assert dev.dirty == [False, False, False], v
    # 32-bit points: either word changing marks the write
    dev = device('pcs_sunspec', rec)
    w = dev.role('setpoint_w')
    assert dev.dirty == [False]
    dev.set(w, 5 * MW)
    assert dev.dirty == [True]
    dev.write()
    for v, dirty in ((5 * MW, False), (5 * MW + 1, True), (5 * MW + 1 + 65536, True),
                     (5 * MW + 1 + 65536, False), (-(5 * MW), True), (-(5 * MW), False),
                     ((1 << 29) - 1, True), (1 << 29, False), (1 << 31, False),
                     (-(1 << 29), True), (-(1 << 30), False)):
        dev.set(w, v)
        assert dev.dirty == [dirty], v
        dev.write()
        assert dev.dirty == [False]


def test_write_skips_clean_clusters():
    rec = Recorder()
    dev = dm.Device(rec, 1, _rw_map({
        'Set': (100, 'int16', 'setpoint_w'), 'Start': (200, 'uint16', 'start'),
        'Stop': (201, 'uint16', 'stop'), 'Mode': (300, 'uint16', None),
        'Wd': (400, 'uint16', 'revert_s')}))
    assert [t.addr for t in dev.writes] == [100, 200, 300, 400]
    assert dev.always == [True, False, False, True]
    s, st, sp, mode = dev.index('Set'), dev.index('Start'), dev.index('Stop'), dev.index('Mode')

    def cycle(want_ran, want=mb.OK):
        del rec.ran[:]
        assert dev.write() == want
        assert rec.ran == want_ran, (rec.ran, want_ran)

    cycle([100, 400])                         # from the start: only the always clusters
    cycle([100, 400])
    dev.set(st, 0)                            # the value it already holds: not sent
    dev.set(mode, 0)
    cycle([100, 400])
    dev.set(st, 1)
    cycle([100, 200, 400])
    dev.set(st, 1)                            # same value: nothing new
    cycle([100, 400])
    dev.set(mode, 7)
    dev.set(sp, 1)
    cycle([100, 200, 300, 400])
    cycle([100, 400])
    dev.set(s, 5)                             # an always cluster changing: still once a cycle
    cycle([100, 400])
    assert dev.dirty == [False, False, False, False]
    # A failed write stays dirty and is retried next cycle; the write stops
    # there (the clusters after it wait, dirty or always).
    dev.set(st, 0)
    rec.results[200] = mb.TIMEOUT
    cycle([100, 200], mb.TIMEOUT)
    assert dev.dirty == [False, True, False, False]
    cycle([100, 200], mb.TIMEOUT)
    del rec.results[200]
    cycle([100, 200, 400])
    cycle([100, 400])
    # An always cluster failing: the error is returned, it goes out next cycle anyway.
    rec.results[400] = mb.CRC_ERR
    cycle([100, 400], mb.CRC_ERR)
    rec.results[400] = mb.EXCEPTION
    cycle([100, 400], mb.EXCEPTION)
    del rec.results[400]
    cycle([100, 400])
    # The vendor map: P_set and Watchdog every cycle, Start/Stop only once set.
    dev = device('pcs_vendor', rec)
    del rec.ran[:]
    for _ in range(3):
        assert dev.write() == mb.OK
    assert rec.ran == [135, 660] * 3
    dev.set(dev.role('stop'), 1)
    del rec.ran[:]
    for _ in range(3):
        assert dev.write() == mb.OK
    assert rec.ran == [135, 650, 660] + [135, 660] * 2
    # No rw points: write() sends nothing.
    dev = device('meter_sunspec', rec)
    del rec.ran[:]
    assert dev.write() == mb.OK and rec.ran == []


def test_write_stops_at_the_first_error():
    rec = Recorder()
    dev = dm.Device(rec, 1, _rw_map({
        'Set': (100, 'int16', 'setpoint_w'), 'Start': (200, 'uint16', 'start'),
        'Mode': (300, 'uint16', None), 'Wd': (400, 'uint16', 'revert_s')}))
    s, st, mode, wd = [dev.index(n) for n in ('Set', 'Start', 'Mode', 'Wd')]

    def cycle(want_ran, want=mb.OK):
        del rec.ran[:]
        assert dev.write() == want
        assert rec.ran == want_ran, (rec.ran, want_ran)

    dev.set(st, 1)
    dev.set(mode, 7)
    dev.set(wd, 5)
    assert dev.dirty == [False, True, True, True]
    # A dead device: one transaction (one timeout) per cycle, everything stays to do.
    for k in range(100):
        rec.results[k * 100] = mb.TIMEOUT
    for _ in range(3):
        cycle([100], mb.TIMEOUT)
        assert dev.dirty == [False, True, True, True]
    # The first failing cluster's code is returned, not a later one's; the
    # clusters before it went out and are clean, it and the later ones wait.
    rec.results = {300: mb.EXCEPTION, 400: mb.CRC_ERR}
    cycle([100, 200, 300], mb.EXCEPTION)
    assert dev.dirty == [False, False, True, True]
    rec.results = {400: mb.CRC_ERR}
    cycle([100, 300, 400], mb.CRC_ERR)
    assert dev.dirty == [False, False, False, True]
    rec.results = {}
    cycle([100, 400])
    assert dev.dirty == [False, False, False, False]
    cycle([100, 400])
    # A dirty always cluster that fails stays dirty too.
    dev.set(s, 9)
    rec.results = {100: mb.WRONG_REPLY}
    cycle([100], mb.WRONG_REPLY)
    assert dev.dirty == [True, False, False, False]
    rec.results = {}
    cycle([100, 400])
    assert dev.dirty == [False, False, False, False]
    # Through a master and a bus that does not answer: the pcs_vendor writes
    # stop at the first timeout; once it answers, the pending command goes out.
    bus = SlaveBus(3, store=True)
    dev = device('pcs_vendor', LoopMaster(bus), unit=3)
    dev.set(dev.role('start'), 1)
    dev.set(dev.role('revert_s'), 5)
    bus.mute = True
    assert dev.write() == mb.TIMEOUT
    assert (bus.fc, bus.addr) == (16, 135)        # the last request sent: the first cluster
    assert dev.dirty == [False, True, True]
    bus.mute = False
    assert dev.write() == mb.OK and dev.dirty == [False, False, False]
    assert (bus.words[650], bus.words[651], bus.words[660]) == (1, 0, 5)


def test_command_clusters_clean_until_set():
    # Boot: nothing has been set, so the start/stop registers get no zeros;
    # only the always clusters (setpoint, watchdog) go out.
    bus = SlaveBus(3, store=True)
    dev = device('pcs_vendor', LoopMaster(bus), unit=3)
    st, sp = dev.role('start'), dev.role('stop')
    for _ in range(3):
        assert dev.write() == mb.OK
    assert sorted(bus.words) == [135, 660]
    dev.set(st, 0)                            # what the request already holds: nothing to send
    dev.set(sp, 0)
    assert dev.dirty == [False, False, False]
    assert dev.write() == mb.OK and sorted(bus.words) == [135, 660]
    dev.set(sp, 1)
    assert dev.dirty == [False, True, False]
    assert dev.write() == mb.OK
    assert sorted(bus.words) == [135, 650, 651, 660] and (bus.words[650], bus.words[651]) == (0, 1)
    # sent once: a device that consumed the command (cleared it) is not written again
    bus.words[651] = 0
    for _ in range(3):
        assert dev.write() == mb.OK
    assert bus.words[651] == 0
    # A map with only a command point (as a genset run command): nothing at all until set.
    rec = Recorder()
    dev = dm.Device(rec, 1, _rw_map({'Run': (1000, 'uint16', 'start')}))
    assert dev.always == [False] and dev.dirty == [False]
    for _ in range(3):
        assert dev.write() == mb.OK
    assert rec.ran == []
    dev.set(dev.index('Run'), 1)
    for _ in range(3):
        assert dev.write() == mb.OK
    assert rec.ran == [1000]


def _bad_map(points, name):
    path = '/tmp/cabinet_test_devmap_%s.json' % name
    with open(path, 'w') as f:
        f.write(points)
    try:
        dm.Device(None, 1, dm.load_map(path))
    except ValueError as e:
        return str(e)
    finally:
        os.remove(path)
    return 'no error'


BAD = [
    ('{"W": {"fc": 3, "addr": 0, "type": "int64"}}', ("'W'", 'type must be one of', 'int16')),
    ('{"W": {"fc": 3, "addr": 0, "type": "int16", "sf": "W_SF"}}', ("'W'", "'W_SF'", 'not in the map')),
    ('{"W": {"fc": 6, "addr": 0, "type": "int16"}}', ("'W'", 'fc must be 3 or 4')),
    ('{"W": {"fc": 3, "addr": 0, "type": "int16", "exp": 9}}', ("'W'", '-8..8')),
    ('{"A": {"fc": 3, "addr": 0, "type": "int16"}, "B": {"fc": 3, "addr": 125, "type": "int16"}}',
     ('bad', 'over 125 registers')),
]


def test_load_map_errors_name_the_point():
    for i, (points, words) in enumerate(BAD):
        msg = _bad_map('{"name": "bad", "points": %s}' % points, str(i))
        for w in words:
            assert w in msg, 'row %d: %r not in %r' % (i, w, msg)
    msg = _bad_map('{"name": "bad", "points": {', 'json')
    assert 'not valid JSON' in msg and 'cabinet_test_devmap_json.json' in msg, msg


class SlaveBus:
    """A Modbus slave over a word dict, answering fc 3/4/16 into recv_into by index.

    A request with a bad CRC gets no answer; with store=True an fc-16 request's
    registers land in words (off for the allocation test: new keys allocate).
    """

    def __init__(self, unit, store=False):
        self.unit = unit
        self.words = {}
        self.fc = self.addr = self.count = 0
        self.mute = False
        self.store = store
        self.bad_crc = False

    def drain(self):
        pass

    def write(self, req):
        self.fc = req[1]
        self.addr = (req[2] << 8) | req[3]
        self.count = (req[4] << 8) | req[5]
        self.bad_crc = crc(req, 0, len(req)) != 0
        if self.store and self.fc == 16 and not self.bad_crc:
            for i in range(self.count):
                self.words[self.addr + i] = (req[7 + 2 * i] << 8) | req[8 + 2 * i]

    def recv_into(self, buf, want, timeout_ms):
        if self.mute or self.bad_crc:
            return 0
        buf[0] = self.unit
        buf[1] = self.fc
        if self.fc == 16:
            buf[2] = self.addr >> 8             # the echo: address and count
            buf[3] = self.addr & 0xFF
            buf[4] = self.count >> 8
            buf[5] = self.count & 0xFF
            n = 6
        else:
            buf[2] = 2 * self.count
            for i in range(self.count):
                w = self.words.get(self.addr + i, 0)
                buf[3 + 2 * i] = w >> 8
                buf[4 + 2 * i] = w & 0xFF
            n = 3 + 2 * self.count
        c = crc(buf, 0, n)
        buf[n] = c & 0xFF
        buf[n + 1] = c >> 8
        return n + 2


class LoopMaster:
    """Master.run without the timing (CPython has no ticks_us)."""

    def __init__(self, bus):
        self.bus = bus

    def run(self, txn):
        if txn.fc == 16:
            txn._seal()                         # as Master.run does
        self.bus.write(txn.req)
        return mb.Master._check(None, txn, txn.resp, self.bus.recv_into(txn.resp, len(txn.resp), 20))


def load_words(bus, dev, raw):
    # The slave's register image for the given raw point values.
    for name, v in raw.items():
        p = dev.map['points'][name]
        b = encode(p['type'], v)
        for j in range(0, len(b), 2):
            bus.words[p['addr'] + j // 2] = (b[j] << 8) | b[j + 1]


PCS = {'W': -7 * MW, 'W_SF': 0, 'SoC': 555, 'SoC_SF': -1, 'WChaMax': 10 * MW,
       'WDisChaMax': 9 * MW, 'Evt1': 1}
WANT = {'W': -7 * MW, 'SoC': 5550, 'WChaMax': 10 * MW, 'WDisChaMax': 9 * MW, 'Evt1': 1}
VENDOR = {'P_act': -25000, 'SOC': 555, 'P_cha_max': 30000, 'P_dis_max': 25000, 'Fault': 1}
VENDOR_WANT = {'P_act': -2500000, 'SOC': 5550, 'P_cha_max': 3 * MW, 'P_dis_max': 2500000,
               'Fault': 1}


def test_read_through_a_master():
    for name, unit, raw, want in (('pcs_sunspec', 2, PCS, WANT), ('pcs_vendor', 3, VENDOR, VENDOR_WANT)):
        bus = SlaveBus(unit)
        dev = device(name, LoopMaster(bus), unit=unit)
        load_words(bus, dev, raw)
        # rw registers hold something else: they are not read, nothing changes
        for i in writable(dev):
            p = dev.map['points'][dev.names[i]]
            bus.words[p['addr']] = 0x8000
        assert dev.read() == mb.OK and dev.last_result == mb.OK
        assert (bus.fc, bus.addr, bus.count) == (dev.reads[0].fc, dev.reads[0].addr, dev.reads[0].count)
        for k, v in want.items():
            assert dev.value(dev.index(k)) == v, (name, k)
        bus.mute = True
        assert dev.read() == mb.TIMEOUT and dev.last_result == mb.TIMEOUT
        bus.mute = False
        assert dev.read() == mb.OK and dev.last_result == mb.OK


def test_write_through_a_master():
    bus = SlaveBus(3, store=True)
    dev = device('pcs_vendor', LoopMaster(bus), unit=3)
    s, st, sp, wd = [dev.role(r) for r in ('setpoint_w', 'start', 'stop', 'revert_s')]
    dev.set(wd, 5)
    dev.set(st, 1)
    dev.set(s, -1234567)                    # -> -12345 (toward zero)
    assert dev.write() == mb.OK
    assert bus.words[135] == -12345 & 0xFFFF
    assert (bus.words[650], bus.words[651], bus.words[660]) == (1, 0, 5)
    dev.set(st, 0)
    dev.set(sp, 1)
    dev.set(s, 3276700)
    assert dev.write() == mb.OK
    assert (bus.words[135], bus.words[650], bus.words[651], bus.words[660]) == (32767, 0, 1, 5)
    # Only the mapped rw registers were ever written (652..659 kept no zeros).
    assert sorted(bus.words) == sorted(rw_registers(dev)) == [135, 650, 651, 660]
    # Out of range: clamped on the wire, the sign kept, never 0x8000.
    for v, word in ((4 * MW, 0x7FFF), (-4 * MW, 0x8001), (-3276800, 0x8001), (-2500000, 0x9E58)):
        dev.set(s, v)
        assert dev.write() == mb.OK
        assert bus.words[135] == word, (v, bus.words[135])
    assert sorted(bus.words) == [135, 650, 651, 660]
    bus = SlaveBus(2, store=True)
    dev = device('pcs_sunspec', LoopMaster(bus), unit=2)
    for point, v in (('WSetEna', 1), ('WSet', -5 * MW), ('CtrlHb', 7), ('WSetRvrtTms', 5)):
        dev.set(dev.index(point), v)
    assert dev.write() == mb.OK
    assert [bus.words[40100 + k] for k in range(5)] == [1, 0xFFB3, 0xB4C0, 7, 5]
    assert sorted(bus.words) == sorted(rw_registers(dev)) == list(range(40100, 40106))
    bus.mute = True
    assert dev.write() == mb.TIMEOUT


def _values(dev, idx):
    s = 0
    for k in range(len(idx)):
        s += dev.value(idx[k])
    return s


def _toggle(dev, i, a, b):
    dev.set(i, a)
    dev.set(i, b)


def _command_cycle(dev, i):
    # set a command, write (dirty cluster sent), clear it, write again, write clean
    dev.set(i, 1)
    r = dev.write()
    dev.set(i, 0)
    r |= dev.write()
    return r | dev.write()


def test_mpy_read_value_set_do_not_allocate():
    from alloc import no_alloc
    bus = SlaveBus(2)
    dev = device('pcs_sunspec', mb.Master(bus, 20), unit=2)
    load_words(bus, dev, PCS)
    assert no_alloc(lambda: dev.read(), 20, 'Device.read') == mb.OK
    assert dev.value(dev.index('W')) == -7 * MW
    rd = readable(dev)
    no_alloc(lambda: _values(dev, rd), 100, 'Device.value (pcs)')
    w, e = dev.index('WSet'), dev.index('WSetEna')
    no_alloc(lambda: dev.set(w, -5 * MW), 100, 'Device.set (int32)')
    no_alloc(lambda: dev.set(e, 1), 100, 'Device.set (uint16)')
    no_alloc(lambda: _toggle(dev, w, -5 * MW, 5 * MW + 1), 100, 'Device.set (int32, changing)')
    no_alloc(lambda: _toggle(dev, e, 0, 1), 100, 'Device.set (uint16, changing)')
    no_alloc(lambda: _toggle(dev, w, 600 * MW, -600 * MW), 100, 'Device.set (int32, clamped)')
    no_alloc(lambda: _toggle(dev, e, -1, 70000), 100, 'Device.set (uint16, clamped)')
    assert no_alloc(lambda: dev.write(), 20, 'Device.write') == mb.OK
    bus.mute = True                         # error path: runs under the lock too
    assert no_alloc(lambda: dev.read(), 5, 'Device.read (timeout)') == mb.TIMEOUT
    assert no_alloc(lambda: dev.write(), 5, 'Device.write (timeout)') == mb.TIMEOUT
    # Vendor map: exp division in set(), two clusters, a custom map's command cluster.
    bus = SlaveBus(3)
    dev = device('pcs_vendor', mb.Master(bus, 20), unit=3)
    load_words(bus, dev, VENDOR)
    assert no_alloc(lambda: dev.read(), 20, 'Device.read (vendor)') == mb.OK
    rd = readable(dev)
    no_alloc(lambda: _values(dev, rd), 100, 'Device.value (vendor)')
    s = dev.role('setpoint_w')
    no_alloc(lambda: _toggle(dev, s, 2500099, -2500099), 100, 'Device.set (exp 2)')
    no_alloc(lambda: _toggle(dev, s, 4 * MW, -4 * MW), 100, 'Device.set (exp 2, clamped)')
    assert no_alloc(lambda: dev.write(), 20, 'Device.write (vendor)') == mb.OK
    dev = dm.Device(mb.Master(bus, 20), 3, _rw_map({
        'Set': (100, 'int16', 'setpoint_w'), 'Start': (200, 'uint16', 'start')}))
    st = dev.index('Start')
    assert no_alloc(lambda: _command_cycle(dev, st), 20, 'Device.write (dirty)') == mb.OK
    for name in NAMES:                      # every map's decode, floats included
        dev = device(name)
        fill(dev, {})
        for t in dev.reads:                 # non-trivial bits in every register
            for i in range(3, len(t.resp) - 2):
                t.resp[i] = 0x41 + (i & 3)
        rd = readable(dev)
        no_alloc(lambda: _values(dev, rd), 100, 'Device.value (%s)' % name)
