# The control loop: read meter and PCS, dispatch, write the PCS, emit one
# telemetry frame, every period_ms. After init nothing here allocates: all
# buffers and indices are prepared in __init__ (a HIL test runs the loop under
# micropython.heap_lock() to prove it).
import time
import micropython
from cabinet import devmap, dispatch, modbus, telemetry
from cabinet.devmap import INVALID

INIT = 0
RUN = 1
SAFE = 2          # no valid meter or PCS data this cycle: PCS commanded to 0 W
STATES = ('init', 'run', 'safe')

HEARTBEAT_REVERT_S = 5  # the PCS reverts to 0 W on its own after this silence


class Controller:
    def __init__(self, board, cfg, root=''):
        self.board = board
        self.cfg = cfg
        self.period_ms = cfg['period_ms']
        self.engine = dispatch.from_config(cfg)
        master = modbus.Master(board.bus, cfg['response_timeout_ms'], board.baud)
        self.meter = devmap.Device(master, cfg['meter_unit'],
                                   devmap.load_map(root + 'maps/%s.json' % cfg['meter_map']))
        self.pcs = devmap.Device(master, cfg['pcs_unit'],
                                 devmap.load_map(root + 'maps/%s.json' % cfg['pcs_map']))
        m, p = self.meter, self.pcs
        self.m_grid = m.index('grid_w')
        self.p_w, self.p_soc = p.index('W'), p.index('SoC')
        self.p_cha, self.p_dis = p.index('WChaMax'), p.index('WDisChaMax')
        self.p_evt = p.index('Evt1')
        self.p_ena, self.p_set = p.index('WSetEna'), p.index('WSet')
        self.p_hb, self.p_rvrt = p.index('CtrlHb'), p.index('WSetRvrtTms')
        p.set(self.p_rvrt, HEARTBEAT_REVERT_S)
        self.frame = telemetry.Frame(telemetry.load_schema(root + 'telemetry.json'))
        f = self.frame
        self.t = [f.index(n) for n in (
            'seq', 'uptime_ms', 'grid_w', 'battery_w', 'setpoint_w', 'soc_cpct',
            'load_w', 'reason', 'state', 'cycle_us', 'late_cycles',
            'meter_errors', 'pcs_errors', 'charge_max_w', 'discharge_max_w',
            'pcs_alarms', 'cap_w')]
        f.put(f.index('cap_w'), cfg['cap_w'])
        self.armed = cfg['armed']
        # Wall-clock minute for time-of-use, kept by ticks between clock sets.
        t = time.localtime()
        self.ms_of_day = ((t[3] * 60 + t[4]) * 60 + t[5]) * 1000
        self.dr_limit_w = dispatch.NO_LIMIT   # demand-response import limit (W)
        self.dr_left_ms = 0
        self.state = INIT
        self.seq = 0
        self.heartbeat = 0
        self.uptime_ms = 0
        self.cycle_us = 0
        self.late_cycles = 0
        self.meter_errors = 0
        self.pcs_errors = 0

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
        m = self.meter                 # (a 4-tuple assignment would allocate)
        p = self.pcs
        f = self.frame
        t = self.t
        grid_w = batt_w = soc = cha = dis = alarms = 0
        ok = True
        if m.read():
            self.meter_errors += 1
            ok = False
        else:
            grid_w = m.value(self.m_grid)
            ok = grid_w != INVALID
        if p.read():
            self.pcs_errors += 1
            ok = False
        else:
            batt_w = p.value(self.p_w)
            soc = p.value(self.p_soc)
            cha = p.value(self.p_cha)
            dis = p.value(self.p_dis)
            alarms = p.raw(self.p_evt)
            if batt_w == INVALID or soc == INVALID or cha == INVALID or dis == INVALID:
                ok = False
        if ok and self.armed:
            setpoint = self.engine.step(grid_w, batt_w, soc, cha, dis,
                                        dispatch.ST_PCS_FAULT if alarms & 1 else 0,
                                        self.ms_of_day // 60000, self.dr_limit_w, dt_ms)
            self.state = RUN
        else:
            setpoint = 0               # fail safe: never dispatch blind
            self.state = SAFE
        self.heartbeat = (self.heartbeat + 1) & 0xFFFF
        p.set(self.p_ena, 1)
        p.set(self.p_set, setpoint)
        p.set(self.p_hb, self.heartbeat)
        if p.write():
            self.pcs_errors += 1
        self.seq = (self.seq + 1) & 0x3FFFFFFF
        f.put(t[0], self.seq)
        f.put(t[1], self.uptime_ms)
        f.put(t[2], grid_w)
        f.put(t[3], batt_w)
        f.put(t[4], setpoint)
        f.put(t[5], soc)
        f.put(t[6], grid_w + batt_w)
        f.put(t[7], self.engine.reason if ok and self.armed else dispatch.DISARMED)
        f.put(t[8], self.state)
        f.put(t[9], self.cycle_us)
        f.put(t[10], self.late_cycles)
        f.put(t[11], self.meter_errors)
        f.put(t[12], self.pcs_errors)
        f.put(t[13], cha)
        f.put(t[14], dis)
        f.put(t[15], alarms)
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
                micropython.heap_unlock()
