# Cost of one Predictor.update (cabinet/predict.py) on a steady training
# rhythm (0.9 s iterations, 26/12 MW) with the texas sim's keys, once the
# rhythm is learned. Runs on MicroPython and, for comparison, on CPython.
import sys
from cabinet import config
from cabinet import predict
from mpy_ticks import ticks_diff, ticks_us

MW = 1000000


def main(n):
    p = predict.Predictor(config.validate({'pred_enabled': True, 'pred_lead_ms': 50}))
    loads = [26 * MW if (t * 50) % 900 < 495 else 12 * MW for t in range(18)]
    for i in range(2000):                   # learn the rhythm first
        p.update(loads[i % 18], 50)
    t0 = ticks_us()
    for i in range(n):
        p.update(loads[i % 18], 50)
    dt = ticks_diff(ticks_us(), t0)
    print('{"updates": %d, "update_ns": %d, "active": %d}' % (n, dt * 1000 // n if n else 0,
                                                             p.fast.active))


main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
