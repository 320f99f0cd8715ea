# `cabctl soak`'s probe (host/cabctl/soak.py), run by MicroPython in the
# firmware folder instead of main.py: main.py itself, with heap figures in
# the `status` reply. Only commands and the rare event frames sent through
# send_event (boot, config: "they allocate; they are not the steady state",
# cabinet/events.py) may allocate; the probe reads gc.mem_alloc() as each
# command or event starts and ends, so whatever the heap gained between
# them was allocated - and kept - by the steady-state loop (transition and
# site-change frames included: they are sent from the loop). A fall in
# between, or during a command, is a garbage collection (a lower bound on
# their number; the probe's own collections excluded). No thread: the
# figures come from the firmware's own thread, between cycles.
import gc
import sys
sys.path.insert(0, '')
from cabinet import commands, controller

# 0 loop bytes, 1 GCs between, 2 GCs during commands, 3 heap after the last
# command/event, 4 commands seen, 5 forced collections, 6 event bytes, 7 depth,
# 8 events seen
S = [0, 0, 0, -1, 0, 0, 0, 0, 0]


def _enter(s):
    pre = gc.mem_alloc()
    if s[7] == 0 and s[3] >= 0:
        if pre > s[3]:
            s[0] += pre - s[3]
        elif pre < s[3]:
            s[1] += 1
    s[7] += 1
    return pre


def _leave(s, pre, forced, event):
    s[7] -= 1
    post = gc.mem_alloc()
    if post < pre and s[5] == forced:
        s[2] += 1
    if s[7] == 0:
        if event and post > pre:
            s[6] += post - pre
        s[3] = post


_handle = commands.Commands.handle
_status = commands.Commands.cmd_status
_event = controller.Controller.send_event


def _handle_probe(self):
    s = S
    pre = _enter(s)
    forced = s[5]
    try:
        return _handle(self)
    finally:
        s[4] += 1
        _leave(s, pre, forced, False)


def _event_probe(self, code, fields):
    s = S
    pre = _enter(s)
    forced = s[5]
    try:
        return _event(self, code, fields)
    finally:
        s[8] += 1
        _leave(s, pre, forced, True)


def _status_probe(self, args):
    code, msg, data = _status(self, args)
    data['heap_used'] = gc.mem_alloc()
    if args.get('collect'):
        S[5] += 1
        gc.collect()
        data['heap_live'] = gc.mem_alloc()
    data['heap_free'] = gc.mem_free()
    data['gc_runs'] = S[1] + S[2]
    data['loop_alloc_bytes'] = S[0]
    data['event_alloc_bytes'] = S[6]
    data['events_seen'] = S[8]
    data['commands_seen'] = S[4]
    return code, msg, data


commands.Commands.handle = _handle_probe
commands.Commands.cmd_status = _status_probe
controller.Controller.send_event = _event_probe
exec(compile(open('main.py').read(), 'main.py', 'exec'), {'__name__': '__main__'})
