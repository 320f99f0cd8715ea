# Heap measurement around the real main.py, on the MicroPython unix port.
# Run in a flash-like folder (main.py, hal.mpy, cabinet/*.mpy, maps, site.json
# with max_cycles set) with `micropython -X heapsize=N heap_probe.py`.
#
# The garbage collector is off while main.py boots and runs its cycles, so
# gc.mem_alloc() afterwards is every byte the firmware ever allocated, garbage
# included: an upper bound of its peak heap use (the steady-state loop
# allocates nothing, so more cycles do not raise it; if they did, the bound
# would grow until MemoryError). One JSON line goes to stderr; stdout stays the
# firmware's telemetry.
import gc
import sys


def boot(g):
    # In a function: binding the exception to a new global would itself allocate.
    try:
        exec(compile(open('main.py').read(), 'main.py', 'exec'), g)
    except Exception as e:      # MemoryError included: report it, don't hide it
        return e
    return None


g = {'__name__': '__main__'}
gc.collect()
base = gc.mem_alloc()
total = base + gc.mem_free()
gc.disable()
exc = boot(g)
peak = gc.mem_alloc() - base
gc.enable()
err = None if exc is None else '%s: %s' % (type(exc).__name__, exc)
exc = None
gc.collect()
live = gc.mem_alloc() - base
err = 'null' if err is None else '"%s"' % err.replace('"', "'")
sys.stderr.write('HEAP {"heap": %d, "base": %d, "peak": %d, "live_after": %d, "error": %s}\n'
                 % (total, base, peak, live, err))
