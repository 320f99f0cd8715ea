# Current-transformer sensing: per mains cycle, RMS current (mA) and real
# power (W) per CT from one block of interleaved u16 ADC samples, plus the
# CT-vs-meter disagreement alarm. Integer only, no allocation per block; the
# same source runs on CPython and MicroPython. The per-sample loops are in
# cabinet/ct_loops.py (plain Python and viper twins).
#
# Block: array('H') of n * channels samples (n per mains cycle at the nominal
# frequency), sample j of channel c at index j * channels + c, as a
# round-robin ADC delivers them. A count s becomes a 15-bit sample
# x = (s - bias) / 2, |x| <= 32767.
#
# Frequency tracking: a block holds n samples, but off the nominal frequency
# a mains cycle does not (at 59 Hz it is 65.1 samples of 64), and a window of
# n samples leaks (a ripple of ~1.8 % of the reading at +-1 Hz). So the rising
# zero crossings of one channel (the first voltage channel, else the first
# CT) measure the period in 1/256 sample, filtered over ~8 cycles, and every
# mean is taken over the last measured period: whole samples plus one more
# weighted by the fraction. Channels keep enough history for a period of up
# to n * 17/16 samples; periods outside n * (1 +- 1/16) are not believed.
#
# 31-bit safety (tests/test_ct_range.py checks every operation here and in
# ct_loops.py): bias is held in 1/256 count within [256, 65534 * 256], so
# (s << 8) - bias is within +-2**24 and |x| <= 32767; products and their sums
# as in ct_loops.py. Scale factors are 15-bit mantissas with a binary
# exponent and only multiply values first normalised below 2**15.
from array import array
# The site's "ct" object: SPEC, PER_CT and validate() live in ct_config.py
# (validating a config need not load the loops below); re-exported here.
from cabinet.ct_config import PER_CT, SPEC, validate  # noqa: F401
from cabinet import ct_loops as _L

SAT = (1 << 29) - 1         # _scale saturates here: mA + offset_ma stays < 2**30
LIMIT_W = (1 << 28) - 1     # per CT: a total of 4 stays < 2**30
_Q = 3                      # Disagreement works in 8 W units (as dispatch does)
_DMAX = (1 << 27) - 1       # and clamps a difference there (diff_w < 2**30)


# --- Fixed point: per block and at init, never per sample ---------------------

def _norm(m, e):
    """(m, e) stands for m / 2**e; bring m (0 < m < 2**30) into [2**14, 2**15)."""
    while m >= 32768:
        m = (m + 1) >> 1
        e -= 1
    while m < 16384:
        m <<= 1
        e += 1
    return m, e


def _fmul(a, b):
    return _norm(a[0] * b[0], a[1] + b[1])


def _fdiv(a, b):
    return _norm((a[0] << 15) // b[0], a[1] - b[1] + 15)


def _scale(a, m, e):
    """a * m / 2**e, rounded, for |a| < 2**30, m < 2**15; saturates at +-SAT."""
    neg = a < 0
    if neg:
        a = -a
    while a >= 1 << 19:         # keep a * m below 2**30 (in steps: a per-block cost)
        a >>= 4
        e -= 4
    while a >= 32768:
        a >>= 1
        e -= 1
    a *= m
    if e > 30:
        a = 0
    elif e > 0:
        a = ((a >> (e - 1)) + 1) >> 1
    while e < 0 and a <= SAT:
        a = a << 1 if a <= SAT >> 1 else SAT + 1
        e += 1
    if a > SAT:
        a = SAT
    return -a if neg else a


def _mean(hi, lo, n):
    """floor((hi * 2**15 + lo) / n), never forming the sum (up to 2**38)."""
    return ((hi // n) << 15) + (((hi % n) << 15) + lo) // n


def _wmean(hi, lo, m, q, per):
    """Mean over a window of m whole samples (sum hi * 2**15 + lo, each term
    |q| < 2**30) and one more sample q weighted f / 256, per = 256 m + f:
    mean + f (q - mean) / per, the difference halved to stay below 2**30."""
    a = _mean(hi, lo, m)
    f2 = (per & 255) << 1
    if f2:
        d = (q >> 1) - (a >> 1)
        a += (d // per) * f2 + ((d % per) * f2) // per
    return a


def _rms_q4(a):
    """sqrt(a) in 1/16 units (floor), 0 <= a < 2**30; the result is < 2**19."""
    if a <= 0:
        return 0
    k = 0                       # a << 2k lands in [2**28, 2**30): sqrt is 15 bits
    while a < 1 << 22:
        a <<= 6
        k += 3
    while a < 1 << 28:
        a <<= 2
        k += 1
    # Newton from the tangent of sqrt at 2**29 (never below the root): 3-4 steps.
    x = a // 46341 + 11586
    while True:
        y = (x + a // x) >> 1
        if y >= x:
            break
        x = y
    return x << (4 - k) if k <= 4 else x >> (k - 4)


ZC_HYST = 1024              # zero-crossing hysteresis: 1/32 of the 15-bit full scale


class Ct:
    """After process(): rms_ma[k] and p_w[k] per CT k, total_w, v_mv, and
    period_q8 (the mains period in 1/256 sample) and freq_mhz it measured."""

    def __init__(self, cfg, viper=True):
        """cfg: a dict from validate(); viper=False forces the plain loops."""
        self._cfg = cfg
        n = self.n = cfg['n']
        nch = self.nch = cfg['channels']
        self.hz = cfg['hz']
        self.rate_hz = cfg['hz'] * n        # the HAL samples every channel at this rate
        self.shift = cfg['bias_shift']
        ich = self._ich = cfg['i_ch']
        vch = self._vch = cfg['v_ch']
        nct = self.nct = len(ich)
        v = self.viper = viper and _L._prep_v is not None
        self._prep = _L._prep_v if v else _L._prep_py
        self._sumsq = _L._sumsq_v if v else _L._sumsq_py
        self._sumvi = _L._sumvi_v if v else _L._sumvi_py
        self._zc = _L._zc_v if v else _L._zc_py
        self._prm = array('i', [0] * 5)
        self._out = array('i', [0, 0])
        self.bias_q8 = array('i', [32768 << 8] * nch)    # per channel, 1/256 count
        self.rms_ma = array('i', [0] * nct)
        self.p_w = array('i', [0] * nct)
        self.total_w = self.v_mv = 0
        self.cycles = 0                     # blocks processed (saturates at SAT)
        # Period: nominal until measured; believed within n * (1 +- 1/16).
        nom = n << 8
        self.period_q8 = nom
        self.freq_mhz = self.hz * 1000
        self._plim = (nom - (n << 4), nom + (n << 4))
        self._pacc = -1                     # period_q8 * 8 (IIR), < 0: none measured yet
        self._zok = False                   # the last crossing ended a believable period
        self._z = array('i', [0, 0, -nom << 2, -nom << 2])     # _zc state, see ct_loops
        self._zch = vch[0] if vch[0] >= 0 else ich[0]
        for k in range(nct - 1, -1, -1):
            if vch[k] >= 0:
                self._zch = vch[k]          # the first voltage channel, if any
        self._vk = -1                       # v_mv: the voltage of the first CT with one
        self._ph = array('i', [0] * nct)    # voltage delay, 1/256 sample (< 0: current)
        # History per channel: the longest period's extra samples and the one
        # weighted by the fraction, plus the phase delay (1/16 longer off nominal).
        ext = n // 16 + 2
        hist = self._hist = [ext] * nch
        for k in range(nct):
            if vch[k] >= 0:
                self._vk = k if self._vk < 0 else self._vk
                t = abs(cfg['phase_cdeg'][k]) * n          # < 2**24
                d = (t // 36000) * 256 + ((t % 36000) * 256 + 18000) // 36000
                self._ph[k] = d if cfg['phase_cdeg'][k] >= 0 else -d
                late = vch[k] if self._ph[k] >= 0 else ich[k]
                hist[late] = max(hist[late], ext + ((d + (d >> 4)) >> 8) + 2)
        self._w = [array('h', [0] * (hist[c] + n)) if c in ich or c in vch or c == self._zch
                   else None for c in range(nch)]
        kv = _fdiv(_fmul(_norm(cfg['mv_fs'], 0), _norm(cfg['v_gain_ppm'], 0)), _norm(1000000, 0))
        self._kv = (kv[0], kv[1] + 14)      # mV per count: 16384 counts = mv_fs
        self._k = array('i', [0] * (6 * nct))
        self._offset = array('i', [0] * nct)
        for k in range(nct):
            self.set_cal(k, cfg['ma_fs'][k], cfg['gain_ppm'][k], cfg['offset_ma'][k])

    def set_cal(self, k, ma_fs, gain_ppm, offset_ma):
        """(Re)calibrate CT k with validated values (allocates: not per block)."""
        mega = _norm(1000000, 0)
        ki = _fdiv(_fmul(_norm(ma_fs, 0), _norm(gain_ppm, 0)), mega)
        ki = (ki[0], ki[1] + 14)                        # mA per count
        kp = _fdiv(_fmul(ki, self._kv), mega)           # W per count squared
        vn = self._cfg['v_nom_mv']
        ks = _fdiv(_fmul(ki, _norm(vn, 0)), mega) if vn else (0, 0)
        # Per CT: mA, W (v * i), W (apparent) as mantissa, exponent; RMS
        # comes in 1/16 count, hence + 4 on the two that scale it.
        for j, x in enumerate((ki[0], ki[1] + 4, kp[0], kp[1], ks[0], ks[1] + 4)):
            self._k[6 * k + j] = x
        self._offset[k] = offset_ma

    def _track(self):
        """Rising zero crossings of the tracking channel: update period_q8."""
        n = self.n
        z = self._z
        p = self._prm
        nom = n << 8
        lim = -nom << 2                     # a crossing over 4 cycles ago is forgotten
        z[2] = lim if z[2] - nom < lim else z[2] - nom
        z[3] = lim if z[3] - nom < lim else z[3] - nom
        c = self._zch
        p[0] = self._hist[c]
        p[1] = n
        p[2] = ZC_HYST
        self._zc(self._w[c], p, z)
        if not z[1]:
            return
        # A period counts when it and the one before it were the only one
        # in their block and in range: a glitch spoils two, not the average.
        t = z[3] - z[2]
        ok = z[1] == 1 and self._plim[0] <= t <= self._plim[1]
        was = self._zok
        self._zok = ok
        if ok and was:
            a = self._pacc
            a = t << 3 if a < 0 else a + t - ((a + 4) >> 3)
            self._pacc = a
            per = self.period_q8 = (a + 4) >> 3
            self.freq_mhz = self.hz * 1000 + (self.hz * 1000 * (nom - per)) // per

    def _sq(self, c, m, per):
        """Mean of x * x of channel c over the last period (m whole samples)."""
        w = self._w[c]
        p = self._prm
        o = self._out
        p[0] = j = self._hist[c] + self.n - m
        p[1] = m
        self._sumsq(w, p, o)
        x = w[j - 1]
        return _wmean(o[0], o[1], m, x * x, per)

    def process(self, blk):
        """One mains cycle: blk is array('H') of n * channels samples. Returns total_w."""
        n = self.n
        p = self._prm
        o = self._out
        K = self._k
        W = self._w
        hist = self._hist
        bias = self.bias_q8
        first = not self.cycles
        for c in range(self.nch):
            w = W[c]
            if w is None:
                continue
            p[0] = c
            p[1] = self.nch
            p[2] = n
            p[3] = hist[c]
            p[4] = b = bias[c]
            s = self._prep(blk, w, p)
            mean = ((s // n) << 8) + (((s % n) << 8) // n)     # 1/256 count, < 2**24
            # A slow IIR on the block mean follows bias drift, not the signal.
            b = mean if first else b + ((mean - b) >> self.shift)
            b = 256 if b < 256 else (65534 << 8 if b > 65534 << 8 else b)
            bias[c] = b
            if first:                       # first block: redo it on its own mean
                p[4] = b
                self._prep(blk, w, p)
        self._track()
        per = self.period_q8
        m = per >> 8
        dn = per - (n << 8)                 # |dn| <= 16 n: phase delays scale with it
        total = 0
        for k in range(self.nct):
            c = self._ich[k]
            r = _rms_q4(self._sq(c, m, per))
            j = 6 * k
            ma = _scale(r, K[j], K[j + 1]) + self._offset[k]
            self.rms_ma[k] = ma if ma > 0 else 0
            vc = self._vch[k]
            if vc < 0:                      # no voltage: apparent power at v_nom_mv
                pw = _scale(r, K[j + 4], K[j + 5])
            else:
                a = c                       # b is the delayed one: the voltage,
                b = vc                      # or for a negative phase the current
                d = self._ph[k]
                if d < 0:
                    a = vc
                    b = c
                    d = -d
                d += (d * dn) // (n << 8)   # degrees at the measured frequency
                p[0] = hist[a] + n - m - 1
                p[1] = hist[b] + n - m - 1 - (d >> 8)
                p[2] = 1
                p[3] = d & 255
                self._sumvi(W[a], W[b], p, o)       # the sample weighted by the fraction
                q = (o[0] << 15) + o[1]
                p[0] += 1
                p[1] += 1
                p[2] = m
                self._sumvi(W[a], W[b], p, o)
                pw = _scale(_wmean(o[0], o[1], m, q, per), K[j + 2], K[j + 3])
                if k == self._vk:
                    r = _rms_q4(self._sq(vc, m, per))
                    self.v_mv = _scale(r, self._kv[0], self._kv[1] + 4)
            pw = LIMIT_W if pw > LIMIT_W else (-LIMIT_W if pw < -LIMIT_W else pw)
            self.p_w[k] = pw
            total += pw
        self.total_w = total
        if self.cycles < SAT:               # a counter, not a clock: saturates in range
            self.cycles += 1
        return total


class Disagreement:
    """CT power (fast) vs meter power (slow reference), W, |x| <= 1 GW.

    The difference ct - meter is low-pass filtered (IIR over 2**shift
    updates, so a load step the meter has not caught up with passes); alarm
    rises when |diff| > on_w for hold_ms (a reversed, miswired or
    miscalibrated CT) and falls when |diff| < off_w for hold_ms."""

    def __init__(self, on_w, off_w, hold_ms, shift=2):
        self.on = on_w >> _Q
        self.off = off_w >> _Q
        self.hold_ms = hold_ms
        self.shift = shift
        self.diff_w = 0                 # filtered ct - meter, W
        self.alarm = False
        self._d = 0
        self._ms = 0                    # how long the opposite state has held

    def update(self, ct_w, meter_w, dt_ms):
        """dt_ms >= 0 since the last update. Returns the alarm flag."""
        d = (ct_w >> _Q) - (meter_w >> _Q)      # |d| < 2**28
        d = _DMAX if d > _DMAX else (-_DMAX if d < -_DMAX else d)
        f = self._d
        f += (d - f) >> self.shift              # |d - f| < 2**28
        self._d = f
        self.diff_w = f << _Q
        a = -f if f < 0 else f
        if (a < self.off) if self.alarm else (a > self.on):
            self._ms += dt_ms if dt_ms < self.hold_ms else self.hold_ms
            if self._ms >= self.hold_ms:
                self.alarm = not self.alarm
                self._ms = 0
        else:
            self._ms = 0
        return self.alarm
