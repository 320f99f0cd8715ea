# A randomized 100,000-step trace through the dispatch engine, printed as a
# digest. Runs unchanged on CPython and MicroPython; the two digests must be
# identical (tests/test_dispatch_identity.py). The random numbers come from a
# small LCG so both interpreters draw the same sequence.
import sys
from cabinet import config
from cabinet import dispatch as d
from lcg import Lcg

MW = 1000000


CONFIGS = [
    {},
    {'ramp_up_w_per_s': 2 * MW, 'ramp_down_w_per_s': 2 * MW, 'ramp_down_delay_ms': 300,
     'grid_floor_w': 9 * MW, 'slew_w_per_s': 60 * MW},
    {'cap_w': 16 * MW, 'recharge_w': 11 * MW, 'export_limit_w': 1 * MW, 'soc_hyst_cpct': 300,
     'tou': [{'start_min': 0, 'arb_w': -3 * MW}, {'start_min': 420},
             {'start_min': 1020, 'cap_w': 15 * MW, 'grid_charge': False, 'arb_w': 2 * MW}]},
]


def run(steps):
    r = Lcg(12345)
    digest = 0
    first = []
    seen = [0] * len(d.REASONS)
    per = steps // len(CONFIGS)
    for cfg in CONFIGS:
        e = d.Engine(config.validate(cfg))
        batt = 0
        for i in range(per):
            load = r.next(26 * MW) if r.next(3) == 0 else 8 * MW + r.next(18 * MW)
            soc = r.next(10001)
            status = d.ST_PCS_FAULT if r.next(500) == 0 else (d.ST_OUTAGE if r.next(700) == 0 else 0)
            dr = d.NO_LIMIT if r.next(4) else 12 * MW + r.next(8 * MW)
            # A pre-arm one cycle in three, half of them partly announced
            # (the feed-forward and its ramp guard, cabinet/ffguard.py).
            ff = 0 if r.next(3) else r.next(16 * MW) - 4 * MW
            sure = ff // 2 if r.next(2) else 0
            sp = e.step(load - batt, batt, soc, r.next(12 * MW), r.next(12 * MW), status,
                        r.next(1440), dr, 20 + r.next(100), ff, sure)
            batt = (batt + sp) // 2             # a crude lagging PCS
            digest = (digest * 31 + sp + 7 * e.reason + 3 * e.ff) % 1000000007
            seen[e.reason] += 1
            if len(first) < 5:
                first.append(sp)
    print('steps %d digest %d first %s' % (per * len(CONFIGS), digest, first))
    print('reasons ' + ' '.join('%s=%d' % (d.REASONS[i], n) for i, n in enumerate(seen)))


run(int(sys.argv[1]) if len(sys.argv) > 1 else 100002)
