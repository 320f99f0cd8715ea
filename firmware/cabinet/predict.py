# Ultra-short-term load prediction: the load's own rhythm and the cluster's
# job events, turned into a feed-forward for the dispatch engine
# (Engine.step(..., ff_w)). Pure integer code, no I/O, no allocation per
# update; runs unchanged on CPython and MicroPython; every intermediate
# stays below 2**30 in magnitude (tests/test_dispatch_range.py).
#
# Fast channel (iteration rhythm, period 0.3..5 s): cabinet.fastrhythm,
# the load decimated to one sample per tick_ms, its period by AMDF, the
# load one period ago over the coming window, and the guards (rhythm
# check, false-alarm scoring) that decide whether it may act (active).
#
# Prediction: rise = the maximum one period ago over the coming window
# (widened by early_ms and late_ms: the period jitters) - the load now,
# but no more than the rise seen one period ago (its max - the lowest load
# around this phase then), so a level offset of another job is not taken
# for a step; rises below max(min_rise, mean(D)/4) are ignored. Drops
# alike; they are fed forward only with pred_drops (the engine uses them
# under ramp-down smoothing only; in the texas simulation they added
# little and made the 1 s grid ramp worse, so they are off by default).
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
from cabinet.fastrhythm import FastRhythm
from cabinet.hints import LIM, Q, Hints
from cabinet.slowrhythm import SlowRhythm

CATCHUP = 4                  # most ticks one cycle runs: gaps up to 200 ms at 50 ms keep time


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
    controller can always have one. The channels' state: .fast (period,
    conf_pm, err_pm, active, susp), .slow."""

    def __init__(self, cfg, hints=None):
        g = cfg.get
        self.enabled = g('pred_enabled', False)
        self.tick_ms = tick = g('pred_tick_ms', 50)
        self.lead_ms = g('pred_lead_ms', 75)
        self.drops = g('pred_drops', False)          # also feed expected drops forward
        self.hints = hints if hints is not None else Hints()
        self.fast = FastRhythm(cfg, tick, self.lead_ms, self.enabled)
        self.slow = SlowRhythm(cfg, tick, self.enabled)
        self.reset()

    def reset(self):
        self.fast.reset()
        self.slow.reset()
        self.acc_ms = 0
        self.acc = 0              # running mean of the cycles in this tick (units)
        self.acc_n = 0
        self._drops_seen = self.hints.drops_seen
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
        f = self.fast
        rhythm = f.active and f.susp == 0         # (active: enabled, a period found)
        hr = h.step(dt_ms, x, self.lead_ms, rhythm, f.pnow, f.pnow_hi)
        hd = h.drop
        # An announced step that came is not in the rhythm's history until
        # a period later: until then the rhythm looks from the load without
        # it (xe), so a job that just started is not taken away from the
        # next iteration's rise (nor one that ended added to it).
        if h.came:
            c = self.fresh + h.came
            self.fresh = LIM if c > LIM else -LIM if c < -LIM else c
            self.fresh_ms = (f.period + f.w + 1) * self.tick_ms
        elif self.fresh:
            self.fresh_ms -= dt_ms
            if self.fresh_ms <= 0:
                self.fresh = 0
        if rhythm:
            # The rise one period ago over the coming window, but no more
            # than what lifts the load from where it is now.
            xe = x - self.fresh
            hi = f.pmax
            rise = hi - xe
            if hi - f.pnow < rise:
                rise = hi - f.pnow
            if rise < f.thr:
                rise = 0
            lo = f.pmin
            drop = xe - lo
            if f.pnow_hi - lo < drop:
                drop = f.pnow_hi - lo
            if drop < f.thr:
                drop = 0
        if hd and hd >= f.mean:
            rise = 0                  # a large announced drop (checkpoint, job end) comes first
        if h.drops_seen != self._drops_seen:
            # It came: if it was large, the rhythm of the last period does
            # not hold for the next one.
            self._drops_seen = h.drops_seen
            if h.last_drop >= f.mean:
                f.susp = f.period + f.w + 1
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
            self._clock(dt_ms, self.fast.x[self.fast.i])
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
        f = self.fast
        while n > 1:
            self._tick(f.x[f.i])
            n -= 1
        self._tick(v)
        self.acc_n = 0

    def _tick(self, v):
        self.fast.tick(v)
        self.slow.tick(v)

    # --- figures for telemetry and status (W and ms) ---

    def period_ms(self):
        return self.fast.period_ms()
