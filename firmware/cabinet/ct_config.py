# The site config's "ct" object (cabinet/ct.py measures, cabinet/sensing.py
# reads it for dispatch): defaults, limits and validation. Boot and set_config
# time only, so it may allocate; kept apart from ct.py so that validating a
# config does not load (and on the unix port compile) the viper loops.
#
# Example (3 CTs on ADC channels 0..2, phase A voltage on channel 3):
#   "ct": {"n": 64, "channels": 4, "i_ch": [0, 1, 2], "v_ch": 3,
#          "ma_fs": 2250000, "mv_fs": 13860000, "phase_cdeg": [0, 12000, 24000]}


SPEC = {    # key: (default, min, max)
    'hz': (60, 50, 60), 'n': (64, 8, 256), 'channels': (3, 1, 8),
    'bias_shift': (4, 0, 10),               # bias IIR time constant: 2**k cycles
    'mv_fs': (400000, 1000, 1 << 29), 'v_gain_ppm': (1000000, 500000, 2000000),
    'v_nom_mv': (277000, 0, 1 << 29),       # CT without voltage: apparent power at this
    # How the controller uses the CTs (cabinet/sensing.py):
    'max_age_ms': (100, 20, 10000),         # older CT data is not dispatched on
    'alarm_on_w': (0, 0, 1 << 28),          # CT - meter beyond this (0: 5 % of full_scale_w)
    'alarm_off_w': (0, 0, 1 << 28),         # ... and back below this (0: half of alarm_on_w)
    'alarm_hold_ms': (2000, 0, 600000),     # for this long: the alarm rises / falls
    # Battery power while dispatching on CTs (cabinet/pcs_model.py): the PCS's
    # response to a setpoint, from its data sheet; -1: its own (older) reading.
    'pcs_lag_ms': (-1, -1, 5000),           # first-order lag after the ramp
    'pcs_ramp_w_per_s': (0, 0, (1 << 30) - 1),      # ramp limit (0: none)
}
PER_CT = {  # one entry per CT (1..4), or one number for all
    'i_ch': ([0, 1, 2], 0, 7), 'v_ch': (-1, -1, 7), 'ma_fs': (150000, 100, 1 << 29),
    'gain_ppm': (1000000, 500000, 2000000), 'offset_ma': (0, -(1 << 25), 1 << 25),
    'phase_cdeg': (0, -35999, 35999),
}


def _check(where, at, x, lo, hi):
    if type(x) is not int or not lo <= x <= hi:
        raise ValueError('%s: %s = %r is outside %d..%d' % (where, at, x, lo, hi))


def validate(over, where='ct'):
    """Defaults merged with the site's "ct" object; a ValueError names key, CT and value."""
    for key in over:
        if key not in SPEC and key not in PER_CT:
            raise ValueError('%s: unknown key %r' % (where, key))
    c = {}
    for key, (dflt, lo, hi) in SPEC.items():
        c[key] = over.get(key, dflt)
        _check(where, key, c[key], lo, hi)
    ich = over.get('i_ch', PER_CT['i_ch'][0])
    nct = len(ich) if type(ich) is list else 0
    for key, (dflt, lo, hi) in PER_CT.items():
        given = over.get(key, dflt)
        v = c[key] = [given] * nct if type(given) is int else given
        if type(v) is not list or len(v) != nct or not 1 <= nct <= 4:
            raise ValueError('%s: %r = %r needs one integer per CT (1..4 CTs), or one for all'
                             % (where, key, given))
        for i, x in enumerate(v):
            _check(where, '%s[%d]' % (key, i), x, lo, hi)
    ich = c['i_ch']
    for k in range(nct):
        vc = c['v_ch'][k]
        if max(ich[k], vc) >= c['channels'] or vc in ich or ich.count(ich[k]) > 1:
            raise ValueError('%s: CT %d: channel %d, voltage %d: shared or not below channels %d'
                             % (where, k, ich[k], vc, c['channels']))
        lim = c['ma_fs'][k] // 16
        _check(where, 'offset_ma[%d] (ma_fs / 16)' % k, c['offset_ma'][k], -lim, lim)
    if c['hz'] not in (50, 60):
        raise ValueError('%s: hz must be 50 or 60' % where)
    if c['alarm_on_w'] and c['alarm_off_w'] >= c['alarm_on_w']:
        raise ValueError('%s: alarm_off_w (%d) must be below alarm_on_w (%d)'
                         % (where, c['alarm_off_w'], c['alarm_on_w']))
    return c


def full_scale_w(c):
    """Total power (W) with every CT at a full-scale sine: on its voltage channel's
    full scale, or at v_nom_mv without one. At boot only (may form big ints)."""
    total = 0
    for k in range(len(c['i_ch'])):
        vpk = c['mv_fs'] if c['v_ch'][k] >= 0 else c['v_nom_mv'] * 1414 // 1000
        total += (c['ma_fs'][k] // 1000) * (vpk // 1000) // 2
    return total


def alarm_w(c):
    """(on_w, off_w) of the CT/meter disagreement alarm, defaults filled in."""
    on = c['alarm_on_w'] or full_scale_w(c) // 20
    on = 1 if on < 1 else (1 << 28 if on > 1 << 28 else on)
    return on, c['alarm_off_w'] or on // 2
