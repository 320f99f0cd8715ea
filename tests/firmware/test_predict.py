# The predictor (cabinet.predict) and the engine's feed-forward input. Runs on
# CPython and on MicroPython (tests/test_firmware_on_micropython.py); the
# load series come from a small LCG so both draw the same numbers.
from cabinet import config
from cabinet import dispatch as d
from cabinet import hints as hn
from cabinet import predict as p
from lcg import Lcg

MW = 1000000
KW = 1000
PCS = 12 * MW
NONE = d.NO_LIMIT


def square(t_ms, period_ms, hi, lo, duty_pm=550):
    return hi if t_ms % period_ms < period_ms * duty_pm // 1000 else lo


def predictor(**over):
    cfg = {'pred_enabled': True}
    cfg.update(over)
    return p.Predictor(cfg)


def feed(pr, loads, dt=50):
    out = []
    for x in loads:
        out.append(pr.update(x, dt))
    return out


def iteration_load(n, period_ms=900, seed=1, jitter_ms=0):
    """n samples at 50 ms of a training job: 26 MW compute, 12 MW all-reduce,
    60 kW noise; each iteration's length jitters by up to +-jitter_ms."""
    r = Lcg(seed)
    out = []
    t = 0
    edge = 0
    length = period_ms
    for _ in range(n):
        while t >= edge + length:
            edge += length
            length = period_ms + (r.next(2 * jitter_ms + 1) - jitter_ms if jitter_ms else 0)
        hi = (t - edge) < length * 55 // 100
        out.append((26 * MW if hi else 12 * MW) + r.next(120 * KW) - 60 * KW)
        t += 50
    return out


def test_finds_the_iteration_period_with_confidence():
    pr = predictor()
    feed(pr, iteration_load(600, 900))
    assert pr.period_ms() == 900, pr.period_ms()
    assert pr.fast.conf_pm > 800, pr.fast.conf_pm
    pr = predictor()
    feed(pr, iteration_load(600, 1500, jitter_ms=20))
    assert abs(pr.period_ms() - 1500) <= 50, pr.period_ms()
    assert pr.fast.active


def test_a_stalling_loop_keeps_the_period():
    # Every 13th cycle the loop overruns and misses 1..3 of its 50 ms slots
    # (a Modbus timeout, a busy host): the missed ticks must still count, or
    # the rhythm shrinks (this load read 750 ms when they did not).
    loads = iteration_load(1200, 900)
    pr = predictor()
    i = n = last = 0
    while i < len(loads):
        pr.update(loads[i], (i - last) * 50)
        last = i
        n += 1
        i += 1 + (n % 3 + 1 if n % 13 == 0 else 0)
    assert pr.period_ms() == 900, pr.period_ms()
    assert pr.fast.active and pr.fast.conf_pm > 800, (pr.fast.active, pr.fast.conf_pm)


def test_predicts_the_rise_before_it_comes():
    pr = predictor()
    loads = iteration_load(800, 900)
    out = feed(pr, loads)
    assert pr.fast.active and pr.fast.err_pm < 200, (pr.fast.active, pr.fast.err_pm)
    # In the last 200 samples: every rise of the load was announced in the
    # sample before it, by about its size; nothing is announced unless a rise
    # comes within the lead (2 samples) and the early margin (1 sample).
    rises = 0
    for i in range(600, 795):
        step = loads[i] - loads[i - 1]
        if step > 10 * MW:
            rises += 1
            assert out[i - 1] > 10 * MW, (i, out[i - 2:i + 1])
        elif max(loads[i + 1:i + 4]) - loads[i] < 5 * MW:
            assert out[i] <= 0, (i, out[i])
    assert rises >= 10


def next_rise_forecast(announce):
    # A steady rhythm; a 1.5 MW job starts in a trough. The forecast of the
    # first iteration rise after it (the sample before the rise).
    loads = iteration_load(800, 900)
    s = next(i for i in range(700, 800) if max(loads[i - 1:i + 3]) < 13 * MW)
    loads = loads[:s] + [x + 3 * MW // 2 for x in loads[s:]]
    rise = next(i for i in range(s, 800) if loads[i] - loads[i - 1] > 10 * MW)
    pr = predictor()
    feed(pr, loads[:s - 10])
    if announce:
        pr.hints.add(hn.JOB_START, 10 * 50, 3 * MW // 2, 150)
    out = feed(pr, loads[s - 10:rise])
    return out[-1], loads[rise] - loads[rise - 1]


def test_an_announced_start_is_not_taken_off_the_next_rise():
    # The rhythm's history lacks the new job for a period: announced, the
    # start is kept out of the forecast of the next rise; unannounced, it
    # looks like a level offset and the forecast is that much smaller.
    ff, step = next_rise_forecast(True)
    assert abs(ff - step) < 300 * KW, (ff, step)
    ff, step = next_rise_forecast(False)
    assert abs(ff - (step - 3 * MW // 2)) < 300 * KW, (ff, step)


def test_aperiodic_steps_close_the_guard():
    # Random steps of random size at random times: nothing to learn.
    r = Lcg(7)
    loads = []
    level = 15 * MW
    for _ in range(3000):
        if r.next(40) == 0:
            level = 10 * MW + r.next(14 * MW)
        loads.append(level + r.next(100 * KW))
    pr = predictor()
    out = feed(pr, loads)
    acted = sum(1 for x in out[1000:] if x > 0)
    assert acted <= 20, acted
    assert not pr.fast.active


def test_a_pause_mutes_the_rhythm_and_it_comes_back():
    # Training, a 20 s checkpoint at ~27 %, training again.
    loads = iteration_load(600, 1000) + [7 * MW + i % 3 * 10 * KW for i in range(400)] \
        + iteration_load(600, 1000, seed=3)
    pr = predictor()
    out = feed(pr, loads)
    # After the first period of the pause nothing is pre-armed for the old rhythm.
    assert max(out[600 + 25:1000]) <= 0, max(out[625:1000])
    assert pr.period_ms() == 1000 and pr.fast.active
    assert any(x > 10 * MW for x in out[1400:])


def test_slow_channel_finds_the_checkpoint_period():
    loads = []
    for k in range(4200):                        # 210 s: checkpoints every 60 s, 20 s long
        t = k * 50
        if t % 60000 < 20000:
            loads.append(7 * MW)
        else:
            loads.append(square(t, 1000, 26 * MW, 12 * MW))
    pr = predictor()
    feed(pr, loads)
    assert abs(pr.slow.period_ms() - 60000) <= 2000, pr.slow.period_ms()
    assert pr.slow.conf_pm > 600
    # The largest rise is the end of a checkpoint (at 20 s in each minute):
    # now (210 s = 30 s into the minute) it is ~50 s away.
    assert abs(pr.slow.rise_in_ms() - 50000) <= 4000, pr.slow.rise_in_ms()


def test_disabled_predictor_only_passes_hints():
    pr = predictor(pred_enabled=False)
    assert pr.fast.nf == pr.slow.ns == 1               # no history kept: only the hint table
    assert feed(pr, iteration_load(800, 900)) == [0] * 800
    pr.hints.add(hn.JOB_START, 200, 10 * MW, 250)
    assert pr.update(12 * MW, 50) == 0          # due in 150 ms: not yet (lead 75 ms)
    assert pr.update(12 * MW, 50) == 0
    assert pr.update(12 * MW, 50) == 10 * MW    # due in 50 ms


def test_skip_keeps_time_and_ages_hints():
    pr = predictor()
    feed(pr, iteration_load(600, 900))
    pr.hints.add(hn.JOB_START, 300, 5 * MW, 100)
    for _ in range(10):
        assert pr.skip(50) == 0
    assert pr.hints.count() == 0 and pr.hints.expired == 1
    assert pr.fast.filled == pr.fast.nf


# --- the engine's feed-forward input ---

def engine(**over):
    base = {'cap_w': 18 * MW, 'recharge_w': 14 * MW, 'recharge_max_w': 2 * MW}
    base.update(over)
    return d.Engine(config.validate(base))


def test_zero_feed_forward_is_the_reactive_engine():
    r = Lcg(5)
    cfgs = ({}, {'ramp_up_w_per_s': 2 * MW, 'ramp_down_w_per_s': 2 * MW, 'slew_w_per_s': 50 * MW})
    for cfg in cfgs:
        a = engine(**cfg)
        b = engine(**cfg)
        batt = 0
        for _ in range(2000):
            load = 8 * MW + r.next(20 * MW)
            args = (load - batt, batt, r.next(10001), r.next(PCS), r.next(PCS), 0,
                    r.next(1440), NONE, 20 + r.next(80))
            sa = a.step(*args)
            assert b.step(*(args + (0,))) == sa and a.reason == b.reason
            batt = sa


def test_rise_pre_arms_within_the_safety_window():
    e = engine()
    # 12 MW now, 14 MW more expected: discharge for 26 MW against the 18 MW cap.
    assert e.step(12 * MW, 0, 5000, PCS, PCS, 0, 0, NONE, 50, 14 * MW) == 8 * MW
    assert e.reason == d.CAP and e.ff == 14 * MW >> 3
    # The rise came: same setpoint, nothing left over the cap.
    assert e.step(26 * MW - 8 * MW, 8 * MW, 5000, PCS, PCS, 0, 0, NONE, 50) == 8 * MW
    # Never beyond the export limit (0): at 5 MW load the battery gives at most 5 MW.
    e = engine()
    assert e.step(5 * MW, 0, 5000, PCS, PCS, 0, 0, NONE, 50, 25 * MW) == 5 * MW
    # pred_min_grid_w keeps the real grid up while pre-arming.
    cfg = config.validate({'cap_w': 18 * MW, 'recharge_w': 14 * MW})
    cfg['pred_min_grid_w'] = 4 * MW
    e = d.Engine(cfg)
    assert e.step(12 * MW, 0, 5000, PCS, PCS, 0, 0, NONE, 50, 14 * MW) == 8 * MW
    e = d.Engine(cfg)
    assert e.step(10 * MW, 0, 5000, PCS, PCS, 0, 0, NONE, 50, 14 * MW) == 6 * MW
    # PCS limit, SoC reserve and a fault still win.
    e = engine()
    assert e.step(12 * MW, 0, 5000, PCS, 3 * MW, 0, 0, NONE, 50, 14 * MW) == 3 * MW
    e = engine()
    assert e.step(12 * MW, 0, 1000, PCS, PCS, 0, 0, NONE, 50, 14 * MW) == 0
    assert e.reason == d.SOC_LIMIT
    e = engine()
    assert e.step(12 * MW, 0, 5000, PCS, PCS, d.ST_PCS_FAULT, 0, NONE, 50, 14 * MW) == 0


def test_a_false_alarm_is_undone_at_once():
    # (A guard limit of 4x the ramp limit: ff is not cut here.)
    e = engine(ramp_up_w_per_s=2 * MW, ramp_down_w_per_s=2 * MW, pred_ff_ramp_pm=4000)
    assert e.step(15 * MW, 0, 5000, PCS, PCS, 0, 0, NONE, 50) == 0
    sp = e.step(15 * MW, 0, 5000, PCS, PCS, 0, 0, NONE, 50, 10 * MW)
    assert sp == 10 * MW - 100 * KW            # planned grid may rise 100 kW per cycle
    # The rise did not come: back where the reactive engine would be.
    assert e.step(15 * MW - sp, sp, 5000, PCS, PCS, 0, 0, NONE, 50) == 0


def test_the_rhythm_predicts_whole_rises_the_engine_guards_the_ramp():
    # The predictor does not know the ramp limits: it predicts the whole
    # 14 MW rise; how much of it the grid can take is the engine's guard
    # (cabinet.ffguard, tests/firmware/test_ffguard.py).
    loads = iteration_load(800, 900)
    ramps = {'ramp_up_w_per_s': 2 * MW, 'ramp_down_w_per_s': 2 * MW, 'pred_ff_ramp_pm': 600}
    for pr in (predictor(), predictor(**ramps)):
        out = feed(pr, loads)[-200:]
        assert pr.fast.active and min(x for x in out if x) > 13 * MW


def test_drop_pre_charges_only_under_ramp_smoothing_and_below_the_cap():
    e = engine()
    assert e.step(16 * MW, 0, 5000, PCS, PCS, 0, 0, NONE, 50, -6 * MW) == 0
    e = engine(ramp_up_w_per_s=2 * MW, ramp_down_w_per_s=2 * MW, recharge_max_w=10 * MW)
    assert e.step(16 * MW, 0, 5000, PCS, PCS, 0, 0, NONE, 50) == 0
    # A 6 MW drop expected: start holding the grid, up to the 18 MW cap.
    sp = e.step(16 * MW, 0, 5000, PCS, PCS, 0, 0, NONE, 50, -6 * MW)
    assert sp == -1900 * KW and e.reason == d.RAMP     # the planned grid falls 100 kW
    assert e.ff == -(2 * MW >> 3)                       # of the 6 MW, 2 fit under the cap
    # At the cap there is no room at all.
    e = engine(ramp_up_w_per_s=2 * MW, ramp_down_w_per_s=2 * MW)
    assert e.step(18 * MW, 7 * MW, 5000, PCS, PCS, 0, 0, NONE, 50) == 7 * MW
    assert e.step(18 * MW, 7 * MW, 5000, PCS, PCS, 0, 0, NONE, 50, -10 * MW) == 7 * MW


def test_drops_are_fed_forward_only_when_enabled():
    loads = iteration_load(800, 900)
    assert min(feed(predictor(), loads)) == 0
    assert min(feed(predictor(pred_drops=True), loads)) < -10 * MW


def test_mpy_predictor_and_engine_allocate_nothing():
    from alloc import no_alloc
    pr = predictor(pred_drops=True)
    e = engine(ramp_up_w_per_s=2 * MW, ramp_down_w_per_s=2 * MW, slew_w_per_s=60 * MW)
    loads = iteration_load(1200, 900, jitter_ms=20)
    state = [0, 0]

    def cycle():
        i = state[0] = state[0] + 1
        load = loads[i % 1200]
        if i % 97 == 0:
            pr.skip(50)
            return
        ff = pr.update(load, 50)
        b = state[1]
        state[1] = e.step(load - b, b, 5000, PCS, PCS, 0, i % 1440, NONE, 50, ff, pr.hint_w)

    pr.hints.add(hn.JOB_START, 3000, 10 * MW, 250)
    pr.hints.add(hn.CKPT_START, 9000, 10 * MW, 250)
    no_alloc(cycle, 10000, 'Predictor.update + Engine.step (ramp guard)')


# --- the controller's use of the predictor (MicroPython only: it imports
# micropython; the unix port runs it with the firmware folder as root) ---

class _Silent:
    """A bus where nothing answers: the controller never leaves INIT/SAFE."""
    def drain(self):
        pass

    def write(self, buf):
        pass

    def recv_into(self, buf, want, timeout_ms):
        return 0


class _Board:
    baud = 115200

    def __init__(self):
        self.bus = _Silent()

    def send_telemetry(self, frame):
        pass

    def log(self, text):
        pass

    def set_output(self, name, on):
        pass

    def reset(self):
        pass


def _controller(**over):
    from cabinet import controller
    cfg = {'pred_enabled': True, 'response_timeout_ms': 1}
    cfg.update(over)
    return controller.Controller(_Board(), config.validate(cfg)), controller


def test_mpy_controller_runs_the_hint_clocks_outside_run():
    c, ctl = _controller()
    c.hints.add(hn.JOB_START, 300, 10 * MW, 100)
    for _ in range(6):
        c.cycle(50)
    assert c.state != ctl.RUN
    assert c.hints.due[0] == 0 and c.hints.count() == 1       # skip() aged it 300 ms
    for _ in range(3):
        c.cycle(50)
    assert c.hints.count() == 0 and c.hints.expired == 1      # and let it expire


def test_mpy_controller_rebuilds_the_predictor_on_a_new_config():
    c, _ = _controller()
    old = c.predictor
    c.hints.add(hn.JOB_START, 5000, 10 * MW, 100)
    cfg = dict(c.cfg)
    cfg['cap_w'] = 17 * MW                     # not a predictor key: it keeps its history
    c.apply_config(cfg)
    assert c.predictor is old
    cfg = dict(cfg)
    cfg['pred_lead_ms'] = 150
    c.apply_config(cfg)
    assert c.predictor is not old and c.predictor.lead_ms == 150
    assert c.predictor.hints is c.hints and c.hints.count() == 1   # announced hints stay
    cfg = dict(cfg)
    cfg['pred_enabled'] = False
    c.apply_config(cfg)
    assert c.predictor is None and c.hints is None
    cfg = dict(cfg)
    cfg['pred_enabled'] = True
    c.apply_config(cfg)
    assert c.predictor is not None and c.predictor.hints is c.hints
