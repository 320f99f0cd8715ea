# The job-hint table (cabinet.hints). Runs on CPython and on MicroPython
# (tests/test_firmware_on_micropython.py).
from cabinet import hints as hn

MW = 1000000
U = 1000000 >> 3             # 1 MW in the table's 8 W units


def test_hints_arm_hold_are_consumed_or_expire():
    h = hn.Hints()
    assert h.add(hn.JOB_START, 1000, 10 * MW, 200, job=3) == 0
    assert h.add(hn.CKPT_START, 2000, 8 * MW, 200) == 1
    lead = 100
    x = 12 * U
    rises = []
    for _ in range(20):                          # 1 s at 50 ms
        rises.append(h.step(50, x, lead) << 3)
    assert rises[:17] == [0] * 17 and rises[17:] == [10 * MW] * 3
    assert h.step(50, x, lead) << 3 == 10 * MW   # due now, not yet come: held
    assert h.step(50, x + 6 * U, lead) << 3 == 4 * MW   # 6 came: 4 still armed
    assert h.came == 0
    assert h.step(50, x + 9 * U, lead) == 0      # 7/8 of it came: consumed
    assert h.seen == 1 and h.count() == 1 and h.came == 9 * U
    # The drop: announced, never seen, expires its window after the due time.
    drops = 0
    for _ in range(30):
        h.step(50, x, lead)
        drops += h.drop > 0
    assert h.expired == 1 and h.count() == 0 and drops == 2 + 1 + 4
    # Full table: the hint due last gives way to one due sooner.
    for i in range(hn.MAX_HINTS):
        assert h.add(hn.CKPT_END, 10000 + i, MW, 0) >= 0
    assert h.add(hn.CKPT_END, 50000, MW, 0) == -1
    assert h.add(hn.CKPT_END, 500, MW, 0) >= 0 and h.dropped == 2
    assert h.clear() == hn.MAX_HINTS and h.count() == 0


def coinciding(rhythm):
    # A 1.5 MW job start armed in a 10 MW trough of another job's rhythm,
    # whose 12 MW edge comes first (seen one period ago too), then the start.
    h = hn.Hints()
    h.add(hn.JOB_START, 50, 3 * MW // 2, 150)
    out = []
    for load, lo, hi in ((20, 20, 20), (44, 20, 44), (44, 20, 44), (47, 44, 44)):   # 0.5 MW
        out.append((h.step(50, load * U // 2, 50, rhythm, lo * U // 2, hi * U // 2) << 3,
                    h.came << 3))
    return out


def test_a_rhythm_edge_does_not_consume_a_hint():
    # Against the rhythm, the edge leaves the hint armed until its own step
    # comes; without one, the edge is taken for the step.
    assert coinciding(True) == [(3 * MW // 2, 0), (3 * MW // 2, 0), (3 * MW // 2, 0),
                                (0, 3 * MW // 2)]
    assert coinciding(False) == [(3 * MW // 2, 0), (0, 12 * MW), (0, 0), (0, 0)]


def test_a_rhythm_that_comes_after_arming_rearms():
    # Armed without a rhythm, then one is found: the hint re-arms against
    # it instead of reading the reference's jump as its step.
    h = hn.Hints()
    h.add(hn.JOB_START, 50, 2 * MW, 150)
    assert h.step(50, 10 * U, 50) == 2 * U
    assert h.step(50, 10 * U, 50, True, 0, 0) == 2 * U and h.count() == 1
    assert h.step(50, 12 * U, 50, True, 0, 0) == 0 and h.came == 2 * U


def test_a_step_already_arriving_when_its_hint_arms_counts_as_come():
    # Due within the cycle it arms on: half of a 12 MW step is in that
    # cycle's load already. Counted from the load before it, the whole step
    # is seen the next cycle; counted from the half, it would stay armed
    # with 6 MW for its window, a pre-arm for a step that has come.
    h = hn.Hints()
    h.add(hn.CKPT_END, 120, 12 * MW, 150)
    assert h.step(50, 10 * U, 50) == 0                   # due in 70 ms: not yet
    assert h.step(50, 16 * U, 50) == 12 * U              # due in 20 ms: armed
    assert h.step(50, 22 * U, 50) == 0 and h.seen == 1 and h.came == 12 * U


def test_hint_command_arguments():
    h = hn.Hints()
    ok, msg, data = h.command({'event': 'job_start', 'in_ms': 30000, 'power_w': 12 * MW, 'job': 7})
    assert ok and data == {'pending': 1} and 'job_start' in msg
    ok, msg, data = h.command({'event': 'maint', 'in_ms': 60000, 'power_w': 5 * MW,
                               'for_ms': 600000})
    assert ok and data == {'pending': 3}
    lst = h.command({'event': 'list'})[2]['pending']
    assert ['maint_end', 660000, 5 * MW, 250, 0] in lst
    assert h.command({'event': 'clear', 'job': 7})[1] == 'cleared 1 hints'
    for bad in ({'event': 'launch', 'in_ms': 1, 'power_w': 1},
                {'event': 'job_start', 'in_ms': '5', 'power_w': 1},
                {'event': 'job_start', 'in_ms': 5, 'power_w': -1},
                {'event': 'job_start', 'in_ms': 5},
                {'event': 'job_end', 'in_ms': 5, 'power_w': 1, 'window_ms': 10 ** 7},
                {'event': 'clear', 'job': -2}):
        try:
            h.command(bad)
        except ValueError:
            pass
        else:
            assert False, 'accepted %r' % (bad,)
