# The dispatch engine, cycle by cycle: each table row is one step's inputs and
# the expected setpoint and reason. Runs on CPython and on MicroPython.
from cabinet import config
from cabinet import dispatch as d

MW = 1000000
KW = 1000
NONE = d.NO_LIMIT
PCS = 10 * MW            # PCS charge and discharge limit in every row


def engine(**over):
    base = {'cap_w': 18 * MW, 'recharge_w': 14 * MW, 'recharge_max_w': 2 * MW}
    base.update(over)
    return d.Engine(config.validate(base))


def run(e, rows, name):
    """rows: (load_w, battery_w, soc, status, minute, dr_w, dt_ms, want_w, want_reason).

    grid = load - battery, as a meter would read it."""
    for i, (load, batt, soc, st, minute, dr, dt, want, why) in enumerate(rows):
        got = e.step(load - batt, batt, soc, PCS, PCS, st, minute, dr, dt)
        assert (got, e.reason) == (want, why), '%s row %d: got %d %s, want %d %s' % (
            name, i, got, d.REASONS[e.reason], want, d.REASONS[why])


def test_cap_recharge_idle_and_pcs_limit():
    run(engine(), [
        (17 * MW, 0, 5000, 0, 0, NONE, 50, 0, d.IDLE),
        (25 * MW, 0, 5000, 0, 0, NONE, 50, 7 * MW, d.CAP),
        (25 * MW, 7 * MW, 5000, 0, 0, NONE, 50, 7 * MW, d.CAP),      # settled: no drift
        (30 * MW, 7 * MW, 5000, 0, 0, NONE, 50, PCS, d.PCS_LIMIT),
        (13 * MW, 0, 5000, 0, 0, NONE, 50, -1 * MW, d.RECHARGE),     # grid held at 14 MW
        (5 * MW, 0, 5000, 0, 0, NONE, 50, -2 * MW, d.RECHARGE),      # at recharge_max_w
        (25 * MW, 0, 5000, d.ST_PCS_FAULT, 0, NONE, 50, 0, d.FAULT),
    ], 'basic')


def test_settles_in_one_cycle_without_overshoot():
    # Ideal plant: the PCS delivers its setpoint; OpenEMS's PID needs >14 cycles here.
    e = engine()
    load, batt = 25 * MW, 0
    for _ in range(5):
        batt = e.step(load - batt, batt, 5000, PCS, PCS, 0, 0, NONE, 1000)
        assert batt == 7 * MW and load - batt == 18 * MW


def test_soc_bands_with_hysteresis():
    # reserve 10 %, everyday minimum 20 %, max 95 %, hysteresis 1 %.
    run(engine(tou=[{'start_min': 0, 'arb_w': 3 * MW}]), [
        (17 * MW, 0, 5000, 0, 0, NONE, 50, 3 * MW, d.ARBITRAGE),
        (17 * MW, 0, 2000, 0, 0, NONE, 50, 0, d.IDLE),           # arbitrage stops at the minimum
        (20 * MW, 0, 1500, 0, 0, NONE, 50, 2 * MW, d.CAP),       # peak shaving goes below it
        (20 * MW, 0, 1000, 0, 0, NONE, 50, 0, d.SOC_LIMIT),      # ... down to the reserve
        (20 * MW, 0, 1050, 0, 0, NONE, 50, 0, d.SOC_LIMIT),      # still blocked inside hysteresis
        (20 * MW, 0, 1100, 0, 0, NONE, 50, 2 * MW, d.CAP),       # reopened at reserve + 1 %
        (17 * MW, 0, 2050, 0, 0, NONE, 50, 0, d.IDLE),           # everyday band still closed
        (17 * MW, 0, 2100, 0, 0, NONE, 50, 3 * MW, d.ARBITRAGE),
    ], 'soc low')
    run(engine(), [
        (10 * MW, 0, 9500, 0, 0, NONE, 50, 0, d.SOC_LIMIT),      # full: no recharge
        (10 * MW, 0, 9450, 0, 0, NONE, 50, 0, d.SOC_LIMIT),
        (10 * MW, 0, 9400, 0, 0, NONE, 50, -2 * MW, d.RECHARGE),
    ], 'soc high')


def test_outage_mode_may_use_the_reserve():
    run(engine(), [
        (20 * MW, 0, 800, d.ST_OUTAGE, 0, NONE, 50, 0, d.OUTAGE),
        (20 * MW, 0, 0, d.ST_OUTAGE, 0, NONE, 50, 0, d.OUTAGE),
    ], 'outage')
    e = engine()
    e.step(20 * MW, 0, 0, PCS, PCS, d.ST_OUTAGE, 0, NONE, 50)
    assert e._dis_blocked            # at 0 % even outage mode stops discharging


def test_export_limit():
    run(engine(cap_w=1 * MW, recharge_w=0, tou=[{'start_min': 0, 'arb_w': 5 * MW}]), [
        (2 * MW, 0, 5000, 0, 0, NONE, 50, 2 * MW, d.NO_EXPORT),  # wants 5 MW, load is 2
    ], 'no export')
    run(engine(cap_w=1 * MW, recharge_w=0, export_limit_w=500 * KW,
               tou=[{'start_min': 0, 'arb_w': 5 * MW}]), [
        (2 * MW, 0, 5000, 0, 0, NONE, 50, 2500 * KW, d.NO_EXPORT),
    ], 'export 500 kW')


def test_demand_response_below_cap():
    run(engine(), [
        (17 * MW, 0, 5000, 0, 0, 15 * MW, 50, 2 * MW, d.DR_LIMIT),
        (25 * MW, 0, 5000, 0, 0, 15 * MW, 50, PCS, d.DR_LIMIT),    # needs exactly the PCS's 10 MW
        (27 * MW, 0, 5000, 0, 0, 15 * MW, 50, PCS, d.PCS_LIMIT),   # needs 12 MW: the PCS binds
        (25 * MW, 0, 5000, 0, 0, 20 * MW, 50, 7 * MW, d.CAP),      # DR above cap: cap binds
        (13 * MW, 0, 5000, 0, 0, 12 * MW, 50, 1 * MW, d.DR_LIMIT), # no valley charging above DR
    ], 'dr')


def test_grid_ramp_up_and_down_with_delay_and_floor():
    # 2 MW/s up and down, 200 ms hold after a drop, floor 12 MW; 100 ms cycles.
    e = engine(ramp_up_w_per_s=2 * MW, ramp_down_w_per_s=2 * MW, ramp_down_delay_ms=200,
               grid_floor_w=12 * MW, recharge_max_w=10 * MW)
    run(e, [
        (15 * MW, 0, 5000, 0, 0, NONE, 100, 0, d.IDLE),
        (17 * MW, 0, 5000, 0, 0, NONE, 100, 1800 * KW, d.RAMP),      # grid may rise 200 kW
        (17 * MW, 1800 * KW, 5000, 0, 0, NONE, 100, 1600 * KW, d.RAMP),
        (13 * MW, 1600 * KW, 5000, 0, 0, NONE, 100, -2400 * KW, d.RAMP),  # drop: grid held 15.4
        (13 * MW, -2400 * KW, 5000, 0, 0, NONE, 100, -2400 * KW, d.RAMP),  # for 200 ms
        (13 * MW, -2400 * KW, 5000, 0, 0, NONE, 100, -2200 * KW, d.RAMP),  # then 200 kW/cycle
        (9 * MW, -2200 * KW, 5000, 0, 0, NONE, 100, -6000 * KW, d.RAMP),
        (17 * MW, -6000 * KW, 5000, 0, 0, NONE, 100, 1800 * KW, d.RAMP),   # rises again: 15.2
    ], 'ramp')
    e = engine(grid_floor_w=12 * MW, recharge_w=0)
    run(e, [
        (9 * MW, 0, 5000, 0, 0, NONE, 100, -3 * MW, d.RAMP),          # floor: grid >= 12 MW
        (13 * MW, -3 * MW, 5000, 0, 0, NONE, 100, 0, d.IDLE),
    ], 'floor')


def test_cap_and_ramp_both_active():
    # Load jumps 15 -> 25 MW: the cap needs 7 MW at once, the ramp wants 9.8.
    e = engine(ramp_up_w_per_s=2 * MW, ramp_down_w_per_s=2 * MW)
    run(e, [
        (15 * MW, 0, 5000, 0, 0, NONE, 100, 0, d.IDLE),
        (25 * MW, 0, 5000, 0, 0, NONE, 100, 9800 * KW, d.RAMP),
        (25 * MW, 9800 * KW, 5000, 0, 0, NONE, 100, 9600 * KW, d.RAMP),
        (30 * MW, 9600 * KW, 5000, 0, 0, NONE, 100, PCS, d.PCS_LIMIT),   # battery out of headroom
        (30 * MW, PCS, 5000, 0, 0, NONE, 100, PCS, d.PCS_LIMIT),         # grid 20 MW: above cap
    ], 'cap+ramp')


def test_reserve_reached_mid_peak():
    run(engine(), [
        (25 * MW, 7 * MW, 1200, 0, 0, NONE, 50, 7 * MW, d.CAP),
        (25 * MW, 7 * MW, 1000, 0, 0, NONE, 50, 0, d.SOC_LIMIT),     # reserve protects backup
        (25 * MW, 0, 1090, 0, 0, NONE, 50, 0, d.SOC_LIMIT),
    ], 'reserve mid-peak')


def test_tou_window_change_mid_peak():
    # 17:00-21:00 (minute 1020..1259) the cap drops to 16 MW and grid charging stops.
    tou = [{'start_min': 0}, {'start_min': 1020, 'cap_w': 16 * MW, 'recharge_w': 10 * MW,
                              'grid_charge': False},
           {'start_min': 1260, 'arb_w': -3 * MW}]
    run(engine(tou=tou), [
        (20 * MW, 0, 5000, 0, 1019, NONE, 50, 2 * MW, d.CAP),
        (20 * MW, 2 * MW, 5000, 0, 1020, NONE, 50, 4 * MW, d.CAP),     # new cap, same load
        (9 * MW, 0, 5000, 0, 1100, NONE, 50, 0, d.IDLE),               # valley: no grid charging
        (9 * MW, 0, 5000, 0, 1300, NONE, 50, -3 * MW, d.ARBITRAGE),    # night: arbitrage charge
        (17 * MW, 0, 5000, 0, 1300, NONE, 50, -1 * MW, d.CAP),         # ... never above the cap
        (9 * MW, 0, 5000, 0, 10, NONE, 50, -2 * MW, d.RECHARGE),       # after midnight: window 0
    ], 'tou')


def test_slew_limit_yields_to_the_cap():
    run(engine(slew_w_per_s=20 * MW, tou=[{'start_min': 0, 'arb_w': 3 * MW}]), [
        (17 * MW, 0, 5000, 0, 0, NONE, 50, 1 * MW, d.SLEW),             # 20 MW/s * 50 ms
        (17 * MW, 1 * MW, 5000, 0, 0, NONE, 50, 2 * MW, d.SLEW),
        (17 * MW, 2 * MW, 5000, 0, 0, NONE, 50, 3 * MW, d.ARBITRAGE),
        (25 * MW, 3 * MW, 5000, 0, 0, NONE, 50, 7 * MW, d.CAP),         # cap before slew
    ], 'slew')


def test_config_errors_name_key_and_range():
    cases = [({'cap_w': 0}, "'cap_w' = 0 is outside 1..1000000000"),
             ({'soc_min_cpct': 500}, 'reserve_cpct (1000) must be below soc_min_cpct (500)'),
             ({'recharge_w': 19 * MW}, 'recharge_w (19000000) must be below cap_w (18000000)'),
             ({'ramp_up_w_per_s': -1}, "'ramp_up_w_per_s' = -1 is outside"),
             ({'tou': [{'start_min': 60}, {'start_min': 30}]}, 'tou[1]: start_min'),
             ({'tou': [{'start_min': 0, 'cap_w': 1 * MW}]}, 'tou[0]: recharge_w (14000000) must be below'),
             ({'tou': [{'start_min': 0, 'price': 3}]}, "tou[0]: unknown key 'price'"),
             ({'cap': 1}, "unknown key 'cap'"),
             ({'pred_min_grid_w': 18 * MW}, 'pred_min_grid_w (18000000) must be below cap_w'),
             ({'pred_min_grid_w': -1}, "'pred_min_grid_w' = -1 is outside"),
             ({'pred_ff_ramp_pm': 4001}, "'pred_ff_ramp_pm' = 4001 is outside 0..4000")]
    for over, msg in cases:
        try:
            config.validate(over, 'site.json')
        except ValueError as e:
            assert msg in str(e) and 'site.json' in str(e), (over, str(e))
        else:
            assert False, 'accepted %r' % (over,)


def test_mpy_ten_thousand_steps_allocate_nothing():
    from alloc import no_alloc
    e = engine(ramp_up_w_per_s=2 * MW, ramp_down_w_per_s=2 * MW, ramp_down_delay_ms=200,
               grid_floor_w=10 * MW, slew_w_per_s=50 * MW, export_limit_w=1 * MW,
               tou=[{'start_min': 0}, {'start_min': 600, 'arb_w': 1 * MW}])
    state = [0]

    def step():
        i = state[0] = state[0] + 1
        load = (9 + (i * 7919) % 17) * MW        # 9..25 MW, jumping
        e.step(load, 0, 1000 + i % 9000, PCS, PCS, 0, i % 1440, NONE if i % 3 else 15 * MW, 50)
    no_alloc(step, 10000, 'Engine.step')
