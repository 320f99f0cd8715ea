"""Physics of the plant: battery + PCS + grid connection, PV and a genset,
stepped with dt.

Signs as in the firmware: grid > 0 import, battery > 0 discharge.
grid = load - pv - genset - battery. The PCS follows its setpoint through a
ramp limit and a first-order lag and clamps to its limits; the battery
integrates SoC with a round-trip efficiency split evenly between charge and
discharge; limits derate to zero at the SoC ends as a BMS would.

Grid outage: the PCS islands and forms the grid itself, carrying whatever
the site needs after PV and genset (within its limits); what it cannot carry
is unserved load, and PV it cannot absorb is curtailed. The meter at the grid
connection then reads 0 V, 0 Hz, 0 W.
"""
import math
import random
from dataclasses import dataclass, asdict

V_NOMINAL_DV = 2400           # 240.0 V line-neutral, as the meter reports it
F_NOMINAL_MHZ = 60000


@dataclass
class PlantConfig:
    capacity_wh: float = 20e6          # 20 MWh
    soc0_cpct: int = 6000
    charge_max_w: float = 10e6
    discharge_max_w: float = 10e6
    efficiency_rt: float = 0.92        # round trip
    pcs_tau_ms: float = 20.0           # first-order lag of the power stage
    pcs_ramp_w_per_s: float = 200e6
    meter_interval_ms: float = 50.0    # how often the meter's registers update
    pcs_interval_ms: float = 50.0      # how often the PCS's measured values update
    revert_s_default: int = 5          # PCS falls back to 0 W after heartbeat silence
    step_ms: float = 5.0               # physics step (200 Hz)
    pv_peak_w: float = 0.0             # PV array at noon in clear sky (0: no PV)
    pv_cloud_seed: int = 3
    clock_start_h: float = 12.0        # time of day at plant t = 0 (for the PV curve)
    genset_max_w: float = 0.0          # diesel genset (0: none)
    genset_start_delay_s: float = 10.0 # crank, warm-up, synchronise
    genset_ramp_w_per_s: float = 1e6

    def to_dict(self):
        return asdict(self)


class Plant:
    def __init__(self, cfg: PlantConfig, load):
        self.cfg = cfg
        self.load = load              # callable t -> W
        self.t = 0.0
        self.soc_wh = cfg.capacity_wh * cfg.soc0_cpct / 10000
        self.battery_w = 0.0          # actual AC power
        self._ref_w = 0.0             # ramp-limited reference inside the PCS
        self.setpoint_w = 0.0         # last setpoint written by the controller
        self.enabled = False
        self.heartbeat = None
        self.heartbeat_t = 0.0
        self.revert_s = cfg.revert_s_default
        self.reverted = False
        self.faulted = False          # PCS/BMS fault: trips to 0 W, alarm bit set
        self.stuck = False            # PCS ignores setpoint changes
        self.grid_up = True           # False: outage, the PCS islands
        self.islanded = False         # the site runs on the PCS (grid lost, not reconnected)
        self.connect_cmd = None       # the controller's connect register (None: no such point)
        self.pv_w = 0.0               # produced (after curtailment)
        self.pv_limit_w = None        # curtailment requested by the controller
        self.genset_cmd = False       # start requested (contact or Modbus)
        self.genset_w = 0.0
        self._genset_since = None
        self.unserved_w = 0.0
        self._saw_disconnect = False
        self._clouds = _Clouds(cfg.pv_cloud_seed) if cfg.pv_peak_w else None
        self.load_w = load(0.0)
        self.grid_w = self.load_w
        # What the devices report: snapshots taken at their own update rates.
        self.meter_grid_w = self.grid_w
        self.pcs_battery_w = 0.0
        self._next_meter = 0.0
        self._next_pcs = 0.0

    @property
    def soc_cpct(self):
        return int(10000 * self.soc_wh / self.cfg.capacity_wh)

    def limits(self):
        """(charge_max_w, discharge_max_w) after BMS derating near empty and full."""
        c = self.cfg
        soc = self.soc_cpct
        dis = c.discharge_max_w * min(1.0, max(0.0, soc / 500))           # 0..5 %
        cha = c.charge_max_w * min(1.0, max(0.0, (10000 - soc) / 500))   # 95..100 %
        return cha, dis

    def pv_available_w(self):
        """Irradiance curve (sine between 06:00 and 20:00) under passing clouds."""
        if not self._clouds:
            return 0.0
        h = (self.cfg.clock_start_h + self.t / 3600) % 24
        sun = math.sin(math.pi * (h - 6) / 14) if 6 < h < 20 else 0.0
        return self.cfg.pv_peak_w * sun * self._clouds.factor(self.t)

    def _genset_step(self, dt):
        c = self.cfg
        if not self.genset_cmd or not c.genset_max_w:
            self._genset_since = None
            self.genset_w = max(0.0, self.genset_w - c.genset_ramp_w_per_s * dt)
            return
        if self._genset_since is None:
            self._genset_since = self.t
        if self.t - self._genset_since >= c.genset_start_delay_s:
            self.genset_w = min(c.genset_max_w, self.genset_w + c.genset_ramp_w_per_s * dt)

    @property
    def meter_v_dv(self):
        # The meter sits on the grid side of the connection: it sees the grid
        # come back even while the site is still islanded.
        return V_NOMINAL_DV if self.grid_up else 0

    @property
    def meter_f_mhz(self):
        return F_NOMINAL_MHZ if self.grid_up else 0

    def write_heartbeat(self, value):
        if value != self.heartbeat:
            self.heartbeat = value
            self.heartbeat_t = self.t

    def target_w(self):
        # Heartbeat reversion: a silent controller gets 0 W after revert_s.
        self.reverted = self.t - self.heartbeat_t > self.revert_s
        if self.stuck:
            return self._ref_w                 # frozen where it was
        if not self.enabled or self.reverted or self.faulted:
            return 0.0
        cha, dis = self.limits()
        return min(max(self.setpoint_w, -cha), dis)

    def step(self, dt):
        c = self.cfg
        self.t += dt
        self.load_w = self.load(self.t)
        self._genset_step(dt)
        pv = self.pv_available_w()
        if self.pv_limit_w is not None:
            pv = min(pv, max(0.0, self.pv_limit_w))
        cha, dis = self.limits()
        if not self.grid_up:
            self.islanded = True
        elif self.islanded and self.connect_cmd in (None, 1) and self._saw_disconnect:
            self.islanded = False          # resynchronised and reconnected on command
        self._saw_disconnect = self.islanded and (self._saw_disconnect or self.connect_cmd in (None, 0))
        if not self.islanded:
            self._follow_setpoint(dt)
            self.battery_w = min(max(self.battery_w, -cha), dis)
            self.unserved_w = 0.0
        else:
            # Islanded: the grid-forming PCS carries the rest of the site.
            need = self.load_w - pv - self.genset_w
            self.battery_w = min(max(need, -cha), dis)
            self._ref_w = self.battery_w
            self.unserved_w = max(0.0, need - dis)
            if need < -cha:
                pv -= -cha - need                 # PV the battery cannot absorb is curtailed
        self.pv_w = pv
        eta = math.sqrt(c.efficiency_rt)
        if self.battery_w >= 0:
            self.soc_wh -= self.battery_w / eta * dt / 3600
        else:
            self.soc_wh -= self.battery_w * eta * dt / 3600
        self.soc_wh = min(max(self.soc_wh, 0.0), c.capacity_wh)
        if not self.islanded:
            self.grid_w = self.load_w - pv - self.genset_w - self.battery_w
        else:
            self.grid_w = 0.0
        if self.t >= self._next_meter:
            self.meter_grid_w = self.grid_w
            self._next_meter += c.meter_interval_ms / 1000
        if self.t >= self._next_pcs:
            self.pcs_battery_w = self.battery_w
            self._next_pcs += c.pcs_interval_ms / 1000

    def _follow_setpoint(self, dt):
        c = self.cfg
        target = self.target_w()
        # The power stage's reference moves toward the target at the ramp
        # limit; the actual power follows the reference with a first-order lag.
        max_step = c.pcs_ramp_w_per_s * dt
        self._ref_w += min(max(target - self._ref_w, -max_step), max_step)
        a = 1 - math.exp(-dt * 1000 / c.pcs_tau_ms) if c.pcs_tau_ms > 0 else 1.0
        self.battery_w += (self._ref_w - self.battery_w) * a


class _Clouds:
    """Passing clouds: a slowly varying factor in 0.2..1, deterministic from a seed."""

    def __init__(self, seed, every_s=45.0):
        rng = random.Random(seed)
        self.every = every_s
        self.level = [1.0 if rng.random() < 0.6 else rng.uniform(0.2, 0.8) for _ in range(4096)]

    def factor(self, t):
        k, f = divmod(t / self.every, 1.0)
        a = self.level[int(k) % len(self.level)]
        b = self.level[(int(k) + 1) % len(self.level)]
        return a + (b - a) * f
