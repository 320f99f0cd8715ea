# A randomized trace through the predictor and the engine's feed-forward
# input, printed as a digest. Runs unchanged on CPython and MicroPython; the
# two outputs must be identical (tests/test_predict_identity.py). Loads: a
# jittered iteration rhythm with checkpoints and job starts/crashes, then
# random steps; hints now and then; the LCG draws the same numbers on both.
import sys
from cabinet import config
from cabinet import dispatch as d
from cabinet import predict as p
from lcg import Lcg

MW = 1000000


CONFIGS = [
    ({}, {}),
    ({'ramp_up_w_per_s': 2 * MW, 'ramp_down_w_per_s': 2 * MW, 'slew_w_per_s': 60 * MW},
     {'pred_lead_ms': 100, 'pred_late_ms': 50, 'pred_min_grid_w': 2 * MW, 'pred_drops': True}),
    ({'ramp_up_w_per_s': 2 * MW, 'ramp_down_w_per_s': 2 * MW, 'ramp_down_delay_ms': 300,
      'export_limit_w': 1 * MW},
     {'pred_tick_ms': 100, 'pred_period_max_ms': 3000, 'pred_max_err_pm': 600,
      'pred_slow_tick_ms': 1000}),
]


def loads(r, n):
    out = []
    period = 700 + r.next(800)
    edge = 0
    length = period
    t = 0
    ckpt = 0
    for k in range(n):
        if k == n // 2:
            period = 0                                   # second half: no rhythm
        if period:
            while t >= edge + length:
                edge += length
                length = period + r.next(41) - 20
            if t % 40000 < 12000:
                x = 7 * MW                               # checkpoint
            else:
                x = 26 * MW if (t - edge) < length * 55 // 100 else 12 * MW
        else:
            if r.next(30) == 0:
                ckpt = 9 * MW + r.next(16 * MW)
            x = ckpt
        out.append(x + r.next(120000))
        t += 50
    return out


def run(steps):
    r = Lcg(4242)
    digest = 0
    acted = 0
    active = 0
    per = len(CONFIGS)
    for site, pcfg in CONFIGS:
        cfg = config.validate(site)
        cfg.update(pcfg)
        cfg['pred_enabled'] = True
        e = d.Engine(cfg)
        pr = p.Predictor(cfg)
        batt = 0
        for i, load in enumerate(loads(r, steps // per)):
            if r.next(400) == 0:
                pr.hints.add(1 + r.next(6), r.next(3000), r.next(15 * MW), r.next(500), r.next(4))
            if r.next(1000) == 0:
                ff = pr.skip(50)
            else:
                ff = pr.update(load, 40 + r.next(21))
            sp = e.step(load - batt, batt, 2000 + r.next(7000), 12 * MW, 12 * MW, 0, i % 1440,
                        d.NO_LIMIT, 50, ff)
            batt = (batt + sp) // 2
            acted += ff != 0
            active += pr.fast.active
            digest = (digest * 31 + sp + 7 * ff + pr.fast.period + 3 * pr.fast.conf_pm + 5 * pr.fast.err_pm
                      + 11 * pr.slow.period + 13 * e.reason) % 1000000007
    print('steps %d digest %d acted %d active %d' % (steps, digest, acted, active))
    print('last period_ms %d conf %d err %d slow_ms %d slow_conf %d hints %d/%d/%d' % (
        pr.period_ms(), pr.fast.conf_pm, pr.fast.err_pm, pr.slow.period_ms(), pr.slow.conf_pm,
        pr.hints.added, pr.hints.seen, pr.hints.expired))


run(int(sys.argv[1]) if len(sys.argv) > 1 else 30000)
