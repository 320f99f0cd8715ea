# Cost of one dispatch Engine.step with every stage active (TOU, SoC taper,
# DR, cap, ramp with delay and floor, slew); with a second argument "ff",
# every step also gets a 3 MW pre-arm, so the ramp guard runs each time.
# Runs on MicroPython and, for comparison, on CPython (the same module,
# unchanged).
import sys
from cabinet import config
from cabinet import dispatch as d
from mpy_ticks import ticks_diff, ticks_us

MW = 1000000


def main(n, ff):
    e = d.Engine(config.validate({
        'ramp_up_w_per_s': 2 * MW, 'ramp_down_w_per_s': 2 * MW, 'ramp_down_delay_ms': 200,
        'grid_floor_w': 9 * MW, 'slew_w_per_s': 60 * MW, 'soc_taper_cpct': 300,
        'tou': [{'start_min': 0}, {'start_min': 600, 'arb_w': 1 * MW}]}))
    loads = [(9 + (i * 7919) % 17) * MW for i in range(64)]
    batt = 0
    t0 = ticks_us()
    for i in range(n):
        load = loads[i & 63]
        batt = e.step(load - batt, batt, 5000, 12 * MW, 12 * MW, 0, 700, 16 * MW, 50, ff)
    dt = ticks_diff(ticks_us(), t0)
    print('{"steps": %d, "step_ns": %d}' % (n, dt * 1000 // n if n else 0))


main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000,
     3 * MW if len(sys.argv) > 2 and sys.argv[2] == 'ff' else 0)
