# Ultra-short-term load prediction: the load's own rhythm and the cluster's
# job events, turned into a feed-forward for the dispatch engine
# (Engine.step(..., ff_w)). Pure integer code, no I/O, no allocation per
# update (preallocated array('i') rings); runs unchanged on CPython and
# MicroPython; every intermediate stays below 2**30 in magnitude
# (tests/test_dispatch_range.py).
#
# Fast channel (iteration rhythm, period 0.3..5 s). The load, decimated to
# one sample per tick_ms, goes into a ring. An exponentially averaged
# magnitude difference function D[L] = avg |x[t] - x[t-L]| over the lags of
# the search range (AMDF: a periodic load has a deep minimum at its period)
# gives the period P: the first local minimum below 3/8 of the mean of D,
# else the deepest one. Confidence = 1 - D[P] / mean(D), per mille. While the
# load barely moves against its usual swing (a checkpoint), D is updated 8x
# slower, so the rhythm survives the pause.
#
# Prediction: the load one period ago over the coming window [now + 1 tick,
# now + lead], widened by early_ms beyond it (a step that comes early: the
# period jitters) and late_ms before it (one that comes late). rise = that
# maximum - the load now, but no more than
# the rise seen one period ago (its max - the lowest load around this phase
# then), so a level offset of another job is not taken for a step; rises
# below max(min_rise, mean(D)/4) are ignored. Drops alike; they are fed
# forward only with pred_drops (the engine uses them under ramp-down
# smoothing only; in the texas simulation they added little and made the
# 1 s grid ramp worse, so they are off by default).
#
# Guards. (1) Rhythm check: if the load now differs from one period ago
# (+-1 tick) by more than mean(D) (a checkpoint began, a job crashed), the
# fast channel is suspended for a period. (2) Scoring: every prediction is
# scored when its window has passed, whether acted on or not (shadow mode):
# hit = min(predicted, realized rise), false = what was predicted but did
# not come; err_pm = avg false / avg (hit + false). The fast channel acts
# only while err_pm <= max_err_pm (reopens below 3/4 of it) and confidence
# >= min_conf_pm: a load without rhythm gets false alarms, the guard
# closes, and the engine is purely reactive again. (A missed rise costs
# nothing against the reactive engine; a false one dips the grid and spends
# battery, so only false alarms close the guard.)
#
# Slow channel (checkpoint rhythm, period 10..600 s): cabinet.slowrhythm,
# fed every fast tick; it reports, it does not drive the feed-forward.
#
# Hints: announced job events (cabinet.hints; job start, checkpoint
# start/end, job end, maintenance). Announced steps add to the rhythm's
# prediction; a large announced drop also mutes the fast channel (the
# rhythm stops there).
#
# Units: powers in W at the API, 8 W inside (as the engine); times in ms.
from array import array

from cabinet.amdf import bits, first_dip, pm
from cabinet.hints import LIM, Q, Hints
from cabinet.slowrhythm import SlowRhythm

STRIDE = 2                   # each tick updates every other lag of the AMDF, in turn
K_AMDF = 6                   # AMDF averaging: 2**6 updates, one every STRIDE ticks
                             # (128 ticks, 6.4 s at 50 ms)
K_GUARD = 7                  # guard averaging: 128 ticks
THR_SHIFT = 2                # rises below mean(AMDF) / 4 are not acted on

CATCHUP = 4                  # most ticks one cycle runs: gaps up to 200 ms at 50 ms keep time
MAX_LAGS = 256               # fast period search: at most this many lags (ticks)


def _ceil_div(a, b):
    return (a + b - 1) // b


class Predictor:
    """Per-cycle feed-forward for Engine.step.

    cfg: the site config; the pred_* keys are optional (defaults below):
    pred_enabled, pred_tick_ms, pred_period_min_ms, pred_period_max_ms,
    pred_lead_ms, pred_early_ms, pred_late_ms, pred_min_rise_w,
    pred_min_conf_pm, pred_max_err_pm, pred_drops, pred_slow_tick_ms,
    pred_slow_period_min_s, pred_slow_period_max_s.
    hints: a Hints table (the command channel's), or None for a new one.
    Everything is allocated here; update() allocates nothing. Disabled, it
    keeps no history (a few hundred bytes) and only runs the hints, so a
    controller can always have one."""

    def __init__(self, cfg, hints=None):
        g = cfg.get
        self.enabled = g('pred_enabled', False)
        self.tick_ms = tick = g('pred_tick_ms', 50)
        self.lead_ms = g('pred_lead_ms', 75)
        self.lmin = max(2, g('pred_period_min_ms', 300) // tick)
        self.lmax = max(self.lmin + 1, g('pred_period_max_ms', 5000) // tick)
        if self.lmax > self.lmin + MAX_LAGS - 1:
            self.lmax = self.lmin + MAX_LAGS - 1      # bounds RAM and the work per tick
        self.h = max(1, _ceil_div(self.lead_ms, tick))
        self.m = _ceil_div(g('pred_late_ms', 0), tick)
        self.me = _ceil_div(g('pred_early_ms', 50), tick)
        self.min_rise = g('pred_min_rise_w', 250000) >> Q
        self.min_conf = g('pred_min_conf_pm', 500)
        self.max_err = g('pred_max_err_pm', 300)
        self.drops = g('pred_drops', False)          # also feed expected drops forward
        self.hints = hints if hints is not None else Hints()
        # Fast ring: two periods of history plus the scoring window.
        w = self.h + self.me
        on = 1 if self.enabled else 0
        self.nf = nf = (2 * self.lmax + 2 * (w + self.m) + 4) * on + 1 - on
        self.x = array('i', [0] * nf)
        self.nl = nl = (self.lmax - self.lmin + 1) * on + 1 - on
        self.d = array('i', [0] * nl)
        self.dsh = bits(nl // 4)            # keeps sum(D >> dsh) < 2**30
        self.pr = array('i', [0] * (w + 1))          # predicted rise per tick, for scoring
        self.w = w
        self.slow = SlowRhythm(cfg, tick, self.enabled)
        self.reset()

    def reset(self):
        for i in range(self.nf):
            self.x[i] = 0
        for i in range(self.nl):
            self.d[i] = 0
        for i in range(self.w + 1):
            self.pr[i] = 0
        self.i = 0                # newest fast sample
        self.filled = 0           # fast samples so far (saturates)
        self.acc_ms = 0
        self.acc = 0              # running mean of the cycles in this tick (units)
        self.acc_n = 0
        self.period = 0           # fast period in ticks (0: none)
        self.tot = 0              # sum of d[j] >> dsh
        self.par = 0              # which half of the lags this tick updates
        self.mean = 0             # mean of the AMDF: the usual swing (units)
        self.conf_pm = 0
        self.err_pm = 1000
        self.e_hit = 0
        self.e_false = 0
        self.scored = 0
        self.active = False       # the fast channel drives the feed-forward
        self.pmax = 0             # predicted max / min load over the lead (units)
        self.pmin = 0
        self.pnow = 0             # the load one period ago, at this phase (+-1 tick: min, max)
        self.pnow_hi = 0
        self.thr = self.min_rise  # smallest rise acted on (units)
        self.susp = 0             # ticks left with predictions suspended (mismatch)
        self._drops_seen = self.hints.drops_seen
        self.mismatches = 0
        self.quiet = False        # last tick moved little against the usual swing
        self.slow.reset()
        self.rise_w = 0           # outputs, W
        self.drop_w = 0
        self.hint_w = 0
        self.fresh = 0            # announced steps that came within the last period (units)
        self.fresh_ms = 0         # until the rhythm's history has them

    # --- per cycle ---

    def update(self, load_w, dt_ms):
        """One control cycle: the site load (grid + battery, W) and the time
        since the last cycle. Returns the feed-forward for Engine.step in W:
        > 0 a rise expected within lead_ms, < 0 a drop, 0 nothing."""
        x = load_w >> Q
        if x > LIM:
            x = LIM
        elif x < -LIM:
            x = -LIM
        if dt_ms < 0:
            dt_ms = 0
        elif dt_ms > 60000:
            dt_ms = 60000
        rise = 0
        drop = 0
        if self.enabled:
            self.acc_n += 1
            self.acc += (x - self.acc) // self.acc_n
            self._clock(dt_ms, self.acc)
        h = self.hints
        rhythm = self.active and self.susp == 0   # (active: enabled, a period found)
        hr = h.step(dt_ms, x, self.lead_ms, rhythm, self.pnow, self.pnow_hi)
        hd = h.drop
        # An announced step that came is not in the rhythm's history until
        # a period later: until then the rhythm looks from the load without
        # it (xe), so a job that just started is not taken away from the
        # next iteration's rise (nor one that ended added to it).
        if h.came:
            f = self.fresh + h.came
            self.fresh = LIM if f > LIM else -LIM if f < -LIM else f
            self.fresh_ms = (self.period + self.w + 1) * self.tick_ms
        elif self.fresh:
            self.fresh_ms -= dt_ms
            if self.fresh_ms <= 0:
                self.fresh = 0
        if rhythm:
            # The rise one period ago over the coming window, but no more
            # than what lifts the load from where it is now.
            xe = x - self.fresh
            hi = self.pmax
            rise = hi - xe
            if hi - self.pnow < rise:
                rise = hi - self.pnow
            if rise < self.thr:
                rise = 0
            lo = self.pmin
            drop = xe - lo
            if self.pnow_hi - lo < drop:
                drop = self.pnow_hi - lo
            if drop < self.thr:
                drop = 0
        if hd and hd >= self.mean:
            rise = 0                  # a large announced drop (checkpoint, job end) comes first
        if h.drops_seen != self._drops_seen:
            # It came: if it was large, the rhythm of the last period does
            # not hold for the next one.
            self._drops_seen = h.drops_seen
            if h.last_drop >= self.mean:
                self.susp = self.period + self.w + 1
        self.hint_w = (hr - hd) << Q
        # Announced steps add to the rhythm's: a job that starts now is not
        # in the history of the last period (and the rhythm of one that
        # paused for a checkpoint has been suspended).
        rise += hr
        drop += hd
        if rise > LIM:
            rise = LIM
        if drop > LIM:
            drop = LIM
        self.rise_w = rise << Q
        self.drop_w = drop << Q
        if rise:
            return rise << Q
        if self.drops:
            return -(drop << Q)
        return 0

    def skip(self, dt_ms):
        """A cycle without a valid load (meter lost, SAFE): the hint clocks
        run on, the history holds its last sample so time stays aligned
        (the rhythm check suspends the channel when data returns)."""
        if dt_ms < 0:
            dt_ms = 0
        elif dt_ms > 60000:
            dt_ms = 60000
        self.hints.age(dt_ms)
        self.rise_w = self.drop_w = self.hint_w = self.fresh = 0
        if self.enabled:
            self._clock(dt_ms, self.x[self.i])
        return 0

    def _clock(self, dt_ms, v):
        # The ticks dt_ms completes: v in the last one, the last sample held
        # in any the loop missed (a stalled or overlong cycle), so the ring
        # stays on the time axis periods are measured in; without them a
        # stall every few seconds made a 900 ms rhythm look like 750 ms.
        # At most CATCHUP ticks per cycle bound the CPU; a longer gap loses
        # the rest (the rhythm check suspends, the AMDF relearns).
        t = self.tick_ms
        a = self.acc_ms + dt_ms                 # <= 60000 + tick_ms
        if a < t:
            self.acc_ms = a
            return
        n = a // t
        self.acc_ms = a - n * t
        if n > CATCHUP:
            n = CATCHUP
        while n > 1:
            self._tick(self.x[self.i])
            n -= 1
        self._tick(v)
        self.acc_n = 0

    def _tick(self, v):
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
        self.slow.tick(v)

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

    # --- figures for telemetry and status (W and ms) ---

    def period_ms(self):
        return self.period * self.tick_ms
