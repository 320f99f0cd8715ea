# The battery power estimate used with CT dispatch (cabinet/pcs_model.py),
# against a float model of the PCS (ramp limit, then a first-order lag, as
# host/cabctl/plant/model.py steps it). Runs on CPython and MicroPython.
import math

from cabinet.pcs_model import PcsModel

MW = 1000000


def plant(sp, ref, b, ms, lag_ms, ramp_w_per_s):
    """The PCS, in 1 ms steps: returns (ref, battery_w) after ms."""
    a = 1 - math.exp(-1.0 / lag_ms) if lag_ms else 1.0
    for _ in range(ms):
        step = ramp_w_per_s / 1000
        ref += min(max(sp - ref, -step), step)
        b += (ref - b) * a
    return ref, b


def test_follows_a_ramp_limited_lag_between_stale_readings():
    # Setpoint steps every 5 cycles of 50 ms; the PCS reports its power once
    # per 50 ms, 30 ms before the cycle reads it: the estimate tracks the true
    # power far closer than the reading does.
    m = PcsModel(20, 200 * MW)
    ref = b = 0.0
    sps = [0, 5 * MW, 9 * MW, -3 * MW, 2 * MW, 10 * MW, 0, 0]
    worst_est = worst_read = 0.0
    sp = 0
    for k in range(35):
        ref, b = plant(sp, ref, b, 20, 20, 200 * MW)
        reading = int(b)
        ref, b = plant(sp, ref, b, 30, 20, 200 * MW)
        est = m.update(sp, reading, 10 * MW, 10 * MW, 50)
        worst_est = max(worst_est, abs(est - b))
        worst_read = max(worst_read, abs(reading - b))
        if k % 5 == 4:
            sp = sps[(k // 5) + 1]
    # Largest step 12 MW: the reading is off by most of it, the model by
    # its 5 ms discretisation (< 5 %).
    assert worst_read > 4 * MW, worst_read
    assert worst_est < 0.6 * MW, worst_est


def test_a_pcs_that_does_not_follow_pulls_the_estimate_to_its_readings():
    m = PcsModel(20, 200 * MW)
    for _ in range(5):
        m.update(0, 0, 10 * MW, 10 * MW, 50)
    est = [m.update(6 * MW, 0, 10 * MW, 10 * MW, 50) for _ in range(40)]
    assert est[0] > 3 * MW                  # at first: the model
    assert abs(est[-1]) < 0.2 * MW, est     # then the readings (within 2 s)
    # The PCS's limits clamp what it is told.
    m = PcsModel(0, 0)
    for _ in range(30):
        e = m.update(9 * MW, 4 * MW, 2 * MW, 4 * MW, 50)
    assert abs(e - 4 * MW) < 0.05 * MW, e


def test_no_lag_and_no_ramp_is_the_setpoint_and_a_long_gap_jumps():
    m = PcsModel(0, 0)
    m.update(0, 0, 10 * MW, 10 * MW, 50)
    assert abs(m.update(5 * MW, 0, 10 * MW, 10 * MW, 50) - 5 * MW) < 0.7 * MW
    m = PcsModel(5000, 1000)                # slowest lag, slowest ramp
    m.update(0, 0, 10 * MW, 10 * MW, 50)
    e = m.update(5 * MW, 0, 10 * MW, 10 * MW, 50)
    assert 0 <= e < 0.01 * MW, e
    e = m.update(5 * MW, 0, 10 * MW, 10 * MW, 10000)      # a stalled loop
    assert e > 4 * MW, e


def test_the_estimate_can_be_for_an_earlier_window():
    # Averaged over 16 ms ending 8 ms before the update's end: the battery
    # of a CT block's cycle, below the rising end value, above the start.
    ends, wins = PcsModel(20, 0), PcsModel(20, 0, 16, 8)
    for m in (ends, wins):
        m.update(0, 0, 10 * MW, 10 * MW, 50)
    e, w = ends.update(4 * MW, 0, 10 * MW, 10 * MW, 30), wins.update(4 * MW, 0, 10 * MW, 10 * MW, 30)
    _, want_end = plant(4 * MW, 4 * MW, 0.0, 30, 20, 0)
    want_win = sum(plant(4 * MW, 4 * MW, 0.0, ms, 20, 0)[1] for ms in range(7, 23)) / 16
    assert abs(e - want_end) < 0.05 * MW and abs(w - want_win) < 0.1 * MW, (e, w, want_win)
    assert w < e - MW, (w, e)


def test_mpy_an_update_allocates_nothing():
    from alloc import no_alloc
    m = PcsModel(20, 200 * MW, 16, 8)
    no_alloc(lambda: m.update(-7 * MW, 3 * MW, 10 * MW, 10 * MW, 50), 20, 'PcsModel.update')
