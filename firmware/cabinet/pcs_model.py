# Battery power at the moment the CTs saw, for dispatch on CT power
# (cabinet/sensing.py).
#
# CTs give the grid power of the last mains cycle; the PCS's own battery
# power register is refreshed only every so often (tens of ms) and read once
# a cycle, so while the battery ramps it lags. load = fresh grid + old
# battery then comes out low by what the battery has moved since, and
# dispatch takes back power it had just (rightly) commanded: the grid stays
# over the cap for extra cycles. So, with CTs, the battery power is
# estimated from what we commanded and how the PCS follows (its data sheet:
# a ramp limit, then a first-order lag), anchored to the PCS's readings by
# an offset. A reading is of some moment in the last cycle or two, so it is
# compared with the model only once the model has been still for two cycles
# (when that moment does not matter): a PCS that does not follow the model
# (limits, derating, a fault) pulls the estimate to its readings within a
# few cycles of settling, and a ramp does not bias the offset.
#
# Integer, 31-bit safe (tests/test_ct_range.py), no allocation; W in 8 W
# units inside (|x| <= 2**27 for sites up to 1 GW).
_Q = 3
STEP_MS = 5                 # model sub-step: the lag is integrated per 5 ms
_MAX_STEPS = 40             # after a longer gap (200 ms) the model jumps to its target
_LIM = (1 << 27) - 1


def _clamp(x):
    return _LIM if x > _LIM else (-_LIM if x < -_LIM else x)


class PcsModel:
    def __init__(self, lag_ms, ramp_w_per_s, window_ms=0, back_ms=0, shift=1):
        """lag_ms: first-order lag (0: none); ramp_w_per_s: ramp limit (0:
        none). The estimate is the mean over window_ms ending back_ms before
        the end of each update (the CT block's span and its age when read:
        a grid averaged over a mains cycle pairs with a battery averaged over
        the same cycle). shift: the offset to the readings filters over
        2**shift cycles."""
        self.win_ms = window_ms if window_ms < 25 else 25
        self.back_ms = back_ms
        # Per sub-step h the lag closes a fraction a / 4096 of the gap: the
        # trapezoid rule, 2 h / (2 tau + h), within 2 % of 1 - exp(-h / tau)
        # for tau >= 2 h (a shorter lag is all but done within a sub-step).
        a = (8192 * STEP_MS) // (2 * lag_ms + STEP_MS)
        self.a = 4096 if a > 4096 else a
        r = (ramp_w_per_s // 1000 * STEP_MS) >> _Q
        self.ramp = _LIM if not ramp_w_per_s else (1 if r < 1 else (r if r < _LIM else _LIM))
        self.shift = shift
        self.ref = 0                # the PCS's ramp-limited reference, 8 W
        self.out = 0                # its modelled power, 8 W
        self.moved = 0              # |change| of the model over the last two cycles, 8 W
        self.off = 0                # readings minus model (filtered), 8 W
        self.started = False
        self.estimate_w = 0

    def update(self, setpoint_w, measured_w, charge_max_w, discharge_max_w, dt_ms):
        """Advance by dt_ms with the setpoint in force since the last call,
        fold in the PCS's latest reading; returns the battery power, W (over
        the window, see __init__)."""
        sp = _clamp(setpoint_w >> _Q)
        hi = _clamp(discharge_max_w >> _Q)
        lo = -_clamp(charge_max_w >> _Q)
        sp = hi if sp > hi else (lo if sp < lo else sp)
        meas = _clamp(measured_w >> _Q)
        if not self.started:
            self.started = True
            self.ref = self.out = meas
        steps = (dt_ms + STEP_MS // 2) // STEP_MS if dt_ms > 0 else 0
        prev = self.out
        tot = cnt = 0
        if steps > _MAX_STEPS:
            self.ref = self.out = sp
        else:
            ref = self.ref
            out = self.out
            a = self.a
            r = self.ramp
            w1 = steps * STEP_MS - self.back_ms        # sub-steps ending in (w0, w1]
            w0 = w1 - self.win_ms
            t = 0
            for _ in range(steps):
                d = sp - ref
                ref += r if d > r else (-r if d < -r else d)
                d = ref - out                           # |d| < 2**28
                out += (d >> 12) * a + (((d & 4095) * a) >> 12)
                t += STEP_MS
                if w0 < t <= w1:                        # at most 5: |tot| < 2**30
                    tot += out
                    cnt += 1
            self.ref = ref
            self.out = out
        out = self.out
        mean = tot // cnt if cnt else out               # |out| < 2**27
        d = out - prev                                  # |d| < 2**28
        d = -d if d < 0 else d
        still = self.moved + d <= 128 + ((out if out > 0 else -out) >> 4)    # 1 kW + 6 %
        self.moved = d
        if still:
            self.off += (_clamp(meas - out) - self.off) >> self.shift
        est = _clamp(mean + self.off)
        self.estimate_w = est << _Q
        return self.estimate_w
