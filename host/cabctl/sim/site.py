"""Outage, PV and genset in `cabctl sim`: the firmware's site logic and its figures.

CabinetSite is the cabinet controller with the firmware's cabinet/site.py
around the engine, in the order Controller.cycle runs them: the site's
update from the meter's voltage/frequency and the PCS's islanded alarm
(leaving outage mode restarts the engine's grid ramp), the PV limit, then the
engine with the outage status. Its outputs are what the controller writes:
the PCS's connect point (reconnect only when it says so), the genset contact
and the PV inverter's limit. The physics (islanding, PV under clouds, the
genset's start delay and ramp) is the emulator's plant model (plant/model.py).
"""
import numpy as np

from ..fw import dispatch, site
from ..truth import rolling_mean
from .controllers import Cabinet


class CabinetSite(Cabinet):
    name = "cabinet"

    def __init__(self, site_cfg, pv=False, **kw):
        super().__init__(site_cfg, **kw)
        self.cfg = site_cfg
        self.site = site.Site(site_cfg)
        self.pv = pv                   # a PV inverter is read (the firmware's pv_map)

    def step(self, m):
        s = self.site
        was_out = s.outage
        s.update(m.voltage_dv, m.freq_mhz, m.islanded, m.soc_cpct, m.dt_ms)
        if was_out and not s.outage:
            self.engine.reset_ramp()       # the grid returns at the ramp limits
        if self.pv:
            room = 0 if self.engine.charge_blocked() else m.charge_max_w
            s.curtail_pv(m.pv_w, m.grid_w + m.battery_w + m.pv_w, room,
                         self.cfg["export_limit_w"], self.cfg["pv_curtail_margin_w"])
        self.status = dispatch.ST_OUTAGE if s.outage else 0
        return super().step(m)

    def outputs(self):
        """(PCS connect point, genset start, PV limit W or None) as written to the devices."""
        s = self.site
        lim = None if s.pv_limit_w >= site.PV_NO_LIMIT else s.pv_limit_w
        return (0 if s.outage else 1), s.genset, lim


def _first_t(t, mask):
    idx = np.flatnonzero(mask)
    return float(t[idx[0]]) if len(idx) else None


def _rel(t, t0):
    return None if t is None else round(t - t0, 2)


def ride_through(tr, outage, site_cfg, after_s=600.0):
    """Figures of an outage from the plant's truth (a site Trace).

    Energy over the islanded time (from the outage until the site is
    reconnected, so the reconnect delay counts too); times in s after the
    outage started (genset, shed) or after the grid came back (reconnect);
    the largest change between 1 s grid averages within after_s of the
    reconnection."""
    t, dt = tr.t_s, tr.period_s
    o0, o1 = outage.start_s, outage.start_s + outage.duration_s
    isl = tr.islanded > 0
    after = t >= o0
    wh = lambda x, m: round(float(np.asarray(x)[m].sum()) * dt / 3600, 1)
    demand_wh = wh(tr.load_w, isl)
    unserved_wh = wh(tr.unserved_w, isl)
    t_req = _first_t(t, after & (tr.genset_cmd > 0))
    t_gen = _first_t(t, after & (tr.genset_w > 0))
    t_shed = _first_t(t, after & ((tr.site_flags.astype(int) & site.SHED) > 0))
    t_back = _first_t(t, (t >= o1) & ~isl)
    soc_out = tr.soc_cpct[isl] if isl.any() else tr.soc_cpct[after]
    at = lambda x, when: None if when is None else int(x[np.searchsorted(t, when)])
    out = {
        "outage_start_s": o0, "outage_s": outage.duration_s,
        "islanded_s": round(float(isl.sum()) * dt, 2),
        "demand_wh": demand_wh, "served_wh": round(demand_wh - unserved_wh, 1),
        "unserved_wh": unserved_wh,
        # Produced while islanded (the battery charges from genset or PV surplus).
        "battery_discharged_wh": wh(np.clip(tr.battery_w, 0, None), isl),
        "battery_charged_wh": wh(np.clip(-tr.battery_w, 0, None), isl),
        "pv_wh": wh(tr.pv_w, isl), "genset_wh": wh(tr.genset_w, isl),
        "genset_requested_s": _rel(t_req, o0), "genset_started_s": _rel(t_gen, o0),
        "soc_at_genset_request_cpct": at(tr.soc_cpct, t_req),
        "shed_requested_s": _rel(t_shed, o0), "soc_at_shed_cpct": at(tr.soc_cpct, t_shed),
        "shed_soc_cpct": site_cfg["shed_soc_cpct"],
        "min_soc_cpct": int(soc_out.min()), "min_soc_pct": round(float(soc_out.min()) / 100, 2),
        "reconnect_after_return_s": _rel(t_back, o1),
        "reconnect_ms": site_cfg["reconnect_ms"],
        "max_grid_ramp_after_return_w_per_s": None,
        "ramp_limit_w_per_s": max(site_cfg["ramp_up_w_per_s"], site_cfg["ramp_down_w_per_s"]),
    }
    if t_back is not None:
        # 1 s averages of the grid, compared one second apart, from the reconnection on.
        w = (t >= t_back - 1.0) & (t <= t_back + after_s)
        per_s = rolling_mean(tr.grid_w[w], t[w], 1.0)
        n = int(round(1 / dt))
        if len(per_s) > n:
            out["max_grid_ramp_after_return_w_per_s"] = int(np.abs(per_s[n:] - per_s[:-n]).max())
    return out


def pv_figures(tr):
    """PV energy, and what of the surplus over the load went to the battery or was exported."""
    dt = tr.period_s
    surplus = np.clip(tr.pv_w - tr.load_w, 0, None)
    wh = lambda x: round(float(np.sum(x)) * dt / 3600, 1)
    return {"pv_wh": wh(tr.pv_w), "pv_surplus_wh": wh(surplus),
            "exported_wh": wh(np.clip(-tr.grid_w, 0, None)),
            "charged_from_surplus_wh": wh(np.minimum(surplus, np.clip(-tr.battery_w, 0, None)))}


def format_lines(name, rep):
    """Table lines for the outage and PV figures of one controller's report."""
    lines = []
    o = rep.get("outage")
    fmt = lambda v, unit="": "-" if v is None else f"{v:g}{unit}" if isinstance(v, float) \
        else f"{v}{unit}"
    wh = lambda v: f"{v:,.1f} Wh"
    if o:
        lines += [
            f"{name}: outage at {o['outage_start_s']:g} s for {o['outage_s']:g} s, islanded "
            f"{o['islanded_s']:g} s: served {wh(o['served_wh'])} of {wh(o['demand_wh'])} "
            f"(unserved {wh(o['unserved_wh'])}); battery discharged "
            f"{wh(o['battery_discharged_wh'])} and charged {wh(o['battery_charged_wh'])}, "
            f"PV {wh(o['pv_wh'])}, genset {wh(o['genset_wh'])}",
            f"  genset requested {fmt(o['genset_requested_s'], ' s')}, started "
            f"{fmt(o['genset_started_s'], ' s')} after the outage began; load shed requested "
            f"{fmt(o['shed_requested_s'], ' s')} (shed_soc_cpct {o['shed_soc_cpct']})",
            f"  min SoC {o['min_soc_cpct']} (0.01 %) = {o['min_soc_pct']:g} %; reconnected "
            f"{fmt(o['reconnect_after_return_s'], ' s')} after the grid returned "
            f"(reconnect_ms {o['reconnect_ms']}); max 1 s grid ramp after return "
            f"{fmt(o['max_grid_ramp_after_return_w_per_s'], ' W/s')} "
            f"(limit {o['ramp_limit_w_per_s']} W/s)"]
    p = rep.get("pv")
    if p:
        lines.append(f"{name}: PV {wh(p['pv_wh'])}, surplus over the load {wh(p['pv_surplus_wh'])}"
                     f", of it charged into the battery {wh(p['charged_from_surplus_wh'])}, "
                     f"exported {wh(p['exported_wh'])}")
    return lines
