# time.ticks_us/ticks_diff for the bench scripts run on MicroPython, with a
# stand-in on CPython (for the side-by-side figure).
import time

try:
    ticks_us, ticks_diff = time.ticks_us, time.ticks_diff
except AttributeError:                      # CPython
    ticks_us = lambda: time.perf_counter_ns() // 1000
    ticks_diff = lambda a, b: a - b
