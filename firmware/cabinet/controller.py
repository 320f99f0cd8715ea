# The control loop: read meter and PCS, decide, write the PCS, emit one
# telemetry frame, every period_ms. After init nothing here allocates: all
# buffers and indices are prepared in __init__ (a HIL test runs the loop under
# micropython.heap_lock() to prove it).
#
# Failsafe: INIT until the first good meter and PCS data; RUN; DEGRADED when
# a read failed but the last good values are still valid (fresh enough, too
# few consecutive errors); SAFE when the meter is lost, stale, frozen or
# undecodable (the PCS is commanded to safe_setpoint_w), the PCS is lost (we
# stop writing: its own reversion timeout takes it to 0 W), faulted or not
# following its setpoint (0 W, disabled). SAFE is held for safe_hold_ms and
# left after recover_cycles good cycles in a row. Every transition is counted
# and its cause sent in telemetry.
#
# Current transformers (config "ct", cabinet/ct_config.py; {} = none): each
# cycle the newest CT block from the board is turned into grid power (ct_w)
# and, while fresh and trusted, replaces the meter's grid_w as the dispatch
# input; the meter stays the slow reference and the failsafe's only judge
# (a lost meter is still SAFE). CT and meter are compared at every new meter
# reading; a lasting disagreement sets ct_alarm bit 0 (no state transition)
# and dispatch falls back to the meter until it clears.
import gc
import time
import micropython
from array import array
from cabinet import devmap, dispatch, events, health, modbus, site, telemetry
from cabinet.devmap import INVALID

INIT = 0
RUN = 1
DEGRADED = 2
SAFE = 3
STATES = ('init', 'run', 'degraded', 'safe')

# Causes (telemetry `cause`), the most serious one found this cycle.
OK = 0
METER_LOST = 1
METER_STALE = 2
METER_FROZEN = 3
METER_INVALID = 4
PCS_LOST = 5
PCS_FAULT = 6
PCS_NOT_FOLLOWING = 7
DISARMED = 8
READ_ERROR = 9            # a read failed; last good values still used
CAUSES = ('ok', 'meter_lost', 'meter_stale', 'meter_frozen', 'meter_invalid', 'pcs_lost',
          'pcs_fault', 'pcs_not_following', 'disarmed', 'read_error')

TELEMETRY = ('seq', 'uptime_ms', 'grid_w', 'battery_w', 'setpoint_w', 'soc_cpct', 'load_w',
             'reason', 'state', 'cycle_us', 'late_cycles', 'meter_errors', 'pcs_errors',
             'charge_max_w', 'discharge_max_w', 'pcs_alarms', 'cause', 'transitions',
             'site_flags', 'pv_w', 'genset_w', 'voltage_dv', 'freq_mhz')
ALARM_FAULT = 1           # PCS alarm bits we act on
ALARM_ISLANDED = 2
PV_NO_LIMIT = 0x1FFFFFFF
EVENT_SITE = events.SITE
EVENT_SHARE = events.SHARE_LAPSED
CT_DISAGREE = 1           # ct_alarm bits: CT and meter disagree (alarm held)
CT_STALE = 2              # CTs configured, no fresh block (none, or older than max_age_ms)


def _link(cfg, prefix):
    return health.Link(cfg[prefix + '_fail_cycles'], cfg['max_age_ms'],
                       cfg['retry_base_ms'], cfg['retry_max_ms'])


class Controller:
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
        master = modbus.Master(board.bus, cfg['response_timeout_ms'], board.baud)
        self.meter = devmap.Device(master, cfg['meter_unit'],
                                   devmap.load_map(root + 'maps/%s.json' % cfg['meter_map']))
        self.pcs = devmap.Device(master, cfg['pcs_unit'],
                                 devmap.load_map(root + 'maps/%s.json' % cfg['pcs_map']))
        m, p = self.meter, self.pcs
        self.m_grid = m.role('grid_w')
        self.p_w, self.p_soc = p.role('battery_w'), p.role('soc_cpct')
        self.p_cha, self.p_dis = p.role('charge_max_w'), p.role('discharge_max_w')
        self.p_evt, self.p_set = p.role('alarms'), p.role('setpoint_w')
        self.p_ena, self.p_hb = p.role('enable', False), p.role('heartbeat', False)
        self.p_start, self.p_stop = p.role('start', False), p.role('stop', False)
        self.p_conn = p.role('connect', False)
        rv = p.role('revert_s', False)
        if rv >= 0:
            p.set(rv, cfg['pcs_revert_s'])
        self.m_v, self.m_f = m.role('voltage_dv', False), m.role('freq_mhz', False)
        self.meter_link = _link(cfg, 'meter')
        self.pcs_link = _link(cfg, 'pcs')
        # Optional devices: a PV inverter and a genset controller on the same bus.
        self.pv = self.genset = None
        if cfg['pv_map']:
            self.pv = devmap.Device(master, cfg['pv_unit'],
                                    devmap.load_map(root + 'maps/%s.json' % cfg['pv_map']))
            self.pv_w_i, self.pv_lim_i = self.pv.role('pv_w'), self.pv.role('pv_limit_w', False)
        if cfg['genset_map']:
            self.genset = devmap.Device(master, cfg['genset_unit'],
                                        devmap.load_map(root + 'maps/%s.json' % cfg['genset_map']))
            self.gen_start_i, self.gen_w_i = self.genset.role('start'), self.genset.role('genset_w')
        gc.collect()                      # the parsed map files, before the next loads
        self.site = site.Site(cfg)
        self.hints = self.predictor = None
        self._pred_setup(cfg)
        self.voltage_dv = self.site.v_lo + 1     # until the meter says otherwise: in window
        self.freq_mhz = self.site.f_lo + 1
        self.pv_w = self.genset_w = 0
        self.pv_limit_w = PV_NO_LIMIT
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
        self.t_ct = (f.index('ct_w'), f.index('ct_alarm'))
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
        # Last good readings (a failed read leaves garbage in the buffers).
        self.grid_w = self.batt_w = self.soc = self.cha = self.dis = self.alarms = 0
        self.frozen_ms = 0
        self.off_ms = 0                       # PCS away from its setpoint for this long
        self.off_from_w = 0                   # its power when it went away
        self.setpoint = 0
        self.state = INIT
        self.cause = OK
        self.transitions = 0
        self.safe_ms = 0
        self.good_cycles = 0
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
        # Built only after the heap is unlocked: even the dict would allocate.
        locked = self.locked
        if locked:
            micropython.heap_unlock()
            self.locked = False           # send_event must not unlock twice
        try:
            s = self.site
            if code == EVENT_SITE:
                self.send_event(EVENT_SITE, {41: s.flags, 42: s.changed, 43: self.soc})
            else:
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
        for link, prefix in ((self.meter_link, 'meter'), (self.pcs_link, 'pcs')):
            link.fail_limit = cfg[prefix + '_fail_cycles']
            link.max_age_ms = cfg['max_age_ms']
            link.retry_base_ms = cfg['retry_base_ms']
            link.retry_max_ms = cfg['retry_max_ms']

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

    def _read_meter(self, dt_ms):
        link = self.meter_link
        if link.tick(dt_ms):
            r = self.meter.read()
            if r:
                link.failed(r)
                return
            g = self.meter.value(self.m_grid)
            if g == INVALID:
                link.failed(modbus.SHORT)
                return
            # A meter that answers with a bit-identical value for too long has
            # stopped measuring (a frozen register); real power always jitters
            # (but reads a flat 0 W while the grid is down).
            same = g == self.grid_w and not self.site.outage
            self.frozen_ms = self.frozen_ms + dt_ms if same else 0
            self.grid_w = g
            if self.m_v >= 0:
                self.voltage_dv = self.meter.value(self.m_v)
            if self.m_f >= 0:
                self.freq_mhz = self.meter.value(self.m_f)
            link.ok()

    def _read_pcs(self, dt_ms):
        link = self.pcs_link
        if link.tick(dt_ms):
            p = self.pcs
            r = p.read()
            if r:
                link.failed(r)
                return
            b = p.value(self.p_w)
            s = p.value(self.p_soc)
            c = p.value(self.p_cha)
            d = p.value(self.p_dis)
            if b == INVALID or s == INVALID or c == INVALID or d == INVALID:
                link.failed(modbus.SHORT)
                return
            self.batt_w = b           # (a 4-tuple assignment would allocate)
            self.soc = s
            self.cha = c
            self.dis = d
            self.alarms = p.raw(self.p_evt)
            link.ok()
            # Not following: away from the setpoint we sent for follow_ms in
            # total, without moving. Agreeing counts only if the PCS moved
            # since it went off: a stuck PCS meets a swinging setpoint by
            # coincidence twice a second.
            tol = self.cfg['follow_tol_w']
            off = b - self.setpoint
            if self.alarms & ALARM_ISLANDED:
                self.off_ms = 0           # islanded: the PCS follows the site, not us
            elif off > tol or off < -tol:
                if self.off_ms == 0:
                    self.off_from_w = b
                self.off_ms += dt_ms
            else:
                # Meeting a setpoint we hold in SAFE counts too: otherwise a
                # PCS that recovered at 0 W would never be trusted again.
                moved = b - self.off_from_w
                if moved > tol or moved < -tol or self.state == SAFE:
                    self.off_ms = 0

    def _ct_setup(self, over):
        """(Re)build CT sensing from the config's "ct" object ({}/None: none).
        Boot or set_config time: allocates."""
        self.ct = None
        self.ct_use = False
        self.ct_w = self.ct_alarm = self.ct_batt_w = 0
        self.pcs_est = None
        if not over:
            return
        from cabinet import ct, ct_config
        c = ct.validate(over)
        m = ct.Ct(c)
        if c['pcs_lag_ms'] >= 0:                # battery power now, for load = CT grid + it
            from cabinet import pcs_model
            cyc = 1000 // c['hz']               # a block spans a cycle, is ~half one old
            self.pcs_est = pcs_model.PcsModel(c['pcs_lag_ms'], c['pcs_ramp_w_per_s'],
                                              cyc, cyc // 2)
        size = m.n * m.nch
        self.ct_blk = array('H', [0] * size)
        opener = getattr(self.board, 'ct_open', None)
        if opener is None or not opener(size, m.nch, m.rate_hz):
            self.board.log('ct: the board delivers no CT samples: dispatching on the meter')
        on, off = ct_config.alarm_w(c)
        self.ct_check = ct.Disagreement(on, off, c['alarm_hold_ms'])
        self.ct_max_age_ms = c['max_age_ms']
        self.ct_age_ms = c['max_age_ms'] + 1    # nothing yet
        self.ct_dt_ms = 0                       # since the last CT/meter comparison
        self.ct_alarm = CT_STALE
        self.ct = m

    def _read_ct(self, dt_ms):
        """The newest CT block (if one came), the CT/meter check, and whether
        dispatch may use ct_w this cycle."""
        m = self.ct
        if m is None:
            return
        est = self.pcs_est
        if est is not None:                     # self.setpoint: the one in force since
            est.update(self.setpoint, self.batt_w, self.cha, self.dis, dt_ms)
        if self.board.read_ct_block(self.ct_blk):
            self.ct_w = m.process(self.ct_blk)
            self.ct_age_ms = 0
            # The battery power of the same moment (a cycle without a new
            # block keeps both: a fresh battery and an old grid would not add up).
            if est is not None:
                self.ct_batt_w = est.estimate_w
        elif self.ct_age_ms <= self.ct_max_age_ms:
            self.ct_age_ms += dt_ms
        fresh = self.ct_age_ms <= self.ct_max_age_ms
        # Time since the last comparison, counted while the CTs are fresh only.
        self.ct_dt_ms = self.ct_dt_ms + dt_ms if fresh and self.ct_dt_ms < 600000 else 0
        # A meter reading arrived this cycle (Link.ok() zeroes its age):
        # compare it with the CT power of the same moment.
        if fresh and self.meter_link.age_ms == 0:
            self.ct_check.update(self.ct_w, self.grid_w, self.ct_dt_ms)
            self.ct_dt_ms = 0
        alarm = self.ct_check.alarm
        self.ct_alarm = (CT_DISAGREE if alarm else 0) | (0 if fresh else CT_STALE)
        self.ct_use = fresh and not alarm

    def _judge(self, dt_ms):
        """The most serious cause this cycle and the state it leads to."""
        cfg = self.cfg
        ml = self.meter_link
        pl = self.pcs_link
        if ml.fails >= ml.fail_limit:
            cause = METER_LOST
        elif ml.age_ms > ml.max_age_ms:
            cause = METER_STALE
        elif cfg['meter_frozen_ms'] and self.frozen_ms >= cfg['meter_frozen_ms']:
            cause = METER_FROZEN
        elif pl.fails >= pl.fail_limit or pl.age_ms > pl.max_age_ms:
            cause = PCS_LOST
        elif self.alarms & ALARM_FAULT:
            cause = PCS_FAULT
        elif cfg['follow_ms'] and self.off_ms >= cfg['follow_ms']:
            cause = PCS_NOT_FOLLOWING
        elif not self.armed:
            cause = DISARMED
        elif ml.fails or pl.fails:
            cause = READ_ERROR
        else:
            cause = OK
        if cause == OK or cause == READ_ERROR:
            self.good_cycles += 1
        else:
            self.good_cycles = 0
        if self.state == SAFE:
            self.safe_ms += dt_ms
        if cause != OK and cause != READ_ERROR:
            # Before the first data, "stale" and "lost" only mean "not yet".
            waiting = self.state == INIT and (cause == METER_STALE or cause == PCS_LOST)
            new = INIT if waiting else SAFE
        elif self.state == SAFE and (self.safe_ms < cfg['safe_hold_ms']
                                     or self.good_cycles < cfg['recover_cycles']):
            new = SAFE
        else:
            new = DEGRADED if cause == READ_ERROR else RUN
        if cause != READ_ERROR or self.cause == OK:
            self.cause = cause
        if new != self.state:
            self._fixed_event(self.tframe, self.state, new, self.cause)
            self.state = new
            self.transitions += 1
            self.safe_ms = 0

    def _site(self, dt_ms):
        """Outage, load shed, genset, PV: read the optional devices, decide requests."""
        s = self.site
        was_out = s.outage
        s.update(self.voltage_dv, self.freq_mhz, self.alarms & ALARM_ISLANDED, self.soc, dt_ms)
        if was_out and not s.outage:
            self.engine.reset_ramp()       # the grid returns at the ramp limits
        if self.pv is not None and not self.pv.read():
            self.pv_w = self.pv.value(self.pv_w_i)
            # PV curtailment (site.py; `cabctl sim` runs the same method).
            cfg = self.cfg
            room = 0 if self.engine.charge_blocked() else self.cha
            self.pv_limit_w = s.curtail_pv(self.pv_w, self.grid_w + self.batt_w + self.pv_w, room,
                                           cfg['export_limit_w'], cfg['pv_curtail_margin_w'])
            if self.pv_lim_i >= 0:
                self.pv.set(self.pv_lim_i, self.pv_limit_w)
                self.pv.write()
        if self.genset is not None:
            if not self.genset.read():
                self.genset_w = self.genset.value(self.gen_w_i)
            self.genset.set(self.gen_start_i, 1 if s.genset else 0)
            self.genset.write()
        b = self.board
        b.set_output('shed', s.shed)
        b.set_output('genset', s.genset)
        if s.changed:
            self._site_event()

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
            mins = self.ms_of_day // 60000
            if fl is None or not fl.active():
                if self.predictor is not None:
                    ff = self.predictor.update(grid + batt, dt_ms)
                setpoint = self.engine.step(grid, batt, self.soc, self.cha, self.dis,
                                            status, mins, self.dr_limit_w, dt_ms, ff)
            else:
                # One of N cabinets: the engine sees the site (cabinet/fleet.py).
                fl.update(self.soc)
                if self.predictor is not None:
                    ff = self.predictor.update(grid + fl.site_battery_w(batt), dt_ms)
                setpoint = fl.step(self.engine, grid, batt, self.soc, self.cha, self.dis,
                                   status, mins, self.dr_limit_w, dt_ms, ff)
            reason = self.engine.reason
        else:
            if self.predictor is not None:
                self.predictor.skip(dt_ms)   # hint clocks run on, the history stays aligned
            setpoint = self.cfg['safe_setpoint_w'] if self.cause <= METER_INVALID else 0
            # The safe setpoint never exceeds what the PCS allows right now.
            if setpoint > self.dis:
                setpoint = self.dis
            elif setpoint < -self.cha:
                setpoint = -self.cha
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
        self._emit(setpoint, reason)
        self._commands()

    def _emit(self, setpoint, reason):
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
        f.put(self.t_ct[0], self.ct_w)
        f.put(self.t_ct[1], self.ct_alarm)
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
