# Allocation checks for firmware code on MicroPython: run a call with the heap
# locked; any allocation raises MemoryError, reported with the call's name.
# Pass a zero-argument callable (a lambda made before the lock): calling with
# *args would itself allocate the argument tuple.
import micropython


def no_alloc(fn, times=1, what='call'):
    fn()                            # warm-up: lazy one-time buffers are allowed
    micropython.heap_lock()
    try:
        for _ in range(times):
            r = fn()
    except MemoryError:
        micropython.heap_unlock()
        raise AssertionError('%s allocated on the heap' % what)
    micropython.heap_unlock()
    return r
