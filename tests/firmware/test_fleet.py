# Fleet share (cabinet/fleet.py): N cabinets on one site meter hold one cap
# without overshoot; a single cabinet dispatches exactly as without a fleet.
# Runs on CPython and MicroPython.
from cabinet import config, fleet
from cabinet import dispatch as d

MW = 1000000
CAP = 18 * MW
PCS = 10 * MW


def cabinets(n, share_pm, **over):
    cfg = config.validate(dict({'cap_w': CAP, 'recharge_w': 14 * MW, 'recharge_max_w': 2 * MW,
                                'fleet_share_pm': share_pm}, **over))
    return [(d.Engine(cfg), fleet.Share(cfg)) for _ in range(n)]


def run_site(cabs, loads, lag=1, soc=(5000,)):
    """A site: one meter, N PCS that deliver their setpoint `lag` cycles late.
    Each cycle every cabinet reads the same grid and its own PCS power.
    Returns [(grid, [battery per cabinet])] per cycle."""
    n = len(cabs)
    pipe = [[0] * n for _ in range(lag)]       # setpoints on their way to the PCS
    batt = [0] * n
    out = []
    for load in loads:
        grid = load - sum(batt)
        sps = [0] * n
        for i in range(n):
            e, s = cabs[i]
            s.update(soc[i % len(soc)])
            if s.active():
                sps[i] = s.step(e, grid, batt[i], soc[i % len(soc)], PCS, PCS, 0, 0, d.NO_LIMIT,
                                50, 0)
            else:
                sps[i] = e.step(grid, batt[i], soc[i % len(soc)], PCS, PCS, 0, 0, d.NO_LIMIT, 50)
        pipe.append(sps)
        batt = pipe.pop(0)
        out.append((grid, list(batt)))
    return out


def test_up_down_exact_and_in_range():
    for x in (0, 1, -1, 7, -7, 999, -999, 123456789, -123456789, 10 * MW, -10 * MW):
        assert fleet.up(x, 1000) == x and fleet.down(x, 1000) == x
    assert fleet.up(3 * MW, 250) == 12 * MW and fleet.down(12 * MW, 250) == 3 * MW
    assert fleet.up(-3 * MW, 250) == -12 * MW and fleet.down(-12 * MW, 250) == -3 * MW
    # Clamped to the engine's 1 GW input range, never a big int on the way.
    assert fleet.up(900 * MW, 1) == fleet.MAX_W and fleet.up(-900 * MW, 1) == -fleet.MAX_W
    assert fleet.down(fleet.MAX_W, 1000) == fleet.MAX_W
    for s in (10, 250, 333, 999):
        for x in (5 * MW + 3, -(5 * MW + 3)):
            assert abs(fleet.down(fleet.up(x, s), s) - x) <= 1000 // s + 1


def test_taper_towards_soc_limits():
    assert fleet.taper(250, 5000, 1000) == 250
    assert fleet.taper(250, 500, 1000) == 125
    assert fleet.taper(250, 0, 1000) == 1 and fleet.taper(250, -50, 1000) == 1
    assert fleet.taper(250, 10, 0) == 250                   # knee 0: off


def test_share_1000_is_the_engine_itself():
    # Alone on the feeder, through the mapping or not: the same setpoints.
    a = cabinets(1, 1000, ramp_up_w_per_s=2 * MW, ramp_down_w_per_s=2 * MW)[0]
    b = cabinets(1, 1000, ramp_up_w_per_s=2 * MW, ramp_down_w_per_s=2 * MW)[0]
    assert not a[1].active()
    batt = 0
    for k in range(400):
        load = 12 * MW + (k * 7919 % 17) * MW // 2
        soc = 1000 + (k * 37) % 9000
        a[1].update(soc)
        x = a[1].step(a[0], load - batt, batt, soc, PCS, 9 * MW, 0, 0, d.NO_LIMIT, 50, 0)
        y = b[0].step(load - batt, batt, soc, PCS, 9 * MW, 0, 0, d.NO_LIMIT, 50)
        assert x == y, (k, x, y)
        batt = (batt + x) // 2


def _settle(share_pm, n=4, lag=1):
    loads = [16 * MW] * 4 + [26 * MW] * 40          # 8 MW above the cap
    return run_site(cabinets(n, share_pm), loads, lag)[4:]


def test_four_cabinets_share_the_excess_without_overshoot():
    for lag in (1, 2):
        rows = _settle(250, lag=lag)
        for grid, batt in rows:
            assert grid >= CAP - 8, (lag, grid, batt)       # never more than the excess
        grid, batt = rows[-1]
        assert CAP - 8 <= grid <= CAP + 8 * 8, (lag, grid)  # held, within rounding
        assert max(batt) - min(batt) <= 64, batt            # in proportion to the shares


def test_naive_four_cabinets_overshoot_fourfold():
    # Every cabinet alone on its feeder (share 1000): each covers the whole
    # excess, the site exports 24 MW below the cap, then oscillates.
    rows = _settle(1000)
    worst = min(g for g, _ in rows)
    assert worst <= CAP - 3 * 8 * MW + 8 * 8, worst
    swings = sum(1 for k in range(1, len(rows)) if (rows[k][0] - CAP) * (rows[k - 1][0] - CAP) < 0)
    assert swings >= 10, swings


def test_unequal_shares_split_in_proportion():
    cabs = cabinets(1, 500) + cabinets(1, 300) + cabinets(1, 200)
    rows = run_site(cabs, [26 * MW] * 30)
    grid, batt = rows[-1]
    assert abs(grid - CAP) <= 64, grid
    assert abs(batt[0] - 4 * MW) <= 64 and abs(batt[1] - 2400000) <= 64, batt


def test_a_cabinet_at_its_limit_is_covered_by_the_others():
    # One of four is empty (SoC at the reserve): the three others integrate
    # the error it leaves and hold the cap; its share tapers meanwhile.
    rows = run_site(cabinets(4, 250), [16 * MW] + [26 * MW] * 60, soc=(1000, 5000, 5000, 5000))
    grid, batt = rows[-1]
    assert batt[0] == 0 and abs(grid - CAP) <= 64, (grid, batt)
    assert all(g >= CAP - 8 for g, _ in rows[1:]), 'overshoot'


def test_coordinator_shares_lapse_after_the_timeout():
    s = fleet.Share(config.validate({'fleet_share_pm': 250, 'coord_timeout_ms': 1000}))
    s.coordinate(400, 0)
    s.update(5000)
    assert (s.dis_pm, s.cha_pm) == (400, 1) and s.active()
    lapsed = [s.tick(50) for _ in range(20)]
    assert lapsed.count(True) == 1 and lapsed[-1] and s.lapsed == 1
    s.update(5000)
    assert (s.dis_pm, s.cha_pm) == (250, 250)


def test_step_allocates_nothing():
    import sys
    if sys.implementation.name != 'micropython':
        return
    from alloc import no_alloc
    e, s = cabinets(1, 250)[0]
    s.update(5000)
    no_alloc(lambda: s.step(e, 20 * MW, MW, 5000, PCS, PCS, 0, 0, d.NO_LIMIT, 50, 0), 50,
             'fleet step')
    no_alloc(lambda: s.update(4000), 50, 'fleet update')
