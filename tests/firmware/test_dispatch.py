# Peak-cap rule, cycle by cycle: (grid, battery, soc, charge max, discharge max,
# status) -> (setpoint, reason). Runs on CPython and on MicroPython.
from cabinet import dispatch as d

MW = 1000000
CAP = 18 * MW
RECHARGE = 14 * MW

TABLE = [
    # grid_w      battery_w  soc   cha_max  dis_max  status  -> setpoint    reason
    (17 * MW,     0,         5000, 10 * MW, 10 * MW, 0,       0,           d.IDLE),
    (25 * MW,     0,         5000, 10 * MW, 10 * MW, 0,       7 * MW,      d.CAP),
    (18 * MW,     7 * MW,    5000, 10 * MW, 10 * MW, 0,       7 * MW,      d.CAP),        # settled: same load
    (30 * MW,     0,         5000, 10 * MW, 10 * MW, 0,       10 * MW,     d.PCS_LIMIT),
    (25 * MW,     0,         1000, 10 * MW, 10 * MW, 0,       0,           d.SOC_LIMIT),  # at soc_min
    (10 * MW,     0,         5000, 10 * MW, 10 * MW, 0,       -4 * MW,     d.RECHARGE),
    (2 * MW,      0,         5000, 10 * MW, 10 * MW, 0,       -10 * MW,    d.PCS_LIMIT),
    (10 * MW,     0,         9500, 10 * MW, 10 * MW, 0,       0,           d.SOC_LIMIT),  # at soc_max
    (25 * MW,     0,         5000, 10 * MW, 10 * MW, d.ST_PCS_FAULT, 0,    d.FAULT),
    (25 * MW,     0,         5000, 10 * MW, 0,       0,       0,           d.PCS_LIMIT),  # BMS derated to 0
]


def make():
    return d.PeakCap(CAP, RECHARGE, 1000, 9500)


def test_table():
    e = make()
    for i, (g, b, soc, cha, dis, st, want_sp, want_reason) in enumerate(TABLE):
        sp = e.step(g, b, soc, cha, dis, st)
        assert (sp, e.reason) == (want_sp, want_reason), \
            'row %d: got %r/%s, want %r/%s' % (i, sp, d.REASONS[e.reason], want_sp,
                                              d.REASONS[want_reason])


def test_never_exports():
    # A tiny cap on a tiny load: discharge may cover the load, never more.
    e = d.PeakCap(100, 0, 0, 10000)
    sp = e.step(-500, 2000, 5000, 10 * MW, 10 * MW, 0)    # load 1500 W
    assert sp == 1400 and e.reason == d.CAP
    e = d.PeakCap(0, -1, 0, 10000)
    sp = e.step(100, 0, 5000, 10 * MW, 10 * MW, 0)
    assert sp == 100 and e.reason == d.CAP


def test_settles_in_one_cycle():
    # Ideal plant: the PCS delivers the setpoint; grid follows in one step.
    e = make()
    load, batt = 25 * MW, 0
    for _ in range(3):
        batt = e.step(load - batt, batt, 5000, 10 * MW, 10 * MW, 0)
        assert load - batt == CAP


def test_mpy_step_does_not_allocate():
    from alloc import no_alloc
    e = make()
    no_alloc(lambda: e.step(25 * MW, 0, 5000, 10 * MW, 10 * MW, 0), 1000, 'step (cap)')
    no_alloc(lambda: e.step(2 * MW, 0, 5000, 10 * MW, 10 * MW, 0), 1000, 'step (recharge)')
