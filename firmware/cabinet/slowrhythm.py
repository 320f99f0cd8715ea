# The predictor's slow channel: the checkpoint rhythm (period 10..600 s).
# The same AMDF as the fast channel (cabinet/fastrhythm.py) on a second ring
# of slow-tick means, fed one fast tick at a time and spreading its work
# over the ticks (a few lags each). It reports the checkpoint period, its
# confidence and the time to the largest rise of the last period (its
# phase); it does not drive the feed-forward (its timing is a slow tick
# wide: job hints give the exact moment). No allocation per tick.
from array import array

from cabinet.amdf import bits, first_dip, pm

SLOW_LAGS_PER_TICK = 4       # AMDF work per fast tick
K_SLOW = 6                   # AMDF averaging: 64 updates (~4 min with the defaults)
MAX_SLOW_LAGS = 600          # period search: at most this many lags (slow ticks)


class SlowRhythm:
    """cfg: pred_slow_tick_ms, pred_slow_period_min_s, pred_slow_period_max_s
    (optional); tick: the fast tick (ms); on: keep a history at all."""

    def __init__(self, cfg, tick, on):
        on = 1 if on else 0
        g = cfg.get
        stick = g('pred_slow_tick_ms', 2000)
        self.stick = stick // tick if stick >= tick else 1   # in fast ticks
        self.stick_ms = st = self.stick * tick
        self.smin = max(2, g('pred_slow_period_min_s', 10) * 1000 // st)
        self.smax = max(self.smin + 1, g('pred_slow_period_max_s', 600) * 1000 // st)
        if self.smax > self.smin + MAX_SLOW_LAGS - 1:
            self.smax = self.smin + MAX_SLOW_LAGS - 1      # bounds RAM and the work per tick
        self.ns = ns = (2 * self.smax + 2) * on + 1 - on
        self.s = array('i', [0] * ns)
        self.snl = snl = (self.smax - self.smin + 1) * on + 1 - on
        self.sd = array('i', [0] * snl)
        self.sdsh = bits(snl // 4)           # keeps sum(sd >> sdsh) < 2**30
        self.reset()

    def reset(self):
        for i in range(self.ns):
            self.s[i] = 0
        for i in range(self.snl):
            self.sd[i] = 0
        self.si = 0               # newest slow sample
        self.sfilled = 0
        self.s_n = 0              # fast ticks in this slow tick
        self.s_acc = 0
        self.s_next = 0           # next lag to update
        self.period = 0           # in slow ticks (0: none)
        self.conf_pm = 0
        self.s_rise_at = 0        # slow tick count at which that rise is due again
        self.s_count = 0          # slow ticks so far

    def tick(self, v):
        # Decimate into the slow ring; spread the slow AMDF over fast ticks
        # (SLOW_LAGS_PER_TICK lags each), lags up to half the history so far.
        self.s_n += 1
        self.s_acc += (v - self.s_acc) // self.s_n
        s = self.s
        ns = self.ns
        if self.s_n >= self.stick:
            si = self.si + 1
            if si >= ns:
                si = 0
            self.si = si
            s[si] = self.s_acc
            self.s_n = 0
            self.s_count += 1
            if self.s_count >= 0x20000000:       # ~34 years of 2 s ticks; keep phase
                self.s_count -= 0x10000000
                self.s_rise_at -= 0x10000000
            if self.sfilled < ns:
                self.sfilled += 1
        n = (self.sfilled >> 1) - self.smin      # usable lags
        if n > self.snl:
            n = self.snl
        if n < 2:
            return
        si = self.si
        cur = s[si]
        sd = self.sd
        j = self.s_next
        for _ in range(SLOW_LAGS_PER_TICK):
            if j >= n:
                j = 0
                self._pick(n)
            k = si - (self.smin + j)
            if k < 0:
                k += ns
            e = cur - s[k]
            if e < 0:
                e = -e
            if sd[j] == 0:
                sd[j] = e + 1
            else:
                sd[j] += (e - sd[j]) >> K_SLOW
            j += 1
        self.s_next = j

    def _pick(self, n):
        sd = self.sd
        tot = 0
        for j in range(n):
            tot += sd[j] >> self.sdsh
        mean = (tot // n) << self.sdsh
        best = first_dip(sd, n, mean)
        if best < 0:
            self.period = 0
            self.conf_pm = 0
            return
        p = self.smin + best
        self.period = p
        c = 1000 - pm(sd[best], mean)
        self.conf_pm = c if c > 0 else 0
        # Phase: where, one period ago, the load rose most within a period.
        s = self.s
        ns = self.ns
        k = self.si - p
        if k < 0:
            k += ns
        best_rise = 0
        at = 0
        prev = s[k]
        for j in range(1, p):
            k += 1
            if k >= ns:
                k = 0
            r = s[k] - prev
            if r > best_rise:
                best_rise = r
                at = j
            prev = s[k]
        self.s_rise_at = self.s_count + at

    def period_ms(self):
        return self.period * self.stick_ms

    def rise_in_ms(self):
        """Time to the next checkpoint-scale rise (the largest rise of the
        last slow period, a period on); -1 while no slow period is known."""
        p = self.period
        if p <= 0:
            return -1
        left = self.s_rise_at - self.s_count
        while left < 0:
            left += p
        return left * self.stick_ms
