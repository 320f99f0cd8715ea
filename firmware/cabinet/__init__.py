# Cabinet controller firmware package. Everything here is pure MicroPython:
# no `machine`, no CPython-only modules. Board I/O lives in boards/<board>/hal.py.
