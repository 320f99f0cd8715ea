# Allocation per control cycle, on the MicroPython unix port: main.py with
# Controller.cycle wrapped. A cycle whose heap grew (less what its command
# handling took: commands may allocate) writes "LOOP_ALLOC <cycle> <bytes>" to
# stderr (the rig's firmware.log). Stricter than the soak's probe, which
# allows event frames to allocate: here every frame sent from inside the loop
# counts. Run as soak.probe_launcher(run_dir, <this text>).
import gc
import sys
sys.path.insert(0, '')
from cabinet import controller

C = controller.Controller
_cycle = C.cycle
_commands = C._commands
S = [0, 0]          # cycles run, bytes allocated by command handling


def _commands_probe(self):
    a = gc.mem_alloc()
    try:
        _commands(self)
    finally:
        S[1] += gc.mem_alloc() - a


def _cycle_probe(self, dt_ms=0):
    s = S
    c = s[1]
    a = gc.mem_alloc()
    _cycle(self, dt_ms)
    n = gc.mem_alloc() - a - (s[1] - c)
    s[0] += 1
    if n > 0 and s[0] > 2:          # the first cycles warm up lazy buffers
        sys.stderr.write('LOOP_ALLOC %d %d\n' % (s[0], n))


C.cycle = _cycle_probe
C._commands = _commands_probe
exec(compile(open('main.py').read(), 'main.py', 'exec'), {'__name__': '__main__'})
