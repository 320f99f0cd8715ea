# Site configuration: defaults, loading and validation. Runs once at boot, so
# it may allocate; the control loop only reads the validated dict.
import json

# Powers are kept below 2**29 W (537 MW) so sums of two stay 31-bit small ints.
MAX_W = 1 << 29

# key: (default, min, max). A None range means "any value of the default's type".
SPEC = {
    'period_ms': (50, 10, 10000),             # control cycle
    'cap_w': (18000000, 1, MAX_W),            # contracted grid import cap
    'recharge_w': (14000000, 0, MAX_W),       # charge only while load is below this
    'recharge_max_w': (2000000, 0, MAX_W),    # valley charging power limit: a load step
                                              # while charging lands on the grid in full
    'soc_min_cpct': (1000, 0, 10000),         # no discharge at or below
    'soc_max_cpct': (9500, 0, 10000),         # no charge at or above
    'meter_map': ('meter_sunspec', None, None),
    'meter_unit': (1, 1, 247),
    'pcs_map': ('pcs_sunspec', None, None),
    'pcs_unit': (2, 1, 247),
    'response_timeout_ms': (20, 1, 1000),     # Modbus reply deadline
    'armed': (True, None, None),              # False: hold the battery at 0 W
    'lock_heap': (False, None, None),         # heap_lock() the steady-state loop (tests)
    'max_cycles': (0, 0, MAX_W),              # stop after N cycles (0 = run forever)
}


def defaults():
    return {k: v[0] for k, v in SPEC.items()}


def validate(overrides, where='config'):
    """Merge overrides into defaults; raise ValueError naming the key and range."""
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
    if cfg['recharge_w'] >= cfg['cap_w']:
        raise ValueError('%s: recharge_w (%d) must be below cap_w (%d)'
                         % (where, cfg['recharge_w'], cfg['cap_w']))
    if cfg['soc_min_cpct'] >= cfg['soc_max_cpct']:
        raise ValueError('%s: soc_min_cpct (%d) must be below soc_max_cpct (%d)'
                         % (where, cfg['soc_min_cpct'], cfg['soc_max_cpct']))
    return cfg


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
