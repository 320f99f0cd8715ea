# Site configuration: defaults, loading and validation. Runs once at boot, so
# it may allocate; the control loop only reads the validated dict (and the
# engine derives its per-cycle constants from it once).
import json
from cabinet import tou

MAX_W = 1000000000    # 1 GW: the largest site power the engine is proven for

# key: (default, min, max). A None range means "any value of the default's type".
SPEC = {
    'period_ms': (50, 10, 10000),             # control cycle
    'cap_w': (18000000, 1, MAX_W),            # contracted grid import cap
    'recharge_w': (14000000, 0, MAX_W),       # charge only while load is below this
    'recharge_max_w': (2000000, 0, MAX_W),    # valley charging power limit: a load step
                                              # while charging lands on the grid in full
    'reserve_cpct': (1000, 0, 10000),         # outage reserve: no discharge at or below
    'soc_min_cpct': (2000, 0, 10000),         # everyday minimum: only the cap/DR go lower
    'soc_max_cpct': (9500, 0, 10000),         # no charge at or above
    'soc_hyst_cpct': (100, 0, 2000),          # a blocked direction reopens this far inside
    'soc_taper_cpct': (0, 0, 2000),           # power fades to 0 over this band before a limit
    'export_limit_w': (0, 0, MAX_W),          # largest allowed export (0: never export)
    'export_margin_w': (0, 0, MAX_W),         # aim this far inside the export limit
    'ramp_up_w_per_s': (0, 0, MAX_W),         # grid-side ramp limits (0: off)
    'ramp_down_w_per_s': (0, 0, MAX_W),
    'ramp_down_delay_ms': (0, 0, 600000),     # hold the grid this long after a drop
    'grid_floor_w': (0, 0, MAX_W),            # keep grid import at least this (0: off)
    'slew_w_per_s': (0, 0, MAX_W),            # PCS setpoint slew limit (0: off)
    'tou': ([], None, None),                  # time-of-use windows, see cabinet/tou.py
    'meter_map': ('meter_sunspec', None, None),
    'meter_unit': (1, 1, 247),
    'pcs_map': ('pcs_sunspec', None, None),
    'pcs_unit': (2, 1, 247),
    'response_timeout_ms': (20, 1, 1000),     # Modbus reply deadline
    'meter_fail_cycles': (3, 1, 100),         # consecutive errors before the meter is lost
    'pcs_fail_cycles': (3, 1, 100),
    'max_age_ms': (1000, 10, 60000),          # older data is not acted on
    'retry_base_ms': (200, 0, 60000),         # a lost device is retried after base * n ...
    'retry_max_ms': (5000, 0, 300000),        # ... at most this long
    'meter_frozen_ms': (3000, 0, 600000),     # bit-identical readings this long: frozen (0 off)
    'follow_ms': (3000, 0, 600000),           # PCS off its setpoint this long: fault (0 off)
    'follow_tol_w': (500000, 0, MAX_W),       # ... by more than this
    'safe_setpoint_w': (0, -MAX_W, MAX_W),    # commanded while the meter is lost
    'safe_hold_ms': (1000, 0, 600000),        # least time in SAFE before recovering
    'recover_cycles': (3, 1, 1000),           # good cycles in a row to leave SAFE
    'pcs_revert_s': (5, 1, 3600),             # PCS returns to 0 W after this silence
    'grid_v_min_dv': (2040, 0, 100000),       # grid in window: voltage (0.1 V) ...
    'grid_v_max_dv': (2760, 0, 100000),
    'grid_f_min_mhz': (59300, 0, 100000),     # ... and frequency (mHz)
    'grid_f_max_mhz': (60700, 0, 100000),
    'outage_detect_ms': (100, 0, 60000),      # out of window this long: outage
    'reconnect_ms': (300000, 0, 3600000),     # stable this long before leaving it
    'shed_soc_cpct': (1500, 0, 10000),        # outage: ask the cluster to shed load
    'genset_start_soc_cpct': (2500, 0, 10000),  # outage: start the genset at this SoC ...
    'genset_start_after_ms': (60000, 0, 86400000),  # ... or after this long
    'genset_min_run_ms': (600000, 0, 86400000),
    'genset_cooldown_ms': (120000, 0, 3600000),
    'pv_map': ('', None, None),               # PV inverter map ('' = none)
    'pv_unit': (4, 1, 247),
    'pv_curtail_margin_w': (2000000, 0, MAX_W),  # PV limit kept this far below what fits
    'genset_map': ('', None, None),           # genset controller map ('' = contact only)
    'genset_unit': (3, 1, 247),
    'ct': ({}, None, None),                   # current transformers ({}: none, meter only);
                                              # keys in cabinet/ct_config.py
    'pred_enabled': (False, None, None),      # feed-forward from the load's rhythm and hints
    'pred_tick_ms': (50, 10, 1000),           # see cabinet/predict.py for the rest
    'pred_lead_ms': (75, 0, 5000),
    'pred_period_min_ms': (300, 20, 60000),
    'pred_period_max_ms': (5000, 40, 60000),
    'pred_early_ms': (50, 0, 5000),
    'pred_late_ms': (0, 0, 5000),
    'pred_min_rise_w': (250000, 0, MAX_W),
    'pred_min_conf_pm': (500, 0, 1000),
    'pred_max_err_pm': (300, 0, 1000),
    'pred_drops': (False, None, None),
    'pred_slow_tick_ms': (2000, 100, 60000),
    'pred_slow_period_min_s': (10, 1, 3600),
    'pred_slow_period_max_s': (600, 2, 3600),
    'pred_min_grid_w': (0, 0, MAX_W),         # real grid kept >= this while pre-arming (0: off)
    'pred_ff_ramp_pm': (1000, 0, 4000),       # pre-arms only while no 1 s grid mean differs
                                              # from its neighbours by more than this share
                                              # of the ramp limit x 1 s (cabinet/ffguard.py)
    'pred_ff_hold': (False, None, None),      # keep an allowed pre-arm until its step comes
    # Fleet (cabinet/fleet.py): several cabinets on one site meter and cap.
    'fleet_share_pm': (1000, 1, 1000),        # this cabinet's share of the site's correction,
                                              # per mille (its nameplate / the fleet's; 1000: alone)
    'fleet_soc_knee_cpct': (1000, 0, 10000),  # fleet: a share tapers to 1 pm over this SoC band
                                              # before the reserve / soc_max (0: off)
    'coord_timeout_ms': (3000, 0, 600000),    # coordinator shares lapse after this silence
                                              # (0: no coordinator accepted)
    'armed': (True, None, None),              # False: hold the battery at 0 W
    'lock_heap': (False, None, None),         # heap_lock() the steady-state loop (tests)
    'max_cycles': (0, 0, 1 << 29),            # stop after N cycles (0 = run forever)
}


# Device maps: maps/<name>.json on the device; the first two are required, the
# others may be '' (no such device). set_config checks the file is there.
MAP_KEYS = ('meter_map', 'pcs_map', 'pv_map', 'genset_map')


def defaults():
    return {k: v[0] for k, v in SPEC.items()}


def _below(cfg, where, a, b):
    if cfg[a] >= cfg[b]:
        raise ValueError('%s: %s (%d) must be below %s (%d)' % (where, a, cfg[a], b, cfg[b]))


def validate(overrides, where='config'):
    """Merge overrides into defaults; raise ValueError naming the key and range."""
    if not isinstance(overrides, dict):
        raise ValueError('%s: must be an object of settings, got %r' % (where, overrides))
    cfg = defaults()
    for key, value in overrides.items():
        if key not in SPEC:
            raise ValueError('%s: unknown key %r (known: %s)'
                             % (where, key, ', '.join(sorted(SPEC))))
        default, lo, hi = SPEC[key]
        if type(value) is not type(default):
            raise ValueError('%s: %r must be %s, got %r'
                             % (where, key, type(default).__name__, value))
        if lo is not None and not lo <= value <= hi:
            raise ValueError('%s: %r = %r is outside %d..%d'
                             % (where, key, value, lo, hi))
        cfg[key] = value
    _below(cfg, where, 'recharge_w', 'cap_w')
    _below(cfg, where, 'reserve_cpct', 'soc_min_cpct')
    _below(cfg, where, 'soc_min_cpct', 'soc_max_cpct')
    _below(cfg, where, 'grid_v_min_dv', 'grid_v_max_dv')
    _below(cfg, where, 'grid_f_min_mhz', 'grid_f_max_mhz')
    if cfg['grid_floor_w']:
        _below(cfg, where, 'grid_floor_w', 'cap_w')
    if cfg['pred_min_grid_w']:
        _below(cfg, where, 'pred_min_grid_w', 'cap_w')
    tou.validate(cfg['tou'], {'max_w': MAX_W, 'cap_w': cfg['cap_w'],
                              'recharge_w': cfg['recharge_w']}, where)
    if cfg['ct']:
        from cabinet import ct_config     # only sites with CTs load it
        ct_config.validate(cfg['ct'], where + ': ct')
    return cfg


def unload():
    """Forget this module once the config is validated: its SPEC table and code
    are the largest thing in the heap at boot, and only set_config needs them
    again (`from cabinet import config` loads it anew)."""
    import sys
    import cabinet
    sys.modules.pop(__name__, None)
    if 'config' in cabinet.__dict__:
        del cabinet.config


def load(path):
    """Read a JSON site file; a missing file means all defaults."""
    try:
        f = open(path)
    except OSError:
        return validate({})
    with f:
        try:
            data = json.load(f)
        except ValueError as e:
            raise ValueError('%s: not valid JSON (%s)' % (path, e))
    if not isinstance(data, dict):
        raise ValueError('%s: top level must be an object' % path)
    return validate(data, path)
