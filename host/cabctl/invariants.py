"""The independent safety monitor: invariants judged from the plant's ground truth.

It reads only what really flowed (the plant's truth CSV, one row per 5 ms
physics step, or a `cabctl sim` trace) and the scenario: the site config
(validated exactly as the firmware validates it), the PCS/BMS limits the
plant reported at each step, the fault schedule the plant injected and the
moment the rig killed the firmware. It never reads telemetry: a firmware
that lies about itself cannot pass.

Rules, evaluated at every plant step (ramp: every 1 s block):

- setpoint: the setpoint the PCS was given lies within the charge/discharge
  limits the PCS/BMS reported (+ slack: 1 % of the PCS nameplate + 1 kW);
- power: the battery's actual power lies within those limits (+ slack);
- soc: no discharge below reserve - hysteresis, no charge above
  soc_max + hysteresis (SoC is measured a period late, so one hysteresis
  band of overshoot is allowed); islanded (grid outage) the PCS carries the
  site and the reserve is there to be used;
- export: grid export beyond export_limit_w + 1 % of the cap for longer than
  the controller's reaction time (a load drop shows up on the meter one
  meter update + one cycle later, and the PCS needs its lag to follow);
- ramp: the change between consecutive 1 s grid averages stays within
  ramp_up_w_per_s / ramp_down_w_per_s (when configured) plus the step
  transient the controller cannot see yet (the load's range over the two
  seconds times the detection latency) - judged only while the battery had
  headroom (not at a PCS limit, not in or near a SoC band that blocks the
  needed direction) and away from injected faults;
- pcs_zero: whenever the controller has lost the meter (the plant's
  meter_blind column) past the failsafe deadline, or died (killed_at) past
  the PCS's own reversion timeout, the battery is at 0 W (or at the safe
  setpoint while the controller can still reach the PCS) - except while the
  site is islanded (the grid-forming PCS must carry it).

Where a fault takes authority away from the controller (a PCS that is stuck
or unreachable keeps its last power until its own reversion timeout) the
rules that judge physical outcomes (export, ramp, pcs_zero) are excused for
that window; the samples excused are counted separately.

    mon = monitor(truth, site, faults=["meter-timeout@5+3"], killed_at=None)
    mon.total, mon.counts, mon.found, mon.summary()
"""
from dataclasses import dataclass, field

import numpy as np

from .fw import config as fw_config

PCS_SETTLE_MS = 400       # the PCS ramps to 0 W (lag + ramp) and one meter update
EXPORT_MS = 500           # two chained load drops, each seen a meter update + a cycle late
RULES = ("setpoint", "power", "soc", "export", "ramp", "pcs_zero")
# Effects (plant/faults.py) after which the PCS no longer follows the controller.
PCS_CUT = ("silent", "crc")           # on the PCS, or a bus disconnect: no more writes
PCS_STUCK = ("stuck",)


def cycle_ms(site):
    """Worst-case length of a control cycle whose transactions time out."""
    return max(site["period_ms"], 50) + site["response_timeout_ms"]


def deadline_ms(site, frozen=False):
    """Meter lost -> PCS at the safe setpoint: N failed cycles + 2, + the PCS settling."""
    ms = (site["meter_fail_cycles"] + 2) * cycle_ms(site) + PCS_SETTLE_MS
    return ms + (site["meter_frozen_ms"] if frozen else 0)


def revert_deadline_ms(site):
    """Controller silent (dead, or cut off from the PCS) -> PCS at 0 W on its own."""
    return site["pcs_revert_s"] * 1000 + cycle_ms(site) + PCS_SETTLE_MS


def react_ms(site):
    """A grid excursion the controller can see and correct: 2 cycles + the PCS lag."""
    return 2 * cycle_ms(site) + 100


def recover_ms(site):
    """After a fault clears: retry backoff + least time in SAFE + good cycles, + margin."""
    return (site["retry_max_ms"] + site["safe_hold_ms"]
            + site["recover_cycles"] * site["period_ms"] + 2000)


def site_config(site_overrides):
    """The site config the firmware runs with (it rejects a bad one and runs on defaults)."""
    try:
        return fw_config.validate(dict(site_overrides or {}))
    except ValueError:
        return fw_config.validate({})


def run_ms(mask, t_s):
    """For each sample, how long mask has been continuously true (ms); 0 where false."""
    mask = np.asarray(mask, dtype=bool)
    t = np.asarray(t_s, dtype=float)
    if not len(mask):
        return np.zeros(0)
    idx = np.arange(len(mask))
    starts = mask & ~np.concatenate(([False], mask[:-1]))
    start_idx = np.maximum.accumulate(np.where(starts, idx, 0))
    return np.where(mask, (t - t[start_idx]) * 1000, 0.0)


def _since_ms(t, t0):
    return (np.asarray(t, dtype=float) - t0) * 1000


def fault_windows(faults, t):
    """Masks over t: (any fault, pcs cut off, pcs stuck, fault spans) from the specs.

    A truth row stamped t_s is the state after the physics step from
    t_s - step, whose faults the plant looked up at the step's start, on a
    clock summed step by step (float drift of a step or so): each window is
    widened by a step before and two after, so it covers the plant's own
    meter_blind column.
    """
    from .plant.faults import Fault, parse
    t = np.asarray(t, dtype=float)
    dt = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    any_f = np.zeros(len(t), dtype=bool)
    cut = np.zeros(len(t), dtype=bool)
    stuck = np.zeros(len(t), dtype=bool)
    spans = []
    for f in faults or ():
        f = f if isinstance(f, Fault) else parse(f)
        end = np.inf if f.duration_s is None else f.start_s + f.duration_s
        on = (t >= f.start_s - dt) & (t < end + 2 * dt)
        spans.append((f, f.start_s, end))
        any_f |= on
        if f.effect in PCS_CUT and f.device in ("pcs",) or f.effect == "disconnect":
            cut |= on
        if f.effect in PCS_STUCK:
            stuck |= on
    return any_f, cut, stuck, spans


def islanded(grid_w, grid_up):
    """Samples where the site runs islanded: from a grid outage (grid_up 0)
    until it is reconnected (the grid connection carries power again)."""
    grid_w = np.asarray(grid_w, dtype=float)
    down = np.asarray(grid_up, dtype=float) == 0
    if not down.any():
        return np.zeros(len(grid_w), dtype=bool)
    zero = (grid_w == 0) | down
    # Stretches of zero grid power that contain an outage sample.
    run_id = np.cumsum(np.concatenate(([1], np.diff(zero.astype(int)) != 0)))
    hit = np.unique(run_id[down])
    return zero & np.isin(run_id, hit)


def _near(mask, t, after_ms, before_ms=0.0):
    """mask widened: true from before_ms ahead of each true stretch to after_ms past it."""
    if not mask.any():
        return mask.copy()
    out = mask.copy()
    idx = np.flatnonzero(mask)
    # Stretches of consecutive indices.
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.concatenate(([idx[0]], idx[breaks + 1]))
    ends = np.concatenate((idx[breaks], [idx[-1]]))
    for s, e in zip(starts, ends):
        out |= (t >= t[s] - before_ms / 1000) & (t <= t[e] + after_ms / 1000)
    return out


@dataclass
class Monitor:
    """The verdict over one truth window."""
    site: dict
    counts: dict = field(default_factory=lambda: {r: 0 for r in RULES})
    episodes: dict = field(default_factory=lambda: {r: 0 for r in RULES})
    excused: dict = field(default_factory=lambda: {r: 0 for r in RULES})
    found: list = field(default_factory=list)     # first sample of each episode, by time
    judged_s: float = 0.0

    @property
    def total(self):
        return int(sum(self.counts.values()))

    def summary(self, first=5):
        return {"invariant_violations": self.total,
                "first_violations": self.found[:first],
                "invariant_counts": {k: int(v) for k, v in self.counts.items() if v},
                "invariant_excused": {k: int(v) for k, v in self.excused.items() if v}}

    def _add(self, rule, bad, t, values, first, excused=None):
        bad = np.asarray(bad, dtype=bool)
        if excused is not None:
            self.excused[rule] += int((bad & excused).sum())
            bad = bad & ~excused
        idx = np.flatnonzero(bad)
        self.counts[rule] += len(idx)
        if not len(idx):
            return
        heads = idx[np.concatenate(([True], np.diff(idx) > 1))]
        self.episodes[rule] += len(heads)
        for i in heads[:first]:
            v = {"rule": rule, "t_s": round(float(t[i]), 3)}
            for k, arr in values.items():
                v[k] = int(round(float(arr[i])))
            self.found.append(v)


def _col(truth, name, n, fill=0.0):
    v = truth.get(name) if isinstance(truth, dict) else getattr(truth, name, None)
    if v is None:
        return np.full(n, fill, dtype=float)
    return np.asarray(v, dtype=float)


def monitor(truth, site_overrides, faults=(), killed_at=None, first=5):
    """Judge a truth window (dict of columns, or a sim Trace) -> Monitor."""
    site = site_config(site_overrides)
    t = _col(truth, "t_s", 0)
    n = len(t)
    mon = Monitor(site)
    if not n:
        return mon
    mon.judged_s = float(t[-1] - t[0])
    sp = _col(truth, "setpoint_w", n)
    batt = _col(truth, "battery_w", n)
    grid = _col(truth, "grid_w", n)
    load = _col(truth, "load_w", n, np.nan)
    if np.isnan(load).all():
        load = grid + batt
    soc = _col(truth, "soc_cpct", n)
    cha = _col(truth, "charge_max_w", n)
    dis = _col(truth, "discharge_max_w", n)
    blind = _col(truth, "meter_blind", n)
    island = islanded(grid, _col(truth, "grid_up", n, 1.0))
    nameplate = max(float(np.nanmax(cha)), float(np.nanmax(dis)), 1.0)
    slack = 0.01 * nameplate + 1000
    vals = {"battery_w": batt, "setpoint_w": sp, "grid_w": grid, "soc_cpct": soc,
            "charge_max_w": cha, "discharge_max_w": dis}
    any_f, cut, stuck, _ = fault_windows(faults, t)
    dead = np.zeros(n, dtype=bool) if killed_at is None else t >= killed_at
    dead_ms = np.where(dead, _since_ms(t, killed_at or 0.0), 0.0)
    stuck_near = _near(stuck, t, PCS_SETTLE_MS + cycle_ms(site))

    # 1. setpoint and 2. actual power within the PCS/BMS limits.
    mon._add("setpoint", (sp > dis + slack) | (sp < -cha - slack), t, vals, first)
    mon._add("power", (batt > dis + slack) | (batt < -cha - slack), t, vals, first)

    rev = revert_deadline_ms(site)
    no_authority = cut | stuck_near | (dead & (dead_ms <= rev))

    # 3. SoC inside its bands: never discharging below the outage reserve nor
    # charging above the maximum (beyond one hysteresis band: SoC is measured
    # a period late). A site that islands (grid outage) may use the reserve:
    # there the PCS carries the load and the floor is 0 %.
    lo = site["reserve_cpct"] - site["soc_hyst_cpct"]
    hi = site["soc_max_cpct"] + site["soc_hyst_cpct"]
    out = ((soc < lo) & (batt > slack)) | ((soc > hi) & (batt < -slack))
    mon._add("soc", out, t, vals, first, excused=island | no_authority)

    # 4. Export beyond the limit, longer than the controller can react.
    exp_lim = site["export_limit_w"] + 0.01 * site["cap_w"]
    over = grid < -exp_lim
    late_export = over & (run_ms(over, t) > react_ms(site))
    mon._add("export", late_export, t, vals, first, excused=no_authority | (blind > 0))

    # 5. Grid ramp between 1 s averages while the battery has headroom.
    _ramp(mon, t, grid, batt, grid + batt, soc, cha, dis, blind, any_f | island, dead,
          nameplate, first)

    # 6. PCS at 0 W (or the safe setpoint) past the deadline when the meter is
    # lost or the controller has died.
    blind_ms = run_ms(blind > 0, t)
    cut_ms = run_ms(cut, t)
    meter_late = np.where(blind == 2, blind_ms > deadline_ms(site, frozen=True),
                          blind_ms > deadline_ms(site))
    # Cut off from the PCS too (a pulled cable): only its own timeout helps.
    meter_late &= ~cut | (cut_ms > rev)
    safe = float(site["safe_setpoint_w"])
    safe_hi = np.minimum(max(safe, 0.0), dis) + slack
    safe_lo = -np.minimum(max(-safe, 0.0), cha) - slack
    blind_bad = meter_late & ((batt > safe_hi) | (batt < safe_lo))
    dead_bad = dead & (dead_ms > rev) & (np.abs(batt) > slack)
    mon._add("pcs_zero", blind_bad | dead_bad, t, vals, first,
             excused=(stuck_near | island) & ~dead)
    mon.found.sort(key=lambda v: v["t_s"])
    return mon


def _ramp(mon, t, grid, batt, load, soc, cha, dis, blind, any_f, dead, nameplate, first):
    site = mon.site
    up, down = site["ramp_up_w_per_s"], site["ramp_down_w_per_s"]
    if not (up or down) or len(t) < 3:
        return
    dt = float(np.median(np.diff(t)))
    per = max(1, int(round(1.0 / dt)))
    k = len(t) // per
    if k < 3:
        return
    cut = k * per
    blk = lambda x: x[:cut].reshape(k, per)
    g = blk(grid).mean(axis=1)
    d = np.diff(g)                                   # block j+1 minus block j
    L = blk(load)
    pair = lambda a, f: f(np.stack([a[:-1], a[1:]]), axis=0)
    load_range = pair(L.max(axis=1), np.max) - pair(L.min(axis=1), np.min)
    latency_s = (2 * site["period_ms"] + site["response_timeout_ms"] + 50) / 1000
    allow_extra = 0.01 * nameplate + latency_s * load_range
    margin = 0.02 * nameplate
    B, C, D, S = blk(batt), blk(cha), blk(dis), blk(soc)
    # Headroom over both blocks, in the direction the ramp limit needs.
    dis_room = pair(B.max(axis=1), np.max) < pair(D.min(axis=1), np.min) - margin
    cha_room = pair(B.min(axis=1), np.min) > -pair(C.min(axis=1), np.min) + margin
    band = max(site["soc_hyst_cpct"], site["soc_taper_cpct"]) + 10
    soc_lo = max(site["soc_min_cpct"], site["reserve_cpct"]) + band
    dis_room &= pair(S.min(axis=1), np.min) > soc_lo
    cha_room &= pair(S.max(axis=1), np.max) < site["soc_max_cpct"] - band
    if site["tou"]:
        cha_room &= False                 # a time-of-use window may forbid grid charging
    # Away from faults (and their recovery), a dead controller and the start.
    quiet_mask = _near(any_f | (blind > 0), t, recover_ms(site), before_ms=1000) | dead
    noisy = pair(blk(quiet_mask.astype(float)).max(axis=1), np.max) > 0
    noisy[:1] = True                      # the first pair: the engine starts from its first reading
    bad_up = (d > up + allow_extra) & dis_room if up else np.zeros(len(d), dtype=bool)
    bad_dn = (-d > down + allow_extra) & cha_room if down else np.zeros(len(d), dtype=bool)
    bad = bad_up | bad_dn
    tb = blk(t)[1:, 0]                               # start time of the later block
    vals = {"grid_ramp_w_per_s": d, "allowed_w_per_s": np.where(d >= 0, up, -down) +
            np.sign(d) * allow_extra, "grid_w": g[1:], "battery_w": B[1:].mean(axis=1),
            "soc_cpct": S[1:, 0]}
    mon._add("ramp", bad, tb, vals, first, excused=noisy)


def check(truth, site_overrides, first=5, faults=(), killed_at=None):
    """(count, [first violations]) over the truth window given (the rig's old API)."""
    mon = monitor(truth, site_overrides, faults=faults, killed_at=killed_at, first=first)
    return mon.total, mon.found[:first]
