"""Controllers compared by `cabctl sim`, all driving the same plant.

Each has step(meas) -> setpoint_w, called every control period with what the
firmware would read: the meter and PCS values of the previous period.
"""
from dataclasses import dataclass

from ..fw import dispatch
from cabinet import hints, predict   # importable once ..fw put the firmware on the path


@dataclass
class Measured:
    grid_w: int
    battery_w: int
    soc_cpct: int
    charge_max_w: int
    discharge_max_w: int
    minute_of_day: int
    dt_ms: int
    t_ms: int = 0              # plant time of this cycle (for delivering job hints)
    # Site runs (sim/site.py): the meter's voltage and frequency, the PCS's
    # islanded alarm, the PV inverter's output.
    voltage_dv: int = 0
    freq_mhz: int = 0
    islanded: bool = False
    pv_w: int = 0


class Cabinet:
    """This project's engine (the firmware module itself, run on CPython).

    prediction: also run the firmware's predictor (cabinet.predict) and give
    its feed-forward to the engine, as the controller does on the device.
    hints: job events [{"t_s", "kind", "power_w"}, ...] (the generator's
    `job_events`), each delivered to the predictor's hint table `hint_lead_s`
    before it is due, as `cabctl hint` would, with `hint_window_ms`.
    pred_cfg: predictor keys over the defaults (pred_enabled is set from
    `prediction`).
    """
    name = "cabinet"

    def __init__(self, site_cfg, prediction=False, hints=(), pred_cfg=None, hint_lead_s=5.0,
                 hint_window_ms=150):
        self.engine = dispatch.Engine(site_cfg)
        self.predictor = None
        self.pending = []
        if prediction:
            # The site's keys too, as on the device (the ramp limits set the
            # budget the predictor spreads its rhythm's pre-arms over).
            cfg = dict(site_cfg, **PRED_DEFAULTS)
            cfg.update(pred_cfg or {}, pred_enabled=True)
            self.predictor = predict.Predictor(cfg)
            self.pending = sorted(((e["t_s"] - hint_lead_s, e) for e in hints),
                                  key=lambda p: p[0], reverse=True)
        self.hint_window_ms = hint_window_ms
        self.status = 0            # dispatch.ST_* bits (set by sim/site.CabinetSite)
        self.ff_w = 0
        self.active_ticks = 0
        self.armed_cycles = 0

    def summary(self, cycles):
        """The predictor's state at the end and how often it acted."""
        p = self.predictor
        h = p.hints
        return {"active_share": round(self.active_ticks / max(1, cycles), 3),
                "armed_share": round(self.armed_cycles / max(1, cycles), 3),
                "period_ms": p.period_ms(), "conf_pm": p.fast.conf_pm, "err_pm": p.fast.err_pm,
                "slow_period_ms": p.slow.period_ms(), "slow_conf_pm": p.slow.conf_pm,
                "hints_added": h.added, "hints_seen": h.seen, "hints_expired": h.expired}

    def step(self, m: Measured):
        ff = 0
        sure = 0
        p = self.predictor
        if p is not None:
            # A hint that came since the last cycle: the device handles
            # commands right after a cycle, so the next update ages it by a
            # whole cycle; it is due that much later than from now.
            while self.pending and self.pending[-1][0] * 1000 <= m.t_ms:
                _, e = self.pending.pop()
                p.hints.add(hints.KINDS.index(HINT_KIND[e["kind"]]),
                            int(round(e["t_s"] * 1000 - m.t_ms)) + m.dt_ms, e["power_w"],
                            self.hint_window_ms)
            ff = p.update(m.grid_w + m.battery_w, m.dt_ms)
            sure = p.hint_w
            self.active_ticks += p.fast.active
            self.armed_cycles += ff != 0
        self.ff_w = ff
        return self.engine.step(m.grid_w, m.battery_w, m.soc_cpct, m.charge_max_w,
                                m.discharge_max_w, self.status, m.minute_of_day, dispatch.NO_LIMIT,
                                m.dt_ms, ff, sure)


# The generator's event names -> the device's hint kinds.
HINT_KIND = {"job_start": "job_start", "train_start": "job_start", "ckpt_end": "ckpt_end",
             "ckpt_start": "ckpt_start", "job_end": "job_end"}
# Predictor settings of the sim unless a scenario or caller overrides them
# (the firmware's defaults, see cabinet/predict.py).
PRED_DEFAULTS = {}


class NoBattery:
    name = "none"

    def step(self, m):
        return 0


class OpenEms:
    """OpenEMS's symmetric peak shaving with its PidFilter (REFERENCE.md section 2).

    Every 1 s cycle: grid_without_ess = meter + ess power; at or above the peak
    threshold the target is grid - peak (discharge), at or below the recharge
    threshold grid - recharge (charge), else 0. The target passes through
    PidFilter.applyPidFilter(input=ess power, target) with P 0.3, I 0.3, D 0.1,
    output limits [-charge max, discharge max] and the error sum limited to 10x
    the larger limit, as in io.openems.edge.common.filter.PidFilter.
    """
    name = "openems"

    def __init__(self, site_cfg, cycle_ms=1000, p=0.3, i=0.3, d=0.1):
        # OpenEMS stacks controllers that narrow the allowed power; its SoC
        # limit controllers (emergency reserve, limit total discharge) are
        # modelled as: no discharge at or below the reserve, no charge at or
        # above the maximum.
        self.reserve = site_cfg["reserve_cpct"]
        self.soc_max = site_cfg["soc_max_cpct"]
        self.peak = site_cfg["cap_w"]
        self.recharge = site_cfg["recharge_w"]
        self.cycle_ms, self.p, self.i, self.d = cycle_ms, p, i, d
        self.since_ms = cycle_ms
        self.setpoint = 0
        self.first = True
        self.last_input = 0.0
        self.error_sum = 0.0

    def step(self, m):
        self.since_ms += m.dt_ms
        if self.since_ms < self.cycle_ms:
            return self.setpoint
        self.since_ms = 0
        without = m.grid_w + m.battery_w
        if without >= self.peak:
            target = without - self.peak
        elif without <= self.recharge:
            target = without - self.recharge
        else:
            target = 0
        lo = 0 if m.soc_cpct >= self.soc_max else -m.charge_max_w
        hi = 0 if m.soc_cpct <= self.reserve else m.discharge_max_w
        self.setpoint = self._pid(m.battery_w, target, lo, hi)
        return self.setpoint

    def _pid(self, inp, target, lo, hi):
        target = min(max(target, lo), hi)
        error = target - inp
        if error == 0:
            return target
        out_p = self.p * error
        if self.first:
            self.last_input = inp
            self.first = False
        out_i = self.i * self.error_sum
        out_d = -self.d * (inp - self.last_input)
        self.last_input = inp
        limit = 10 * max(abs(lo), abs(hi))
        self.error_sum = min(max(self.error_sum + error, -limit), limit)
        return min(max(int(round(out_p + out_i + out_d)), lo), hi)


def optimal_cap_w(load_1s_w, plant_cfg, reserve_cpct, soc_max_cpct, tol_w=1000):
    """Lowest cap any controller with perfect foresight could hold (1 s resolution).

    Feasibility of a cap X is checked greedily: discharge exactly what exceeds
    X (within the PCS limit, never below the reserve), charge with all spare
    headroom below X whenever possible (charging as early as possible keeps
    the most energy for later, so greedy is optimal for feasibility).
    Bisection on X to tol_w.
    """
    c = plant_cfg
    eta = c.efficiency_rt ** 0.5
    e0 = c.capacity_wh * c.soc0_cpct / 10000
    e_min = c.capacity_wh * reserve_cpct / 10000
    e_max = c.capacity_wh * soc_max_cpct / 10000
    loads = [float(x) for x in load_1s_w]

    def feasible(cap):
        e = e0
        for load in loads:
            if load > cap:
                d = load - cap
                if d > c.discharge_max_w:
                    return False
                e -= d / eta / 3600
                if e < e_min:
                    return False
            else:
                e = min(e_max, e + min(c.charge_max_w, cap - load) * eta / 3600)
        return True

    lo, hi = 0.0, max(loads)
    while hi - lo > tol_w:
        mid = (lo + hi) / 2
        if feasible(mid):
            hi = mid
        else:
            lo = mid
    return int(hi)
