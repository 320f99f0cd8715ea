# What the control loop measures (a mixin of cabinet/controller.py's
# Controller): the meter and the PCS over Modbus, and the CTs. A failed read
# leaves garbage in the device buffers, so the last good values are kept here
# and only replaced by a complete, valid reading; cabinet/failsafe.py judges
# how old and how trusted they are.
#
# Current transformers (config "ct", cabinet/ct_config.py; {} = none): each
# cycle the newest CT block from the board is turned into grid power (ct_w)
# and, while fresh and trusted, replaces the meter's grid_w as the dispatch
# input; the meter stays the slow reference and the failsafe's only judge
# (a lost meter is still SAFE). CT and meter are compared at every new meter
# reading; a lasting disagreement sets ct_alarm bit 0 (no state transition)
# and dispatch falls back to the meter until it clears.
from array import array
from cabinet import devmap, health, modbus
from cabinet.devmap import INVALID
from cabinet.failsafe import ALARM_ISLANDED, SAFE

CT_DISAGREE = 1           # ct_alarm bits: CT and meter disagree (alarm held)
CT_STALE = 2              # CTs configured, no fresh block (none, or older than max_age_ms)


def _link(cfg, prefix):
    return health.Link(cfg[prefix + '_fail_cycles'], cfg['max_age_ms'],
                       cfg['retry_base_ms'], cfg['retry_max_ms'])


def load_device(master, unit, root, map_name):
    return devmap.Device(master, unit, devmap.load_map(root + 'maps/%s.json' % map_name))


class Sensing:
    def _sensing_setup(self, board, cfg, root):
        """Meter and PCS on the board's bus; returns the bus master (the
        optional site devices share it)."""
        master = modbus.Master(board.bus, cfg['response_timeout_ms'], board.baud)
        self.meter = m = load_device(master, cfg['meter_unit'], root, cfg['meter_map'])
        self.pcs = p = load_device(master, cfg['pcs_unit'], root, cfg['pcs_map'])
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
        # Last good readings.
        self.grid_w = self.batt_w = self.soc = self.cha = self.dis = self.alarms = 0
        self.frozen_ms = 0
        self.off_ms = 0                       # PCS away from its setpoint for this long
        self.off_from_w = 0                   # its power when it went away
        return master

    def _configure_links(self, cfg):
        for link, prefix in ((self.meter_link, 'meter'), (self.pcs_link, 'pcs')):
            link.fail_limit = cfg[prefix + '_fail_cycles']
            link.max_age_ms = cfg['max_age_ms']
            link.retry_base_ms = cfg['retry_base_ms']
            link.retry_max_ms = cfg['retry_max_ms']

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
