# The predictor's fast channel: the load's iteration rhythm (period
# 0.3..5 s). The load, decimated to one sample per tick, goes into a ring.
# An exponentially averaged magnitude difference function D[L] =
# avg |x[t] - x[t-L]| over the lags of the search range (AMDF: a periodic
# load has a deep minimum at its period) gives the period P: the first
# local minimum below 3/8 of the mean of D, else the deepest one.
# Confidence = 1 - D[P] / mean(D), per mille. While the load barely moves
# against its usual swing (a checkpoint), D is updated 8x slower, so the
# rhythm survives the pause.
#
# Each tick it looks one period back over the coming window [now + 1 tick,
# now + lead], widened by early ticks beyond it and late ticks before it
# (pmax, pmin), and at this phase +-1 tick (pnow, pnow_hi): the predictor
# (cabinet/predict.py) turns these into the feed-forward.
#
# Guards. (1) Rhythm check: if the load now differs from one period ago
# (+-1 tick) by more than mean(D) (a checkpoint began, a job crashed), the
# channel is suspended for a period (susp). (2) Scoring: every prediction
# is scored when its window has passed, whether acted on or not (shadow
# mode): hit = min(predicted, realized rise), false = what was predicted
# but did not come; err_pm = avg false / avg (hit + false). The channel is
# active only while err_pm <= max_err_pm (reopens below 3/4 of it) and
# confidence >= min_conf_pm: a load without rhythm gets false alarms, the
# guard closes, and the engine is purely reactive again. (A missed rise
# costs nothing against the reactive engine; a false one dips the grid and
# spends battery, so only false alarms close the guard.)
#
# Pure integer code, no allocation per tick; units as the predictor's (8 W).
from array import array

from cabinet.amdf import bits, first_dip, pm
from cabinet.hints import LIM, Q

STRIDE = 2                   # each tick updates every other lag of the AMDF, in turn
K_AMDF = 6                   # AMDF averaging: 2**6 updates, one every STRIDE ticks
                             # (128 ticks, 6.4 s at 50 ms)
K_GUARD = 7                  # guard averaging: 128 ticks
THR_SHIFT = 2                # rises below mean(AMDF) / 4 are not acted on
MAX_LAGS = 256               # period search: at most this many lags (ticks)


def _ceil_div(a, b):
    return (a + b - 1) // b


class FastRhythm:
    """cfg: the pred_* keys of cabinet/predict.py (period range, early,
    late, min_rise, min_conf, max_err); tick: ms per sample; lead_ms: how
    far ahead a rise counts; on: keep a history at all (off: a few bytes)."""

    def __init__(self, cfg, tick, lead_ms, on):
        g = cfg.get
        self.tick_ms = tick
        self.lmin = max(2, g('pred_period_min_ms', 300) // tick)
        self.lmax = max(self.lmin + 1, g('pred_period_max_ms', 5000) // tick)
        if self.lmax > self.lmin + MAX_LAGS - 1:
            self.lmax = self.lmin + MAX_LAGS - 1      # bounds RAM and the work per tick
        self.h = max(1, _ceil_div(lead_ms, tick))
        self.m = _ceil_div(g('pred_late_ms', 0), tick)
        self.me = _ceil_div(g('pred_early_ms', 50), tick)
        self.min_rise = g('pred_min_rise_w', 250000) >> Q
        self.min_conf = g('pred_min_conf_pm', 500)
        self.max_err = g('pred_max_err_pm', 300)
        # The ring: two periods of history plus the scoring window.
        w = self.h + self.me
        on = 1 if on else 0
        self.nf = nf = (2 * self.lmax + 2 * (w + self.m) + 4) * on + 1 - on
        self.x = array('i', [0] * nf)
        self.nl = nl = (self.lmax - self.lmin + 1) * on + 1 - on
        self.d = array('i', [0] * nl)
        self.dsh = bits(nl // 4)            # keeps sum(D >> dsh) < 2**30
        self.pr = array('i', [0] * (w + 1))          # predicted rise per tick, for scoring
        self.w = w
        self.reset()

    def reset(self):
        for i in range(self.nf):
            self.x[i] = 0
        for i in range(self.nl):
            self.d[i] = 0
        for i in range(self.w + 1):
            self.pr[i] = 0
        self.i = 0                # newest sample
        self.filled = 0           # samples so far (saturates)
        self.period = 0           # period in ticks (0: none)
        self.tot = 0              # sum of d[j] >> dsh
        self.par = 0              # which half of the lags this tick updates
        self.mean = 0             # mean of the AMDF: the usual swing (units)
        self.conf_pm = 0
        self.err_pm = 1000
        self.e_hit = 0
        self.e_false = 0
        self.scored = 0
        self.active = False       # the channel may drive the feed-forward
        self.pmax = 0             # one period ago, max / min over the coming window (units)
        self.pmin = 0
        self.pnow = 0             # one period ago, at this phase (+-1 tick: min, max)
        self.pnow_hi = 0
        self.thr = self.min_rise  # smallest rise acted on (units)
        self.susp = 0             # ticks left with predictions suspended (mismatch)
        self.mismatches = 0
        self.quiet = False        # last tick moved little against the usual swing

    def period_ms(self):
        return self.period * self.tick_ms

    def tick(self, v):
        """One sample (units): ring, AMDF, period, the window ahead, scoring."""
        nf = self.nf
        i = self.i + 1
        if i >= nf:
            i = 0
        self.i = i
        x = self.x
        x[i] = v
        if self.filled < nf:
            self.filled += 1
        filled = self.filled
        # AMDF update (every STRIDE-th lag per tick, in turn), once the ring
        # holds the longest lag.
        if filled > self.lmax:
            d = self.d
            sh = K_AMDF + 3 if self.quiet else K_AMDF
            dsh = self.dsh
            tot = self.tot        # sum of D >> dsh over all lags, kept up to date
            cur = 0
            k = i - self.lmin - self.par          # x[k]: the sample one lag back
            if k < 0:
                k += nf
            nl = self.nl
            j = self.par
            while j < nl:                        # (range() with a variable step allocates)
                e = v - x[k]
                if e < 0:
                    e = -e
                cur += e >> dsh
                dj = d[j]
                old = dj >> dsh
                if dj == 0:
                    dj = e + 1                   # first pair at this lag: start there
                else:
                    dj += (e - dj) >> sh
                d[j] = dj
                tot += (dj >> dsh) - old
                j += STRIDE
                k -= STRIDE
                if k < 0:
                    k += nf
            self.tot = tot
            self.par += 1
            if self.par >= STRIDE:
                self.par = 0
            self.quiet = cur * STRIDE < tot >> 2     # these lags against all of them
        self._score(i, v)
        if filled <= 2 * self.lmax:
            self.period = 0
        else:
            self._pick(tot)
        self._predict(i)

    def _pick(self, tot):
        d = self.d
        mean = (tot // self.nl) << self.dsh
        self.mean = mean
        t = mean >> THR_SHIFT
        self.thr = t if t > self.min_rise else self.min_rise
        best = first_dip(d, self.nl, mean)
        if best < 0:
            self.period = 0
            self.conf_pm = 0
            return
        self.period = self.lmin + best
        c = 1000 - pm(d[best], mean)
        self.conf_pm = c if c > 0 else 0

    def _predict(self, i):
        p = self.period
        w = self.w
        pr = self.pr
        rise = 0
        if self.susp > 0:
            self.susp -= 1
        if p > w:
            nf = self.nf
            x = self.x
            v = x[i]
            # Does the load still follow its rhythm? Now against one period
            # ago, +-1 tick for jitter; a miss by more than the usual swing
            # (a checkpoint began, a job crashed) suspends the prediction
            # for a period, so the old rhythm is not pre-armed for.
            k = i - p - 1
            if k < 0:
                k += nf
            e = LIM
            nlo = LIM
            nhi = -LIM
            for _ in range(3):
                g = x[k]
                if g < nlo:
                    nlo = g
                if g > nhi:
                    nhi = g
                f = v - g
                if f < 0:
                    f = -f
                if f < e:
                    e = f
                k += 1
                if k >= nf:
                    k = 0
            self.pnow = nlo
            self.pnow_hi = nhi
            if e > self.mean:
                self.susp = p
                self.mismatches = (self.mismatches + 1) & 0x3FFFFFFF
            hi = -LIM
            lo = LIM
            k = i - p + 1 - self.m
            if k < 0:
                k += nf
            for _ in range(self.h + self.m + self.me):
                f = x[k]
                if f > hi:
                    hi = f
                if f < lo:
                    lo = f
                k += 1
                if k >= nf:
                    k = 0
            self.pmax = hi
            self.pmin = lo
            rise = hi - v
            if hi - self.pnow < rise:
                rise = hi - self.pnow
            if rise < self.thr or self.susp:
                rise = 0
        else:
            self.pmax = self.pmin = self.pnow = self.pnow_hi = self.x[i]
        # Remember the prediction for scoring w ticks later.
        for j in range(w):
            pr[j] = pr[j + 1]
        pr[w] = rise
        ok = (self.period > w and self.conf_pm >= self.min_conf and self.scored >= 2 * self.lmax)
        if self.active:
            self.active = ok and self.err_pm <= self.max_err
        else:
            self.active = ok and self.err_pm <= self.max_err * 3 >> 2

    def _score(self, i, v):
        # The prediction made w ticks ago against what came since.
        w = self.w
        if self.filled <= w + 1:
            return
        nf = self.nf
        x = self.x
        k = i - w
        if k < 0:
            k += nf
        base = x[k]
        hi = -LIM
        for _ in range(w):
            k += 1
            if k >= nf:
                k = 0
            if x[k] > hi:
                hi = x[k]
        real = hi - base
        if real < self.min_rise:
            real = 0
        pred = self.pr[1]                       # made w ticks ago
        hit = pred if pred < real else real
        false = pred - real if pred > real else 0
        self.e_hit += (hit - self.e_hit) >> K_GUARD
        self.e_false += (false - self.e_false) >> K_GUARD
        if self.scored < 0x3FFFFFF:
            self.scored += 1
        if self.e_hit + self.e_false > 0:
            self.err_pm = pm(self.e_false, self.e_hit + self.e_false)
