# Device register maps (maps/<name>.json) turned into Modbus transactions.
#
# At boot a Device groups its readable points into one read per function code
# (the span from the lowest to the highest address) and its writable points
# into one fc-16 write. Per cycle: read() runs the reads, value(i) decodes a
# point into firmware units, set(i, v) patches the write, write() sends it.
# Decoding is integer-only and refuses values that would leave the 31-bit
# small-int range (|x| >= 2**29) instead of silently allocating a bigint.
import json
from cabinet import modbus

# Register types; the index in TYPES is the per-point kind code used per cycle.
TYPES = ('int16', 'uint16', 'int32', 'uint32', 'float32')
WIDTH = {'int16': 1, 'uint16': 1, 'int32': 2, 'uint32': 2, 'float32': 2}
LIMIT = 1 << 29
# Decode failures, reported by value() as this sentinel (never a real reading).
INVALID = -(1 << 29)
POW10 = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000)


def load_map(path):
    with open(path) as f:
        try:
            m = json.load(f)
        except ValueError as e:
            raise ValueError('%s: not valid JSON (%s)' % (path, e))
    for name, p in m['points'].items():
        where = '%s: point %r' % (path, name)
        if p.get('type') not in WIDTH:
            raise ValueError('%s: type must be one of %s' % (where, ', '.join(TYPES)))
        if p.get('fc') not in (3, 4):
            raise ValueError('%s: fc must be 3 or 4' % where)
        if 'sf' in p and p['sf'] not in m['points']:
            raise ValueError('%s: scale-factor point %r is not in the map' % (where, p['sf']))
        if not -8 <= p.get('exp', 0) <= 8:
            raise ValueError('%s: exp must be in -8..8' % where)
    return m


def scale(raw, e):
    # raw * 10**e with |raw| < 2**29 in, result checked before it can overflow.
    if e >= 0:
        if e > 8 or (raw and abs(raw) >= LIMIT // POW10[e]):
            return INVALID
        return raw * POW10[e]
    if e < -8:
        return 0
    return raw // POW10[-e] if raw >= 0 else -((-raw) // POW10[-e])  # toward 0


def float32_scaled(hi, lo, e):
    # IEEE-754 float32 (two registers, big-endian) * 10**e as an int, no float.
    # 0 <= e <= 3 keeps r * 10**e below 2**29 (r is cut to 19 bits).
    neg = hi & 0x8000
    ex = (hi >> 7) & 0xFF
    if ex == 0:
        return 0                          # zero or subnormal: below 1e-38
    if ex == 0xFF:
        return INVALID                    # inf or NaN
    m = ((hi & 0x7F) << 16) | lo | 0x800000   # 24-bit mantissa, value = m * 2**(ex-150)
    k = 150 - ex                          # right shift
    p = POW10[e]
    if k <= 0:
        if -k > 5 or m * p >= LIMIT >> -k:
            return INVALID
        v = (m * p) << -k
    elif k >= 35:                         # m * 10**3 / 2**k < 0.5: rounds to 0
        v = 0
    else:
        q = m >> k
        if q >= LIMIT // p:
            return INVALID
        r = m & ((1 << k) - 1)
        if k > 19:                        # keep r * p in range
            r >>= k - 19
            k = 19
        v = q * p + ((r * p + (1 << (k - 1))) >> k)
    return -v if neg else v


ALWAYS = ('setpoint_w', 'heartbeat', 'revert_s', 'enable')   # rewritten every cycle
# Register ranges of the integer types: a value is clamped, never wrapped
# (a 4 MW discharge must not reach an int16 x 100 W register as a charge).
CLAMP = ((-0x7FFF, 0x7FFF), (0, 0xFFFF), (-LIMIT, LIMIT - 1), (0, LIMIT - 1), (-LIMIT, LIMIT - 1))


class Device:
    """A device on the bus, described by a map: reads, decoding, writes.

    Readable points (not rw) are read as one span per function code; writable
    points are grouped into fc-16 writes of adjacent registers (never across
    unmapped ones: those may be settings). Writes holding the setpoint or a
    heartbeat go out every cycle; the others (start/stop commands) only when
    set() changed them.
    """

    def __init__(self, master, unit, mapdef):
        self.master = master
        self.map = mapdef
        pts = mapdef['points']
        self.names = list(pts)
        self.roles = [pts[n].get('role') for n in self.names]
        spans = {}
        for name in self.names:
            p = pts[name]
            if p.get('access') == 'rw':
                continue
            end = p['addr'] + WIDTH[p['type']]
            lo_hi = spans.get(p['fc'])
            spans[p['fc']] = (min(lo_hi[0], p['addr']), max(lo_hi[1], end)) if lo_hi else (p['addr'], end)
        self.reads = [modbus.Txn(unit, fc, a, b - a) for fc, (a, b) in spans.items()]
        for t in self.reads:
            if t.count > 125:
                raise ValueError('%s: read span %d..%d is over 125 registers'
                                 % (mapdef['name'], t.addr, t.addr + t.count))
        # Writes: clusters of nearby rw points, in address order.
        rw = sorted((pts[n]['addr'], n) for n in self.names if pts[n].get('access') == 'rw')
        clusters = []
        for addr, name in rw:
            end = addr + WIDTH[pts[name]['type']]
            if clusters and addr == clusters[-1][1]:
                clusters[-1][1] = max(clusters[-1][1], end)
                clusters[-1][2].append(name)
            else:
                clusters.append([addr, end, [name]])
        self.writes = [modbus.Txn(unit, 16, a, b - a) for a, b, _ in clusters]
        self.always = [any(pts[n].get('role') in ALWAYS for n in c[2]) for c in clusters]
        self.dirty = [False] * len(clusters)     # command registers: only once set
        # Per point, as parallel lists of small ints (no per-cycle lookups).
        self._txn = []
        self._reg = []
        self._kind = []
        self._sf = []
        self._exp = []
        self._wc = []                      # index of its write cluster, or -1
        for name in self.names:
            p = pts[name]
            ts = [x for x in self.reads if x.fc == p['fc']]
            t = ts[0] if ts and p.get('access') != 'rw' else None
            self._txn.append(t)
            self._reg.append(p['addr'] - t.addr if t else 0)
            self._kind.append(TYPES.index(p['type']))
            self._sf.append(self.names.index(p['sf']) if 'sf' in p else -1)
            self._exp.append(p.get('exp', 0))
            w = [i for i, c in enumerate(clusters) if name in c[2]]
            self._wc.append(w[0] if w else -1)
            if w:
                self._reg[-1] = p['addr'] - clusters[w[0]][0]
        self.last_result = modbus.OK

    def index(self, name):
        if name not in self.names:
            raise ValueError('map %s has no point %r' % (self.map['name'], name))
        return self.names.index(name)

    def role(self, role, required=True):
        """Index of the point with this role; -1 if absent and not required."""
        if role in self.roles:
            return self.roles.index(role)
        if required:
            raise ValueError('map %s has no point with role %r' % (self.map['name'], role))
        return -1

    def read(self):
        for t in self.reads:
            r = self.master.run(t)
            if r:
                self.last_result = r
                return r
        self.last_result = modbus.OK
        return modbus.OK

    def raw(self, i):
        t = self._txn[i]
        o = self._reg[i]
        k = self._kind[i]
        hi = t.reg(o)
        if k == 0:                         # int16; 0x8000 is SunSpec's "not implemented"
            if hi == 0x8000:
                return INVALID
            return hi - 0x10000 if hi & 0x8000 else hi
        if k == 1:                         # uint16
            return hi
        lo = t.reg(o + 1)
        if k == 2:                         # int32: |value| < 2**29 or INVALID
            s = hi - 0x10000 if hi & 0x8000 else hi
            if s >= 0x2000 or s < -0x2000:
                return INVALID
            return (s << 16) | lo
        if k == 3:                         # uint32
            return INVALID if hi >= 0x2000 else (hi << 16) | lo
        return INVALID                     # float32 only through value()

    def value(self, i):
        e = self._exp[i]
        sf = self._sf[i]
        if sf >= 0:
            f = self.raw(sf)
            if f == INVALID:
                return INVALID
            e += f
        if self._kind[i] == 4:
            t = self._txn[i]
            o = self._reg[i]
            if not 0 <= e <= 3:
                return INVALID
            return float32_scaled(t.reg(o), t.reg(o + 1), e)
        v = self.raw(i)
        if v == INVALID:
            return v
        return scale(v, e)

    def set(self, i, value):
        """Patch a writable point (in device units: value // 10**exp is sent)."""
        c = self._wc[i]
        t = self.writes[c]
        o = self._reg[i]
        e = self._exp[i]
        if e > 0:
            value = value // POW10[e] if value >= 0 else -((-value) // POW10[e])
        lo, hi = CLAMP[self._kind[i]]
        if value < lo:
            value = lo
        elif value > hi:
            value = hi
        if self._kind[i] >= 2:
            hi = (value >> 16) & 0xFFFF
            lo = value & 0xFFFF
            if t.reg_out(o) != hi or t.reg_out(o + 1) != lo:
                t.set_reg(o, hi)
                t.set_reg(o + 1, lo)
                self.dirty[c] = True
        elif t.reg_out(o) != value & 0xFFFF:
            t.set_reg(o, value & 0xFFFF)
            self.dirty[c] = True

    def write(self):
        """Send the writes due this cycle; stop at the first error and return
        its code (a dead device costs one timeout per cycle), else OK."""
        for c in range(len(self.writes)):
            if self.always[c] or self.dirty[c]:
                r = self.master.run(self.writes[c])
                if r:
                    return r                   # stays dirty: retried next cycle
                self.dirty[c] = False
        return modbus.OK
