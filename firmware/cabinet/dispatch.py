# Dispatch engine: the battery setpoint for one cycle. Pure integer code, no
# I/O, no allocation per step; runs unchanged on CPython and MicroPython.
#
# Signs: grid > 0 import, battery > 0 discharge. SoC in 0.01 % (0..10000).
#
# Feed-forward, no PID: load = grid + battery is what the site draws without
# the battery. Stages narrow an allowed battery window [lo, hi], safety first;
# a later stage never widens it, and where a stage conflicts with the window
# so far, the earlier stage wins. The preferred setpoint (cap, valley
# recharge, arbitrage) is clipped to the final window; .reason names the
# stage that bound it.
#
# 31-bit safety: powers are handled in units of 8 W (Q = 3), so site powers up
# to 1 GW are < 2**27 units and every sum or difference of up to 8 of them
# stays a small int (|x| < 2**30) on 32-bit MicroPython. Per-cycle ramp steps
# use rate // 1000 * dt + rate % 1000 * dt // 1000 with dt <= 1000 ms.
#
# Feed-forward (pre-arming, optional ff_w of step(), default 0 = purely
# reactive): a load change expected within the reaction delay (from
# cabinet.predict: the load's rhythm, job hints). ff_w > 0, a rise: the
# preference (cap, recharge) and the grid ramp stage plan for the load as it
# will be, load + ff, so the PCS is already there when the step lands (the
# grid dips by ff meanwhile). ff_w < 0, a drop, only with ramp-down
# smoothing: the ramp stage starts holding the grid before the drop. Safety
# stages (PCS/BMS limits, SoC bands, export, DR, the cap for the real load)
# keep using the measured load and win over it; ff is first cut so the
# planned grid stays inside them: while a rise is expected the real grid is
# kept >= pred_min_grid_w (and the export limit), a drop never pushes it
# over the cap. The ramp state follows the planned grid, so a prediction that
# does not come true is undone at once, like a load pulse.
#
# Under grid ramp smoothing the real grid still dips (a rise) or bulges (a
# drop) by ff while a pre-arm waits for its step, however smooth the planned
# grid: an 11 MW dip for 200 ms moves the 1 s mean grid by 2.2 MW. So ff is
# cut by a guard on the 1 s blocks of the real grid (cabinet.ffguard): no
# block that could hold the dip may differ from its neighbours by more than
# pred_ff_ramp_pm / 1000 x the tighter ramp limit x 1 s (ff_ramp_lim), counting
# whatever else moved them (the plan's ramp, unforeseen steps). Off without
# ramp limits; pred_ff_ramp_pm 0 turns the feed-forward off under them.
# The guard assumes the rise may not come, so a pre-arm whose step is late
# loses its room and is taken back on the cycle before the step: the dip is
# already in its block and the step lands on a battery swinging back.
# pred_ff_hold keeps a pre-arm the guard allowed (never above what is asked
# now) while the rise is still expected: more of each step is covered, and
# the 1 s ramp may pass the guard's limit (README, Prediction).
from cabinet import ffguard, tou

Q = 3                    # internal power unit: 1 << Q watts
NO_LIMIT = 0x3FFFFFFF    # largest small int: "no limit" (W or units)
LOAD_MAX = (1 << 28) - 1  # |planned load| in units (the measured load is below this)
MAX_DT_MS = 1000         # longer gaps are treated as 1 s (keeps ramp steps in range)

IDLE = 0          # nothing to do
CAP = 1           # discharging to hold grid at the cap
RECHARGE = 2      # charging in a valley, grid held at the recharge threshold
PCS_LIMIT = 3     # the PCS/BMS limit bound the setpoint
SOC_LIMIT = 4     # a SoC band bound it
FAULT = 5         # PCS/BMS fault: window [0, 0]
NO_EXPORT = 6     # the export limit bound it
DISARMED = 7      # set by the controller: dispatch off, or no valid data
DR_LIMIT = 8      # a demand-response import limit bound it
RAMP = 9          # grid ramp smoothing (ramp rates, ramp-down delay, floor)
SLEW = 10         # the PCS setpoint slew limit bound it
ARBITRAGE = 11    # a time-of-use charge/discharge target
OUTAGE = 12       # grid lost: the grid-forming PCS carries the site

REASONS = ('idle', 'cap', 'recharge', 'pcs_limit', 'soc_limit', 'fault', 'no_export',
           'disarmed', 'dr_limit', 'ramp', 'slew', 'arbitrage', 'outage')

ST_PCS_FAULT = 1  # status bits given to step()
ST_OUTAGE = 2


def _split_rate(w_per_s):
    u = w_per_s >> Q
    return u // 1000, u % 1000


def _per_cycle(hi, lo, dt):
    return hi * dt + lo * dt // 1000


def ff_ramp_lim(cfg):
    """How far 1 s grid means may differ from their neighbours for the
    feed-forward to act (see the header): units (8 W) x s, -1 without ramp
    limits."""
    g = cfg.get
    rate = g('ramp_up_w_per_s', 0)
    if not rate or 0 < g('ramp_down_w_per_s', 0) < rate:
        rate = g('ramp_down_w_per_s', 0)
    return (rate >> Q) // 1000 * cfg['pred_ff_ramp_pm'] if rate else -1


def spread(area, ms):
    # area (units x s) spread over ms > 0: units, at most LOAD_MAX.
    if area <= 0:
        return 0
    q = area // ms
    return LOAD_MAX if q >= LOAD_MAX // 1000 else q * 1000 + area % ms * 1000 // ms


class Engine:
    def __init__(self, cfg):
        """cfg: a dict validated by cabinet.config (the checks live there)."""
        self.tou = tou.Schedule(cfg, Q)
        self.reserve = cfg['reserve_cpct']
        self.soc_min = cfg['soc_min_cpct']
        self.soc_max = cfg['soc_max_cpct']
        self.hyst = cfg['soc_hyst_cpct']
        self.taper = cfg['soc_taper_cpct']
        # The export stage aims export_margin_w inside the limit: regulating at
        # exactly 0 W would export on every second measurement.
        self.export = (cfg['export_limit_w'] - cfg['export_margin_w']) >> Q
        self.recharge_max = cfg['recharge_max_w'] >> Q
        self.floor = cfg['grid_floor_w'] >> Q
        self.up_hi, self.up_lo = _split_rate(cfg['ramp_up_w_per_s'])
        self.dn_hi, self.dn_lo = _split_rate(cfg['ramp_down_w_per_s'])
        self.ramp_up = cfg['ramp_up_w_per_s'] > 0
        self.ramp_dn = cfg['ramp_down_w_per_s'] > 0
        self.dn_delay_ms = cfg['ramp_down_delay_ms']
        self.sl_hi, self.sl_lo = _split_rate(cfg['slew_w_per_s'])
        self.slew = cfg['slew_w_per_s'] > 0
        # Keys added with cabinet.predict (pred_ff_ramp_pm has its default in
        # config.SPEC only, so ff_ramp_lim needs a validated config).
        self.min_grid = cfg.get('pred_min_grid_w', 0) >> Q
        self.ff_hold = cfg.get('pred_ff_hold', False)
        lim = ff_ramp_lim(cfg)
        self.ff_off = lim == 0            # no feed-forward at all
        self.guard = ffguard.Guard(lim) if lim > 0 else None
        self.ff = 0               # feed-forward used last step (units, after cuts)
        self.reason = IDLE
        self._started = False
        self._grid = 0            # grid commanded last cycle (units)
        self._batt = 0            # setpoint last cycle (units)
        self._down_ms = 0         # how long the grid has wanted to fall, before this cycle
        self._dis_blocked = False     # SoC at the outage reserve
        self._cha_blocked = False     # SoC at the maximum
        self._everyday_blocked = False  # SoC at the everyday minimum

    def reset_ramp(self):
        """Restart the grid ramp from the next reading (after an outage)."""
        self._started = False

    def charge_blocked(self):
        return self._cha_blocked

    def _narrow(self, lo, hi, reason):
        # Intersect [lo, hi] into the window; where they are disjoint the
        # earlier (safer) window wins, and so does its reason.
        if lo > self._lo:
            if lo <= self._hi:
                self._lo = lo
                self._lo_why = reason
            else:
                self._lo = self._hi
                self._lo_why = self._hi_why
        if hi < self._hi:
            if hi >= self._lo:
                self._hi = hi
                self._hi_why = reason
            else:
                self._hi = self._lo
                self._hi_why = self._lo_why

    def step(self, grid_w, battery_w, soc_cpct, charge_max_w, discharge_max_w,
             status, minute_of_day, dr_limit_w, dt_ms, ff_w=0, ff_sure_w=0):
        """One cycle. Inputs |x| <= 1 GW; returns the setpoint in W (multiple of 8).

        ff_w: expected load change within the reaction delay (W, > 0 rise,
        < 0 drop), from cabinet.predict; 0 = reactive only. ff_sure_w: the
        part of it that was announced (job hints, Predictor.hint_w), which
        the ramp guard treats as certain."""
        load = (grid_w >> Q) + (battery_w >> Q)
        dt = dt_ms if dt_ms < MAX_DT_MS else MAX_DT_MS
        if dt < 0:
            dt = 0
        if not self._started:
            self._started = True
            self._grid = load - (battery_w >> Q)
            self._batt = battery_w >> Q
            if self.guard:
                self.guard.fill(self._grid)
        s = self.tou
        s.select(minute_of_day)
        # 1. PCS/BMS limits and faults.
        self._lo = -(charge_max_w >> Q)
        self._hi = discharge_max_w >> Q
        self._lo_why = self._hi_why = PCS_LIMIT
        if status & ST_PCS_FAULT:
            self._lo = self._hi = 0
            self._lo_why = self._hi_why = FAULT
        # 2. SoC bands, with hysteresis so a boundary does not chatter.
        outage = status & ST_OUTAGE
        floor_soc = 0 if outage else self.reserve
        if soc_cpct <= floor_soc:
            self._dis_blocked = True
        elif soc_cpct >= floor_soc + self.hyst:
            self._dis_blocked = False
        if soc_cpct >= self.soc_max:
            self._cha_blocked = True
        elif soc_cpct <= self.soc_max - self.hyst:
            self._cha_blocked = False
        if soc_cpct <= self.soc_min:
            self._everyday_blocked = True
        elif soc_cpct >= self.soc_min + self.hyst:
            self._everyday_blocked = False
        # Within soc_taper_cpct of a limit the allowed power shrinks linearly
        # to 0, so the grid ramp limits can still be kept as a band closes.
        lo2 = 0 if self._cha_blocked else -NO_LIMIT
        hi2 = 0 if self._dis_blocked else NO_LIMIT
        tp = self.taper
        if tp:
            room = self.soc_max - soc_cpct
            if 0 < room < tp:
                lo2 = -((charge_max_w >> Q) // tp * room)
            room = soc_cpct - floor_soc
            if 0 < room < tp and not self._dis_blocked:
                hi2 = (discharge_max_w >> Q) // tp * room
        self._narrow(lo2, hi2, SOC_LIMIT)
        if outage:
            return self._finish(0, OUTAGE, load)
        # 3. Export limit: grid >= -export.
        self._narrow(-NO_LIMIT, load + self.export, NO_EXPORT)
        # 4. Demand-response import limit: grid <= dr.
        if dr_limit_w < NO_LIMIT:
            self._narrow(load - (dr_limit_w >> Q), NO_LIMIT, DR_LIMIT)
        # 5. Peak cap (grid <= cap); no charging from the grid where forbidden.
        self._narrow(load - s.cap, NO_LIMIT, CAP)
        if not s.grid_charge:
            self._narrow(0, NO_LIMIT, RECHARGE)
        # Feed-forward: lv is the load planned for (see the header).
        lv = load
        lp = load
        ff = 0
        if self.guard:
            self.guard.add(grid_w >> Q, self._grid, dt)
        if ff_w and not self.ff_off:
            ff = self._cut_ff(ff_w >> Q, load, dt)
            if self.guard and ff and dt:
                want = ff
                ff = self._guard_ff(ff, ff_sure_w >> Q, dt)
                if self.ff_hold and want > 0 and self.ff > ff:
                    ff = self.ff if self.ff < want else want
            lv = load + ff
            if ff > 0:
                lp = lv
        self.ff = ff
        # The preference: discharge above the cap, recharge in valleys,
        # a time-of-use arbitrage target.
        pref = 0
        why = IDLE
        if lp > s.cap:
            pref = lp - s.cap
            why = CAP
        elif lp < s.recharge and s.grid_charge:
            pref = lp - s.recharge
            if pref < -self.recharge_max:
                pref = -self.recharge_max
            why = RECHARGE
        if s.arb > 0:
            if s.arb > pref and not self._everyday_blocked:
                pref = s.arb          # discharge for arbitrage, not below the everyday minimum
                why = ARBITRAGE
        elif s.arb < pref and why != CAP and s.grid_charge:
            pref = s.arb              # charge for arbitrage (the cap bound still holds)
            why = ARBITRAGE
        # 6. Grid ramp smoothing: the grid may rise by up*dt and fall by
        # down*dt per cycle (not at all during the ramp-down delay), and not
        # below the floor, while the battery has headroom.
        falling = lv - pref < self._grid
        held = falling and self._down_ms < self.dn_delay_ms
        self._down_ms = self._down_ms + dt if falling else 0
        lo6 = -NO_LIMIT
        hi6 = NO_LIMIT
        if self.ramp_up:
            lo6 = lv - self._grid - _per_cycle(self.up_hi, self.up_lo, dt)
            if self._everyday_blocked and lo6 > 0:
                lo6 = 0               # below the everyday minimum only the cap may discharge
        if self.ramp_dn:
            fall = 0 if held else _per_cycle(self.dn_hi, self.dn_lo, dt)
            hi6 = lv - self._grid + fall
        if self.floor and load - self.floor < hi6:
            hi6 = load - self.floor
        self._narrow(lo6, hi6, RAMP)
        # 7. PCS setpoint slew limit.
        if self.slew:
            step = _per_cycle(self.sl_hi, self.sl_lo, dt)
            self._narrow(self._batt - step, self._batt + step, SLEW)
        return self._finish(pref, why, lv)

    def _cut_ff(self, ff, load, dt):
        # A rise first bounds the real grid (load - battery) below by
        # min_grid. Under ramp-up smoothing it is then cut to what the
        # battery can cover (window top) with the planned grid rising no
        # faster than allowed, so a rise the battery cannot pre-arm does not
        # lift the planned grid ahead of the load. A drop may raise the real
        # grid from the planned one (self._grid) up to the window's bottom
        # (the cap, DR), and only under ramp-down smoothing. Units,
        # |ff| < 2**28.
        if ff > 0:
            if self.min_grid > 0:
                self._narrow(-NO_LIMIT, load - self.min_grid, NO_EXPORT)
            if self.ramp_up:
                room = self._grid + _per_cycle(self.up_hi, self.up_lo, dt) - load + self._hi
                if ff > room:
                    ff = room if room > 0 else 0
        else:
            if not self.ramp_dn:
                return 0
            room = load - self._lo - self._grid
            if -ff > room:
                ff = -room
            if ff > 0:
                ff = 0
        if load + ff > LOAD_MAX:
            ff = LOAD_MAX - load
        elif load + ff < -LOAD_MAX:
            ff = -LOAD_MAX - load
        return ff

    def _guard_ff(self, ff, sure, dt):
        # Cut ff to the guard's room for this cycle; the announced part
        # (sure, same sign) to the room an announced step has.
        g = self.guard
        room = spread(g.room(self._grid, ff > 0), dt)
        a = ff if ff > 0 else -ff
        s = sure if ff > 0 else -sure
        if s > a:
            s = a
        if a > room:
            a = room
        if s > 0:
            room = spread(g.room_sure, dt)
            if s > room:
                s = room
            if s > a:
                a = s
        return a if ff > 0 else -a

    def _finish(self, pref, why, load):
        # load: the planned load (the measured one plus any feed-forward).
        if pref < self._lo:
            pref = self._lo
            why = self._lo_why
        elif pref > self._hi:
            pref = self._hi
            why = self._hi_why
        self._batt = pref
        self._grid = load - pref
        self.reason = why
        return pref << Q


def from_config(cfg):
    return Engine(cfg)
