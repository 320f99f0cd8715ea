# Dispatch: decide the battery setpoint for one cycle. Pure integer code, no
# I/O, runs unchanged on CPython and MicroPython.
#
# Sign conventions: grid_w > 0 is import, battery_w > 0 is discharge.
# SoC is in 0.01 % (0..10000).
#
# This is the Foundation's simple peak-cap rule. The full engine (stacked
# constraints, ramp smoothing, TOU, DR) replaces it behind the same step()
# interface: construct once from a validated config, then call step() every
# cycle; step() returns the setpoint and leaves the binding stage in .reason.

# Reason codes (telemetry key `reason`): which stage bound the setpoint.
IDLE = 0         # load between recharge threshold and cap: nothing to do
CAP = 1          # discharging to hold grid at the cap
RECHARGE = 2     # charging in a valley, grid held at the recharge threshold
PCS_LIMIT = 3    # wanted more than the PCS/BMS allows
SOC_LIMIT = 4    # SoC band forbids this direction
FAULT = 5        # PCS/BMS fault: window [0, 0]
NO_EXPORT = 6    # discharge trimmed so the site never exports
DISARMED = 7     # set by the controller: dispatch off, or no valid data

REASONS = ('idle', 'cap', 'recharge', 'pcs_limit', 'soc_limit', 'fault',
           'no_export', 'disarmed')

# Status flags given to step() (bit mask).
ST_PCS_FAULT = 1


class PeakCap:
    """Discharge above cap_w, recharge below recharge_w, within PCS and SoC limits.

    All limits are integer watts / 0.01 % and must satisfy |x| < 2**29 so that
    load = grid + battery stays a small int on 32-bit MicroPython (|x| < 2**30).
    """

    def __init__(self, cap_w, recharge_w, soc_min_cpct, soc_max_cpct,
                 recharge_max_w=1 << 29):
        self.cap_w = cap_w
        self.recharge_w = recharge_w
        self.recharge_max_w = recharge_max_w
        self.soc_min_cpct = soc_min_cpct
        self.soc_max_cpct = soc_max_cpct
        self.reason = IDLE

    def step(self, grid_w, battery_w, soc_cpct, charge_max_w, discharge_max_w,
             status):
        if status & ST_PCS_FAULT:
            self.reason = FAULT
            return 0
        # Feed-forward: what the site would draw without the battery.
        load_w = grid_w + battery_w
        if load_w > self.cap_w:
            want = load_w - self.cap_w
            reason = CAP
        elif load_w < self.recharge_w:
            want = load_w - self.recharge_w      # negative: charge
            reason = RECHARGE
        else:
            self.reason = IDLE
            return 0
        if want > 0:
            if soc_cpct <= self.soc_min_cpct:
                self.reason = SOC_LIMIT
                return 0
            if want > discharge_max_w:
                want = discharge_max_w
                reason = PCS_LIMIT
            if want > load_w:                    # never push power into the grid
                want = load_w if load_w > 0 else 0
                reason = NO_EXPORT
        else:
            if soc_cpct >= self.soc_max_cpct:
                self.reason = SOC_LIMIT
                return 0
            if -want > self.recharge_max_w:
                want = -self.recharge_max_w
            if -want > charge_max_w:
                want = -charge_max_w
                reason = PCS_LIMIT
        self.reason = reason
        return want


def from_config(cfg):
    return PeakCap(cfg['cap_w'], cfg['recharge_w'], cfg['soc_min_cpct'],
                   cfg['soc_max_cpct'], cfg['recharge_max_w'])
