"""Physics of the plant: battery + PCS + grid connection, stepped with dt.

Signs as in the firmware: grid > 0 import, battery > 0 discharge.
grid = load - battery (no PV yet). The PCS follows its setpoint through a
ramp limit and a first-order lag and clamps to its limits; the battery
integrates SoC with a round-trip efficiency split evenly between charge and
discharge; limits derate to zero at the SoC ends as a BMS would.
"""
import math
from dataclasses import dataclass, asdict


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
        target = self.target_w()
        # The power stage's reference moves toward the target at the ramp
        # limit; the actual power follows the reference with a first-order lag.
        max_step = c.pcs_ramp_w_per_s * dt
        self._ref_w += min(max(target - self._ref_w, -max_step), max_step)
        a = 1 - math.exp(-dt * 1000 / c.pcs_tau_ms) if c.pcs_tau_ms > 0 else 1.0
        self.battery_w += (self._ref_w - self.battery_w) * a
        cha, dis = self.limits()
        self.battery_w = min(max(self.battery_w, -cha), dis)
        eta = math.sqrt(c.efficiency_rt)
        if self.battery_w >= 0:
            self.soc_wh -= self.battery_w / eta * dt / 3600
        else:
            self.soc_wh -= self.battery_w * eta * dt / 3600
        self.soc_wh = min(max(self.soc_wh, 0.0), c.capacity_wh)
        self.load_w = self.load(self.t)
        self.grid_w = self.load_w - self.battery_w
        if self.t >= self._next_meter:
            self.meter_grid_w = self.grid_w
            self._next_meter += c.meter_interval_ms / 1000
        if self.t >= self._next_pcs:
            self.pcs_battery_w = self.battery_w
            self._next_pcs += c.pcs_interval_ms / 1000
