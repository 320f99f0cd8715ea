# The site's devices around cabinet/site.py's decisions (a mixin of
# cabinet/controller.py's Controller): each cycle site.py judges outage, load
# shed, genset and PV curtailment from the meter and PCS readings; this reads
# the optional PV inverter and genset controller (on the meter's bus), writes
# their requests and the board's shed/genset contacts, and reports changes.
from cabinet import site
from cabinet.failsafe import ALARM_ISLANDED
from cabinet.sensing import load_device


class SiteIo:
    def _site_setup(self, master, cfg, root):
        """The optional PV inverter and genset controller (map '' = none)."""
        self.pv = self.genset = None
        if cfg['pv_map']:
            self.pv = load_device(master, cfg['pv_unit'], root, cfg['pv_map'])
            self.pv_w_i, self.pv_lim_i = self.pv.role('pv_w'), self.pv.role('pv_limit_w', False)
        if cfg['genset_map']:
            self.genset = load_device(master, cfg['genset_unit'], root, cfg['genset_map'])
            self.gen_start_i, self.gen_w_i = self.genset.role('start'), self.genset.role('genset_w')
        self.pv_w = self.genset_w = 0
        self.pv_limit_w = site.PV_NO_LIMIT

    def _site(self, dt_ms):
        """Outage, load shed, genset, PV: read the optional devices, decide requests."""
        s = self.site
        was_out = s.outage
        s.update(self.voltage_dv, self.freq_mhz, self.alarms & ALARM_ISLANDED, self.soc, dt_ms)
        if was_out and not s.outage:
            self.engine.reset_ramp()       # the grid returns at the ramp limits
        if self.pv is not None and not self.pv.read():
            self.pv_w = self.pv.value(self.pv_w_i)
            # PV curtailment (site.py; `cabctl sim` runs the same method).
            cfg = self.cfg
            room = 0 if self.engine.charge_blocked() else self.cha
            self.pv_limit_w = s.curtail_pv(self.pv_w, self.grid_w + self.batt_w + self.pv_w, room,
                                           cfg['export_limit_w'], cfg['pv_curtail_margin_w'])
            if self.pv_lim_i >= 0:
                self.pv.set(self.pv_lim_i, self.pv_limit_w)
                self.pv.write()
        if self.genset is not None:
            if not self.genset.read():
                self.genset_w = self.genset.value(self.gen_w_i)
            self.genset.set(self.gen_start_i, 1 if s.genset else 0)
            self.genset.write()
        b = self.board
        b.set_output('shed', s.shed)
        b.set_output('genset', s.genset)
        if s.changed:
            self._site_event()
