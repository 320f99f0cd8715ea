# The control loop: read meter and PCS, decide, write the PCS, emit one
# telemetry frame, every period_ms. After init nothing here allocates: all
# buffers and indices are prepared in __init__ (a HIL test runs the loop under
# micropython.heap_lock() to prove it).
#
# Its parts, mixed into one object so the loop reads plain attributes:
# cabinet/sensing.py reads the meter, PCS and CTs (last good values),
# cabinet/failsafe.py judges them (INIT/RUN/DEGRADED/SAFE), cabinet/site_io.py
# runs the PV inverter, genset and outage logic around cabinet/site.py; this
# module wires them up, dispatches, writes the PCS, sends telemetry and events,
# applies configs and runs the commands between cycles.
import gc
import time
import micropython
from cabinet import dispatch, events, site, telemetry
from cabinet.failsafe import DEGRADED, PCS_FAULT, PCS_NOT_FOLLOWING, RUN, Failsafe
from cabinet.sensing import Sensing
from cabinet.site_io import SiteIo

TELEMETRY = ('seq', 'uptime_ms', 'grid_w', 'battery_w', 'setpoint_w', 'soc_cpct', 'load_w',
             'reason', 'state', 'cycle_us', 'late_cycles', 'meter_errors', 'pcs_errors',
             'charge_max_w', 'discharge_max_w', 'pcs_alarms', 'cause', 'transitions',
             'site_flags', 'pv_w', 'genset_w', 'voltage_dv', 'freq_mhz', 'ct_w', 'ct_alarm',
             'ff_w', 'hint_w', 'pred_period_ms', 'pred_flags')
EVENT_SITE = events.SITE
FF_MAX = (1 << 27) - 1        # telemetry's ff_w clamp, in the engine's 8 W units
EVENT_SHARE = events.SHARE_LAPSED


# The mixins' methods work on this object's attributes; a method found in a
# base class is a lookup, not an allocation (the heap-locked loop test runs it).
class Controller(Sensing, Failsafe, SiteIo):
    def __init__(self, board, cfg, root=''):
        self.board = board
        self.root = root                  # maps/ and telemetry.json live here
        self.cfg = cfg
        self.period_ms = cfg['period_ms']
        self.engine = dispatch.from_config(cfg)
        # One of N cabinets on a site meter (cabinet/fleet.py): its code only
        # where a share is configured or a coordinator sends one.
        self.fleet = None
        if cfg['fleet_share_pm'] < 1000:
            self.fleet_on()
        master = self._sensing_setup(board, cfg, root)
        self._site_setup(master, cfg, root)
        gc.collect()                      # the parsed map files, before the next loads
        self.site = site.Site(cfg)
        self.hints = self.predictor = None
        self._pred_setup(cfg)
        self.voltage_dv = self.site.v_lo + 1     # until the meter says otherwise: in window
        self.freq_mhz = self.site.f_lo + 1
        schema = telemetry.load_schema(root + 'telemetry.json')
        self.version = schema['version']
        self.frame = telemetry.Frame(schema)
        f = self.frame
        self.t = [f.index(n) for n in TELEMETRY]
        self.t_cap = f.index('cap_w')
        f.put(self.t_cap, cfg['cap_w'])
        # Transitions and site changes happen inside the loop: their event
        # frames are fixed and patched in place like the cycle frame.
        self.tframe = telemetry.Frame(events.transition_schema(self.version))
        self.tframe.put(3, events.TRANSITION)
        self.sframe = telemetry.Frame(events.site_schema(self.version))
        self.sframe.put(3, events.SITE)
        schema = None
        gc.collect()                      # the parsed telemetry.json
        self._ct_setup(cfg.get('ct'))
        self.armed = cfg['armed']
        self.config_source = 'file'
        self.commands = None                  # set by main: the console command channel
        self.locked = False                   # the heap is locked (test mode)
        self.reboot_requested = False
        # Wall-clock minute for time-of-use, kept by ticks between clock sets.
        t = time.localtime()
        self.ms_of_day = ((t[3] * 60 + t[4]) * 60 + t[5]) * 1000
        self.dr_limit_w = dispatch.NO_LIMIT   # demand-response import limit (W)
        self.dr_left_ms = 0
        self.setpoint = 0
        self._failsafe_setup()
        self.seq = 0
        self.heartbeat = 0
        self.uptime_ms = 0
        self.cycle_us = 0
        self.late_cycles = 0

    def _fixed_event(self, f, a, b, c):
        """An event from inside the loop: fields 4..6 of its fixed frame
        (events.fixed_schema) patched in place, no allocation."""
        self.seq = (self.seq + 1) & 0x3FFFFFFF
        f.put(1, self.seq)
        f.put(2, self.uptime_ms)
        f.put(4, a)
        f.put(5, b)
        f.put(6, c)
        self.board.send_telemetry(f.seal())

    def send_event(self, code, fields):
        """A variable event frame (boot, config change, command result): allocates."""
        if self.locked:
            micropython.heap_unlock()
        try:
            self.seq = (self.seq + 1) & 0x3FFFFFFF
            d = {0: self.version, 1: self.seq, 2: self.uptime_ms, events.K_EVENT: code}
            d.update(fields)
            self.board.send_telemetry(events.frame(d))
        finally:
            if self.locked:
                micropython.heap_lock()

    def _site_event(self, code=EVENT_SITE):
        if code == EVENT_SITE:            # outage/shed/genset/curtail: the fixed frame
            s = self.site
            self._fixed_event(self.sframe, s.flags, s.changed, self.soc)
            return
        # The fleet share lapsed (EVENT_SHARE): a variable frame, built only
        # after the heap is unlocked: even the dict would allocate.
        locked = self.locked
        if locked:
            micropython.heap_unlock()
            self.locked = False           # send_event must not unlock twice
        try:
            f = self.fleet
            self.send_event(code, {41: f.lapsed, 42: f.share_pm})
        finally:
            if locked:
                self.locked = True
                micropython.heap_lock()

    def _pred_setup(self, cfg):
        # Job hints arrive by command; the predictor (RAM for its rings) only
        # when enabled. Its rings are sized by the pred_* keys, so a config
        # that changes them builds a new one; announced hints are kept.
        if not cfg['pred_enabled']:
            self.hints = self.predictor = None
            return
        from cabinet import predict     # its code and rings only where it is on
        if self.hints is None:
            self.hints = predict.Hints()
        self.predictor = None           # the old rings can go before the new ones come
        self.predictor = predict.Predictor(cfg, self.hints)

    def apply_config(self, cfg):
        """A validated config from a command: the engine and limits follow at once."""
        if self.predictor is None or [k for k in cfg if k[:5] == 'pred_'
                                      and cfg[k] != self.cfg.get(k)]:
            self._pred_setup(cfg)
        if cfg.get('ct') != self.cfg.get('ct'):
            self._ct_setup(cfg.get('ct'))
        self.cfg = cfg
        self.engine = dispatch.from_config(cfg)
        if self.fleet is not None:
            self.fleet.configure(cfg)
        elif cfg['fleet_share_pm'] < 1000:
            self.fleet_on()
        self.armed = cfg['armed']
        self.frame.put(self.t_cap, cfg['cap_w'])
        self._configure_links(cfg)

    def _commands(self):
        c = self.commands
        if c is not None and c.poll():
            locked = self.locked
            if locked:
                micropython.heap_unlock()
                self.locked = False       # send_event (the reply) must not unlock again
            try:
                c.handle()
            finally:
                if locked:
                    self.locked = True
                    micropython.heap_lock()
            if self.reboot_requested:
                self.board.reset()

    def fleet_on(self):
        """The fleet share (boot, set_config or the first share command: allocates)."""
        if self.fleet is None:
            from cabinet import fleet
            self.fleet = fleet.Share(self.cfg)
        return self.fleet

    def set_dr_limit(self, limit_w, for_ms):
        """A demand-response import limit that expires after for_ms."""
        self.dr_limit_w = limit_w
        self.dr_left_ms = for_ms

    def _advance_clock(self, dt_ms):
        self.ms_of_day += dt_ms
        if self.ms_of_day >= 86400000:
            self.ms_of_day -= 86400000
        if self.dr_left_ms > 0:
            self.dr_left_ms -= dt_ms
            if self.dr_left_ms <= 0:
                self.dr_limit_w = dispatch.NO_LIMIT

    def cycle(self, dt_ms=0):
        """One control cycle, dt_ms after the previous one."""
        self._advance_clock(dt_ms)
        self._read_meter(dt_ms)
        self._read_pcs(dt_ms)
        self._judge(dt_ms)
        self._site(dt_ms)
        self._read_ct(dt_ms)
        fl = self.fleet
        if fl is not None and fl.tick(dt_ms):
            self._site_event(EVENT_SHARE)
        p = self.pcs
        st = self.state
        enable = 1
        if st == RUN or st == DEGRADED:
            status = dispatch.ST_OUTAGE if self.site.outage else 0
            grid = self.ct_w if self.ct_use else self.grid_w
            # With CTs the PCS's battery reading is older than the grid power:
            # pair the CT grid with the modelled battery power (pcs_model.py).
            batt = self.ct_batt_w if self.ct_use and self.pcs_est is not None else self.batt_w
            ff = 0
            sure = 0
            mins = self.ms_of_day // 60000
            if fl is None or not fl.active():
                if self.predictor is not None:
                    ff = self.predictor.update(grid + batt, dt_ms)
                    sure = self.predictor.hint_w
                setpoint = self.engine.step(grid, batt, self.soc, self.cha, self.dis,
                                            status, mins, self.dr_limit_w, dt_ms, ff, sure)
            else:
                # One of N cabinets: the engine sees the site (cabinet/fleet.py).
                fl.update(self.soc)
                if self.predictor is not None:
                    ff = self.predictor.update(grid + fl.site_battery_w(batt), dt_ms)
                    sure = self.predictor.hint_w
                setpoint = fl.step(self.engine, grid, batt, self.soc, self.cha, self.dis,
                                   status, mins, self.dr_limit_w, dt_ms, ff, sure)
            reason = self.engine.reason
        else:
            if self.predictor is not None:
                self.predictor.skip(dt_ms)   # hint clocks run on, the history stays aligned
            setpoint = self._safe_setpoint()
            enable = 0 if self.cause == PCS_FAULT or self.cause == PCS_NOT_FOLLOWING else 1
            reason = dispatch.FAULT if self.cause == PCS_FAULT else dispatch.DISARMED
        self.setpoint = setpoint
        self.heartbeat = (self.heartbeat + 1) & 0xFFFF
        if self.p_ena >= 0:
            p.set(self.p_ena, enable)
        if self.p_start >= 0:
            p.set(self.p_start, enable)
            p.set(self.p_stop, 1 - enable)
        p.set(self.p_set, setpoint)
        if self.p_hb >= 0:
            p.set(self.p_hb, self.heartbeat)
        if self.p_conn >= 0:
            p.set(self.p_conn, 0 if self.site.outage else 1)   # reconnect only when we say so
        # A lost PCS is not written to (its own reversion timeout takes over);
        # writing would only add timeouts to the cycle.
        if self.pcs_link.fails < self.pcs_link.fail_limit and p.write():
            self.pcs_link.errors += 1
        self._emit(setpoint, reason, st == RUN or st == DEGRADED)
        self._commands()

    def _emit(self, setpoint, reason, ran):
        f = self.frame
        t = self.t
        self.seq = (self.seq + 1) & 0x3FFFFFFF
        f.put(t[0], self.seq)
        f.put(t[1], self.uptime_ms)
        f.put(t[2], self.grid_w)
        f.put(t[3], self.batt_w)
        f.put(t[4], setpoint)
        f.put(t[5], self.soc)
        f.put(t[6], self.grid_w + self.batt_w)
        f.put(t[7], reason)
        f.put(t[8], self.state)
        f.put(t[9], self.cycle_us)
        f.put(t[10], self.late_cycles)
        f.put(t[11], self.meter_link.errors)
        f.put(t[12], self.pcs_link.errors)
        f.put(t[13], self.cha)
        f.put(t[14], self.dis)
        f.put(t[15], self.alarms)
        f.put(t[16], self.cause)
        f.put(t[17], self.transitions)
        f.put(t[18], self.site.flags)
        f.put(t[19], self.pv_w)
        f.put(t[20], self.genset_w)
        f.put(t[21], self.voltage_dv)
        f.put(t[22], self.freq_mhz)
        f.put(t[23], self.ct_w)
        f.put(t[24], self.ct_alarm)
        pr = self.predictor
        if pr is None:
            f.put(t[25], 0)
            f.put(t[26], 0)
            f.put(t[27], 0)
            f.put(t[28], 0)
        else:
            u = self.engine.ff if ran else 0          # units of 8 W, |u| < 2**28
            u = FF_MAX if u > FF_MAX else -FF_MAX if u < -FF_MAX else u
            f.put(t[25], u << 3)                       # |W| < 2**30: stays a small int
            f.put(t[26], pr.hint_w)
            f.put(t[27], pr.period_ms())
            f.put(t[28], (1 if pr.fast.active else 0) | (2 if pr.fast.susp else 0)
                  | self.hints.count() << 4)
        self.board.send_telemetry(f.seal())

    def run(self):
        period = self.period_ms
        max_cycles = self.cfg['max_cycles']
        lock = self.cfg['lock_heap']
        n = 0
        self.cycle()                    # first cycle outside the lock: warms up lazy buffers
        last_ms = time.ticks_ms()
        next_ms = time.ticks_add(last_ms, period)
        if lock:
            micropython.heap_lock()
            self.locked = True
        try:
            while not max_cycles or n < max_cycles:
                t0 = time.ticks_us()
                now = time.ticks_ms()
                dt = time.ticks_diff(now, last_ms)
                self.uptime_ms = (self.uptime_ms + dt) & 0x3FFFFFFF
                last_ms = now
                self.cycle(dt)
                self.board.feed_watchdog()
                self.cycle_us = time.ticks_diff(time.ticks_us(), t0)
                n += 1
                wait = time.ticks_diff(next_ms, time.ticks_ms())
                if wait > 0:
                    time.sleep_ms(wait)
                    next_ms = time.ticks_add(next_ms, period)
                else:
                    # Overran: count it and restart the schedule from now
                    # rather than firing a burst of catch-up cycles.
                    self.late_cycles += 1
                    next_ms = time.ticks_add(time.ticks_ms(), period)
        finally:
            if lock:
                self.locked = False
                micropython.heap_unlock()
