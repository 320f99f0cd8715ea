# Outage ride-through: grid loss and return, load-shed request, genset.
#
# The grid is lost when the meter's voltage or frequency leaves its window
# (or the PCS reports it has islanded) for outage_detect_ms; it is back only
# after reconnect_ms of stable voltage and frequency. During an outage the
# PCS forms the grid and carries the site; this module decides the requests
# around it: shed load at shed_soc_cpct (the cluster scheduler checkpoints
# and sheds), start the genset when SoC falls to genset_start_soc_cpct or the
# outage outlasts genset_start_after_ms, keep it at least genset_min_run_ms,
# and let it cool down for genset_cooldown_ms after the grid returns.
# Integer milliseconds, no allocation per update.

OUTAGE = 1        # bits of .flags (telemetry `site_flags`)
SHED = 2
GENSET = 4
CURTAIL = 8
PV_NO_LIMIT = 0x1FFFFFFF  # PV limit register value: not curtailed


class Site:
    def __init__(self, cfg):
        self.v_lo = cfg['grid_v_min_dv']
        self.v_hi = cfg['grid_v_max_dv']
        self.f_lo = cfg['grid_f_min_mhz']
        self.f_hi = cfg['grid_f_max_mhz']
        self.detect_ms = cfg['outage_detect_ms']
        self.reconnect_ms = cfg['reconnect_ms']
        self.shed_soc = cfg['shed_soc_cpct']
        self.gen_soc = cfg['genset_start_soc_cpct']
        self.gen_after_ms = cfg['genset_start_after_ms']
        self.gen_min_ms = cfg['genset_min_run_ms']
        self.cooldown_ms = cfg['genset_cooldown_ms']
        self.outage = False
        self.shed = False
        self.genset = False
        self.curtail = False
        self.bad_ms = 0           # grid out of window for this long
        self.good_ms = 0          # grid in window for this long (during an outage)
        self.outage_ms = 0
        self.gen_ms = 0           # genset running for this long
        self.cool_ms = 0          # cool-down left after the grid returned
        self.changed = 0          # flags that changed in the last update
        self.pv_limit_w = PV_NO_LIMIT

    def grid_ok(self, voltage_dv, freq_mhz):
        return (self.v_lo <= voltage_dv <= self.v_hi) and (self.f_lo <= freq_mhz <= self.f_hi)

    def update(self, voltage_dv, freq_mhz, islanded, soc_cpct, dt_ms):
        before = self.flags
        ok = self.grid_ok(voltage_dv, freq_mhz)
        if not self.outage:
            # The PCS islanding is an outage too; while islanded it stays so
            # until we reconnect it, so only the meter can tell the grid is back.
            self.bad_ms = 0 if ok and not islanded else self.bad_ms + dt_ms
            if self.bad_ms >= self.detect_ms:
                self.outage = True
                self.outage_ms = 0
                self.good_ms = 0
        else:
            self.outage_ms += dt_ms if self.outage_ms < 0x3FFFFFFF - dt_ms else 0
            self.good_ms = self.good_ms + dt_ms if ok else 0
            if self.good_ms >= self.reconnect_ms:
                self.outage = False
                self.shed = False
                self.bad_ms = 0
                if self.genset:
                    self.cool_ms = self.cooldown_ms
        if self.outage:
            if soc_cpct <= self.shed_soc:
                self.shed = True
            if not self.genset and (soc_cpct <= self.gen_soc or self.outage_ms >= self.gen_after_ms):
                self.genset = True
                self.gen_ms = 0
        if self.genset:
            self.gen_ms += dt_ms if self.gen_ms < 0x3FFFFFFF - dt_ms else 0
            if not self.outage and self.gen_ms >= self.gen_min_ms:
                if self.cool_ms > 0:
                    self.cool_ms -= dt_ms
                else:
                    self.genset = False
        self.changed = before ^ self.flags

    def curtail_pv(self, pv_w, consumption_w, room_w, export_limit_w, margin_w):
        """PV limit (W, PV_NO_LIMIT: none) so the site exports at most export_limit_w.

        What fits is the site's consumption plus what the battery can still
        absorb (room_w); near that, limit the PV with a margin for a load drop
        between cycles."""
        allowed = consumption_w + room_w + export_limit_w - margin_w
        if self.curtail:
            # Keep limiting while the PV output sits at its limit (it could
            # give more); release when clouds keep it well below.
            self.curtail = pv_w >= self.pv_limit_w - margin_w
        else:
            self.curtail = pv_w > allowed
        self.pv_limit_w = (allowed if allowed > 0 else 0) if self.curtail else PV_NO_LIMIT
        return self.pv_limit_w

    @property
    def flags(self):
        return ((OUTAGE if self.outage else 0) | (SHED if self.shed else 0)
                | (GENSET if self.genset else 0) | (CURTAIL if self.curtail else 0))
