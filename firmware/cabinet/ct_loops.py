# The per-sample loops of CT sensing (cabinet/ct.py), twice: plain Python
# (CPython; the reference) and @micropython.viper (MicroPython). Both give
# identical results (tests/firmware/test_ct.py compares them on MicroPython).
# p: array('i') of parameters, out: array('i') of results; nothing allocates.
#
# Samples are 15-bit (|x| <= 32767), so any x * y is < 2**30; sums are kept
# exactly in two halves, hi = sum(q >> 15), lo = sum(q & 32767), each within
# +-2**24 for up to 272 samples. The viper loops do the same arithmetic in
# machine words (32 bits on MCUs, 64 on x64); as nothing reaches 2**30,
# neither wraps. Viper's ptr16/ptr32 loads are unsigned (ptr32 zero-extends
# on x64), so samples live in array('h') and are sign-extended by hand:
# (u ^ 0x8000) - 0x8000.
try:
    import micropython
except ImportError:         # CPython
    micropython = None


def _prep_py(blk, w, p):
    """w[0:h] = previous block's last h samples; w[h:h+n] = channel p[0]
    (stride p[1]) minus bias p[4]; n, h = p[2], p[3]. Returns sum(s) < 2**24."""
    n = p[2]
    h = p[3]
    for j in range(h):
        w[j] = w[n + j]
    k = p[0]
    step = p[1]
    bias = p[4]
    s = 0
    for j in range(h, h + n):
        v = blk[k]
        s += v
        w[j] = ((v << 8) - bias) >> 9
        k += step
    return s


def _sumsq_py(w, p, out):
    """out[0] * 2**15 + out[1] = sum of x * x over w[p[0]:p[0] + p[1]]."""
    hi = lo = 0
    for j in range(p[0], p[0] + p[1]):
        q = w[j] * w[j]
        hi += q >> 15
        lo += q & 32767
    out[0] = hi
    out[1] = lo


def _sumvi_py(wa, wb, p, out):
    """The same for sum of a[k] * b'[k], k < p[2], a = wa[p[0]:], b' = wb[p[1]:]
    delayed by a further p[3] / 256 sample (linear interpolation, rounded)."""
    a = p[0]
    b = p[1]
    f = p[3]
    g = 256 - f
    hi = lo = 0
    for k in range(p[2]):
        q = wa[a + k] * ((g * wb[b + k] + f * wb[b + k - 1] + 128) >> 8)
        hi += q >> 15
        lo += q & 32767
    out[0] = hi
    out[1] = lo


def _zc_py(w, p, z):
    """Rising zero crossings in w[p[0]:p[0] + p[1]], re-armed only after the
    signal went below -p[2] (noise near zero counts once). Per crossing:
    z[2] = z[3], z[3] = its position in 1/256 sample from w[p[0]] (linear
    interpolation). z[1] = how many; z[0] (armed) carries over between calls."""
    h = p[0]
    hy = -p[2]
    arm = z[0]
    cnt = 0
    x0 = w[h - 1]
    for j in range(h, h + p[1]):
        x = w[j]
        if x < hy:
            arm = 1
        elif arm and x >= 0:        # armed: every sample since was < 0, x0 too
            z[2] = z[3]
            z[3] = ((j - h - 1) << 8) + ((-x0) << 8) // (x - x0)
            cnt += 1
            arm = 0
        x0 = x
    z[0] = arm
    z[1] = cnt


_prep_v = _sumsq_v = _sumvi_v = _zc_v = None
if micropython is not None:
    @micropython.viper
    def _prep_v(blk, w, p) -> int:
        b = ptr16(blk)
        o = ptr16(w)
        q = ptr32(p)
        n = q[2]
        h = q[3]
        for j in range(h):
            o[j] = o[n + j]
        k = q[0]
        step = q[1]
        bias = q[4]
        s = 0
        for j in range(h, h + n):
            v = int(b[k])
            s += v
            o[j] = ((v << 8) - bias) >> 9       # low 16 bits: two's complement int16
            k += step
        return s

    @micropython.viper
    def _sumsq_v(w, p, out):
        x = ptr16(w)
        q = ptr32(p)
        o = ptr32(out)
        hi = 0
        lo = 0
        for j in range(q[0], q[0] + q[1]):
            v = (int(x[j]) ^ 0x8000) - 0x8000
            s = v * v
            hi += s >> 15
            lo += s & 32767
        o[0] = hi
        o[1] = lo

    @micropython.viper
    def _sumvi_v(wa, wb, p, out):
        xa = ptr16(wa)
        xb = ptr16(wb)
        q = ptr32(p)
        o = ptr32(out)
        a = q[0]
        b = q[1]
        f = q[3]
        g = 256 - f
        hi = 0
        lo = 0
        for k in range(q[2]):
            u = (int(xa[a + k]) ^ 0x8000) - 0x8000
            v0 = (int(xb[b + k]) ^ 0x8000) - 0x8000
            v1 = (int(xb[b + k - 1]) ^ 0x8000) - 0x8000
            s = u * ((g * v0 + f * v1 + 128) >> 8)
            hi += s >> 15
            lo += s & 32767
        o[0] = hi
        o[1] = lo

    @micropython.viper
    def _zc_v(w, p, z):
        x = ptr16(w)
        q = ptr32(p)
        o = ptr32(z)
        h = q[0]
        hy = 0 - q[2]
        arm = o[0]
        cnt = 0
        x0 = (int(x[h - 1]) ^ 0x8000) - 0x8000
        for j in range(h, h + q[1]):
            v = (int(x[j]) ^ 0x8000) - 0x8000
            if v < hy:
                arm = 1
            elif arm and v >= 0:
                o[2] = o[3]
                o[3] = ((j - h - 1) << 8) + ((0 - x0) << 8) // (v - x0)
                cnt += 1
                arm = 0
            x0 = v
        o[0] = arm
        o[1] = cnt
