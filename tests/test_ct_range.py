"""Proof that CT sensing (cabinet/ct.py, ct_loops.py) stays in 31-bit small-int range.

Same method as test_dispatch_range.py: both modules' source is rewritten so
that every arithmetic result (binary, augmented, unary minus) is checked
against -2**30 <= x < 2**30, then the plain-Python path (the one CPython
runs; the viper twin computes the same values, see test_ct.py) is driven
with extreme configurations and ADC blocks: rails, square waves, full-scale
alternation, noise, bias steps, sines up to 7 % off the nominal frequency
(period tracking over its whole range); all block sizes and channel counts; phase,
gain, offset and scale limits; and the Disagreement tracker at +-1 GW.
"""
import math
import random
import sys
from array import array

import pytest

from test_dispatch_range import RangeError, checked


@pytest.fixture(scope="module")
def ct():
    import cabinet
    loops, code = checked("ct_loops")
    exec(code, loops.__dict__)
    assert loops.micropython is None and loops._prep_v is None    # the plain path
    with pytest.MonkeyPatch.context() as mp:        # ct.py imports the checked loops
        mp.setitem(sys.modules, "cabinet.ct_loops", loops)
        mp.setattr(cabinet, "ct_loops", loops, raising=False)
        mod, code = checked("ct")
        exec(code, mod.__dict__)
    assert mod._L is loops
    return mod


def extreme(rng, lo, hi):
    v = rng.choice([lo, hi, lo + 1, hi - 1, (lo + hi) // 2, rng.randint(lo, hi)])
    return min(max(v, lo), hi)


def random_config(ct, rng):
    nch = rng.randint(1, 8)
    nct = rng.randint(1, min(4, nch))
    chans = rng.sample(range(nch), nch)
    ich = chans[:nct]
    free = chans[nct:]
    vch = [rng.choice(free + [-1]) if free else -1 for _ in range(nct)]
    ma_fs = [extreme(rng, 100, 1 << 29) for _ in range(nct)]
    over = {"hz": rng.choice([50, 60]), "n": extreme(rng, 8, 256), "channels": nch,
            "bias_shift": extreme(rng, 0, 10), "mv_fs": extreme(rng, 1000, 1 << 29),
            "v_gain_ppm": extreme(rng, 500000, 2000000), "v_nom_mv": extreme(rng, 0, 1 << 29),
            "i_ch": ich, "v_ch": vch, "ma_fs": ma_fs,
            "gain_ppm": [extreme(rng, 500000, 2000000) for _ in range(nct)],
            "offset_ma": [extreme(rng, -(f // 16), f // 16) for f in ma_fs],
            "phase_cdeg": [extreme(rng, -35999, 35999) for _ in range(nct)]}
    return ct.validate(over)


def random_block(rng, n, nch, kind):
    size = n * nch
    if kind == 0:
        return array("H", [rng.choice([0, 65535]) for _ in range(size)])
    if kind == 1:               # full-scale alternation, every channel in step
        return array("H", [65535 if (j // nch) % 2 else 0 for j in range(size)])
    if kind == 2:               # a rail, then a step to the other rail (bias steps)
        v = rng.choice([0, 65535])
        return array("H", [v if j < size // 2 else 65535 - v for j in range(size)])
    if kind == 3:               # square wave around a random bias
        b, a = rng.randint(0, 65535), rng.randint(0, 32768)
        return array("H", [min(65535, max(0, b + (a if (j // nch) % 8 < 4 else -a)))
                           for j in range(size)])
    return array("H", [rng.randint(0, 65535) for _ in range(size)])


class Sine:
    """Blocks of a sine per channel at a random frequency around nominal (the
    tracked period spans its range, fractions included), amplitude up to
    beyond the rails, continuing from block to block."""

    def __init__(self, rng, n, nch):
        self.n, self.nch, self.t = n, nch, 0
        self.step = 2 * math.pi / n * rng.uniform(0.93, 1.07)
        self.chans = [(rng.randint(0, 65535), rng.choice([rng.uniform(0, 60000), 32768, 60000]),
                       rng.uniform(0, 6.3)) for _ in range(nch)]

    def next(self):
        b = array("H", [0] * (self.n * self.nch))
        for j in range(self.n):
            th = self.t * self.step
            self.t += 1
            for c, (bias, amp, ph) in enumerate(self.chans):
                b[j * self.nch + c] = min(65535, max(0, int(bias + amp * math.sin(th + ph))))
        return b


def test_ct_stays_in_range(ct):
    rng = random.Random(20261128)
    blocks = tracked = 0
    for _ in range(150):
        cfg = random_config(ct, rng)
        m = ct.Ct(cfg)
        sine = Sine(rng, cfg["n"], cfg["channels"]) if rng.random() < 0.6 else None
        for i in range(8):
            m.process(sine.next() if sine else
                      random_block(rng, cfg["n"], cfg["channels"], rng.randint(0, 5)))
            blocks += 1
            assert all(abs(w) <= ct.LIMIT_W for w in m.p_w)
            assert all(0 <= a < 1 << 30 for a in m.rms_ma)
        tracked += m.period_q8 != m.n << 8
        k = rng.randrange(m.nct)
        f = extreme(rng, 100, 1 << 29)
        m.set_cal(k, f, extreme(rng, 500000, 2000000), extreme(rng, -(f // 16), f // 16))
        m.process(random_block(rng, cfg["n"], cfg["channels"], 1))
        m.cycles = ct.SAT - 1                   # the block counter saturates in range
        m.process(random_block(rng, cfg["n"], cfg["channels"], 4))
        m.process(random_block(rng, cfg["n"], cfg["channels"], 4))
        assert m.cycles == ct.SAT
    assert blocks == 1200
    assert tracked >= 40, tracked           # the period tracking path was exercised


def test_disagreement_stays_in_range(ct):
    rng = random.Random(7)
    gw = 1_000_000_000
    for _ in range(200):
        on = extreme(rng, 0, gw)
        d = ct.Disagreement(on, extreme(rng, 0, on), extreme(rng, 0, 600_000), rng.randint(0, 8))
        for _ in range(50):
            d.update(extreme(rng, -gw, gw), extreme(rng, -gw, gw), extreme(rng, 0, 3_600_000))
            assert abs(d.diff_w) < 1 << 30


def test_pcs_model_stays_in_range():
    # The battery estimate (cabinet/pcs_model.py) at +-1 GW, every lag,
    # ramp, window and step length, and readings that disagree wildly.
    pm, code = checked("pcs_model")
    exec(code, pm.__dict__)
    rng = random.Random(5)
    gw = 1_000_000_000
    for _ in range(300):
        m = pm.PcsModel(extreme(rng, 0, 5000), extreme(rng, 0, (1 << 30) - 1),
                        extreme(rng, 0, 40), extreme(rng, 0, 30), rng.randint(0, 8))
        for _ in range(30):
            e = m.update(extreme(rng, -gw, gw), extreme(rng, -gw, gw), extreme(rng, 0, gw),
                         extreme(rng, 0, gw), extreme(rng, 0, 3_600_000))
            assert abs(e) < 1 << 30


def test_the_check_itself_catches_overflow(ct):
    # Samples beyond the 15-bit range the module guarantees must be caught,
    # or the tests above would prove nothing.
    out = array("i", [0, 0])
    with pytest.raises(RangeError):
        ct._L._sumsq_py([40000] * 8, array("i", [0, 8]), out)
    with pytest.raises(RangeError):
        ct._mean(1 << 20, 0, 1)
