# Fleet share: N cabinets on one site feeder, each reading the same site
# meter, hold one cap together without talking to each other.
#
# Alone, a cabinet estimates the site load as grid + its own battery. With N
# cabinets that estimate misses the others' batteries, so each would cover
# the whole excess: N-fold overshoot, then oscillation. Here each cabinet
# runs the unchanged dispatch engine on a virtual site of 1/s copies of
# itself (s = its share, per mille): battery and PCS limits are scaled up by
# 1000/s on the way in, the setpoint down by s/1000 on the way out. What
# comes out is
#
#     setpoint = battery + s * (grid - cap)          (in the cap band)
#
# a correction of the shared error anchored to the cabinet's *measured*
# power: every cabinet takes share s_i of the site's error, the sum of the
# corrections is sum(s_i) * error, and with sum(s_i) <= 1 the fleet never
# corrects more than the error (no overshoot). Because it is anchored to the
# measured power, not to the last setpoint, seeing the same stale error twice
# does not double a cabinet's own correction, and with sum(s_i) = 1 the
# fleet settles in one cycle like a single cabinet (error after a cycle:
# (1 - sum(s_i)) * error). A cabinet that cannot deliver (PCS limit, SoC)
# leaves error behind, which the others pick up on the next cycles.
# Between recharge_w and the cap every cabinet goes to 0 W, so the split
# starts from zero at every dip of the load and stays in proportion to the
# shares. Every other stage (recharge, export, DR, grid ramp, prediction)
# works on the site's figures through the same mapping.
#
# Shares: dis_pm while discharging, cha_pm while charging. Locally they are
# fleet_share_pm (the cabinet's nameplate over the fleet's), tapered to 1 pm
# over fleet_soc_knee_cpct before the reserve (discharge) or soc_max
# (charge): a nearly empty cabinet takes less and the others more, and the
# sum only shrinks. A site coordinator (`cabctl site`, command "share") may
# set both; they lapse after coord_timeout_ms without a new command and the
# local shares apply again.
#
# share 1000 with no coordinator: the engine is called exactly as without
# this module. All integer, no allocation; |x| stays below 2**30.
MAX_W = 1000000000        # the engine is proven for inputs up to 1 GW
PM = 1000


def up(x, s):
    """x * 1000 / s (floor), clamped to +-MAX_W; s in 1..1000."""
    lim = MAX_W // PM * s
    if x > lim:
        return MAX_W
    if x < -lim:
        return -MAX_W
    return (x // s) * PM + (x % s) * PM // s


def down(x, s):
    """x * s / 1000 (floor); |x| <= 2**30, s in 1..1000."""
    return (x // PM) * s + (x % PM) * s // PM


def taper(share, room, knee):
    """share scaled by room/knee (1 pm at the least) while room < knee."""
    if knee <= 0 or room >= knee:
        return share
    s = share * room // knee if room > 0 else 0
    return s if s > 0 else 1


class Share:
    def __init__(self, cfg):
        self.coord_dis_pm = self.coord_cha_pm = 0
        self.coord_left_ms = 0        # > 0: the coordinator's shares apply
        self.lapsed = 0               # coordinator shares that lapsed since boot
        self.configure(cfg)

    def configure(self, cfg):
        """A new validated config (keeps a coordinator's shares)."""
        self.share_pm = cfg['fleet_share_pm']
        self.knee = cfg['fleet_soc_knee_cpct']
        self.reserve = cfg['reserve_cpct']
        self.soc_max = cfg['soc_max_cpct']
        self.timeout_ms = cfg['coord_timeout_ms']
        self.dis_pm = self.cha_pm = self.share_pm

    def active(self):
        """False: the cabinet is alone on its feeder, dispatch as without a fleet."""
        return self.share_pm < PM or self.coord_left_ms > 0

    def coordinate(self, dis_pm, cha_pm):
        """Shares from the coordinator, valid for coord_timeout_ms."""
        self.coord_dis_pm = dis_pm if dis_pm > 0 else 1
        self.coord_cha_pm = cha_pm if cha_pm > 0 else 1
        self.coord_left_ms = self.timeout_ms

    def tick(self, dt_ms):
        """True when the coordinator's shares lapsed this cycle."""
        if self.coord_left_ms > 0:
            self.coord_left_ms -= dt_ms
            if self.coord_left_ms <= 0:
                self.coord_left_ms = 0
                self.lapsed += 1
                return True
        return False

    def update(self, soc_cpct):
        """This cycle's shares (dis_pm, cha_pm)."""
        if self.coord_left_ms > 0:
            self.dis_pm = self.coord_dis_pm
            self.cha_pm = self.coord_cha_pm
        elif self.share_pm < PM:
            self.dis_pm = taper(self.share_pm, soc_cpct - self.reserve, self.knee)
            self.cha_pm = taper(self.share_pm, self.soc_max - soc_cpct, self.knee)
        else:
            self.dis_pm = self.cha_pm = PM    # alone: the engine's own SoC stages only

    def site_battery_w(self, battery_w):
        """The fleet's battery power as this cabinet estimates it."""
        return up(battery_w, self.dis_pm if battery_w >= 0 else self.cha_pm)

    def step(self, engine, grid_w, battery_w, soc_cpct, charge_max_w, discharge_max_w,
             status, minute_of_day, dr_limit_w, dt_ms, ff_w, ff_sure_w=0):
        """engine.step on the virtual site; this cabinet's setpoint (W)."""
        dis = self.dis_pm
        cha = self.cha_pm
        sp = engine.step(grid_w, self.site_battery_w(battery_w), soc_cpct,
                         up(charge_max_w, cha), up(discharge_max_w, dis), status,
                         minute_of_day, dr_limit_w, dt_ms, ff_w, ff_sure_w)
        sp = down(sp, dis) if sp >= 0 else down(sp, cha)
        if sp > discharge_max_w:
            return discharge_max_w
        if sp < -charge_max_w:
            return -charge_max_w
        return sp
