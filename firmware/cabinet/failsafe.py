# The failsafe state machine of the control loop (a mixin of
# cabinet/controller.py's Controller: it judges the readings cabinet/sensing.py
# keeps on the same object, and sends transitions with its _fixed_event).
#
# INIT until the first good meter and PCS data; RUN; DEGRADED when a read
# failed but the last good values are still valid (fresh enough, too few
# consecutive errors); SAFE when the meter is lost, stale, frozen or
# undecodable (the PCS is commanded to safe_setpoint_w), the PCS is lost (we
# stop writing: its own reversion timeout takes it to 0 W), faulted or not
# following its setpoint (0 W, disabled). SAFE is held for safe_hold_ms and
# left after recover_cycles good cycles in a row. Every transition is counted
# and its cause sent in telemetry.
INIT = 0
RUN = 1
DEGRADED = 2
SAFE = 3
STATES = ('init', 'run', 'degraded', 'safe')   # telemetry.json enums.state

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

ALARM_FAULT = 1           # PCS alarm bits we act on
ALARM_ISLANDED = 2


class Failsafe:
    def _failsafe_setup(self):
        self.state = INIT
        self.cause = OK
        self.transitions = 0
        self.safe_ms = 0
        self.good_cycles = 0

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

    def _safe_setpoint(self):
        """The PCS setpoint outside RUN/DEGRADED (W)."""
        # Meter trouble: safe_setpoint_w (the PCS still works); PCS trouble
        # or disarmed: 0 W.
        setpoint = self.cfg['safe_setpoint_w'] if self.cause <= METER_INVALID else 0
        # The safe setpoint never exceeds what the PCS allows right now.
        if setpoint > self.dis:
            return self.dis
        if setpoint < -self.cha:
            return -self.cha
        return setpoint
