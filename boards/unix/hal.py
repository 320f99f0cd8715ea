# Board HAL for the MicroPython unix port (software-in-the-loop).
# The RS-485 bus is a pty served by the plant emulator; telemetry is written
# to stdout as binary, human logs to stderr. This file and the other boards'
# hal.py are the only firmware code that touches hardware-facing modules.
import _thread
import json
import os
import select
import sys
import termios
import time

_DIR = __file__.rsplit('/', 1)[0] if '/' in __file__ else '.'
VMIN, VTIME = 6, 5            # indices in termios cc (Linux); the module lacks the names


def load_board():
    with open(_DIR + '/board.json') as f:
        return json.load(f)


class PtyBus:
    """Raw, non-blocking pty; select.poll gives the timeouts."""

    def __init__(self, path, gap_ms=2):
        self.f = open(path, 'r+b')
        fd = self.f.fileno()
        termios.setraw(fd)
        a = termios.tcgetattr(fd)
        a[6][VMIN] = 0                # VMIN = 1 would block reads and the loop
        a[6][VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, a)
        self.poll = select.poll()
        self.poll.register(self.f, select.POLLIN)
        self.gap_ms = gap_ms          # end of frame: this much silence after a byte
        self.scratch = bytearray(64)
        self._readinto = self.f.readinto
        self._write = self.f.write
        self._ready(0)                # first ipoll allocates its result tuple

    def _ready(self, timeout_ms):
        for _ in self.poll.ipoll(timeout_ms):
            return True
        return False

    def write(self, buf):
        self._write(buf)              # a pty has no direction pin to drive

    def drain(self):
        while self._ready(0):
            if not self._readinto(self.scratch):
                return

    def recv_into(self, buf, want, timeout_ms):
        """Read up to `want` bytes; stop at the timeout (nothing yet) or at a silent gap."""
        got = 0
        wait = timeout_ms
        s = self.scratch
        while got < want and self._ready(wait):
            n = self._readinto(s)
            if not n:
                break
            for i in range(n):        # copy without slicing (slices allocate)
                if got < want:
                    buf[got] = s[i]
                    got += 1
            wait = self.gap_ms
        return got


class Board:
    def __init__(self):
        self.cfg = load_board()
        self.baud = self.cfg['bus']['baud']
        path = os.getenv(self.cfg['bus']['path_env'])
        if not path:
            raise OSError('set %s to the plant\'s pty path' % self.cfg['bus']['path_env'])
        self.bus = PtyBus(path)
        self._out = sys.stdout.buffer.write
        self._flush = sys.stdout.buffer.flush
        self.site_path = os.getenv('CABINET_SITE') or 'site.json'
        self.key_path = os.getenv('CABINET_KEY') or 'key.bin'
        self._start_watchdog(self.cfg['watchdog_ms'])
        self._in_poll = select.poll()
        self._in_poll.register(sys.stdin, select.POLLIN)
        self._stdin_readinto = sys.stdin.buffer.readinto
        self._one = bytearray(1)
        self._in_ready()                  # first ipoll allocates its result tuple

    def console_readinto(self, buf):
        """Bytes waiting on the console (stdin), without blocking: 0 if none."""
        n = 0
        one = self._one
        while n < len(buf) and self._in_ready():
            if not self._stdin_readinto(one):
                break                     # end of input
            buf[n] = one[0]
            n += 1
        return n

    def _in_ready(self):
        for _ in self._in_poll.ipoll(0):
            return True
        return False

    def reset(self):
        # Like machine.reset(): the supervisor (vboard, or whoever runs us) restarts.
        sys.exit(0)

    def send_telemetry(self, frame):
        self._out(frame)
        self._flush()

    def feed_watchdog(self):
        self._dog[0] = time.ticks_ms()

    def _start_watchdog(self, timeout_ms):
        # Emulates machine.WDT: a thread that ends the process with SIGUSR1
        # (exit status -10 / 138: "watchdog reset") when the loop has not fed
        # it for timeout_ms. The heap lock is per thread, so the control loop
        # holding it does not stop this one from reporting.
        self._dog = [time.ticks_ms(), timeout_ms, 1]   # last feed, timeout, armed
        dog = self._dog

        def watch():
            while dog[2]:
                time.sleep_ms(20)
                if dog[2] and time.ticks_diff(time.ticks_ms(), dog[0]) > dog[1]:
                    sys.stderr.write('watchdog: not fed for %d ms, resetting\n' % dog[1])
                    os.system('kill -USR1 $PPID')   # $PPID of the shell: this process
                    time.sleep_ms(1000)
        _thread.start_new_thread(watch, ())

    def interrupted(self):
        # A developer's Ctrl-C drops to the REPL: stop the emulated watchdog
        # (an MCU's cannot be stopped; `cabctl flash` feeds it from a timer).
        self._dog[2] = 0

    def set_output(self, name, on):
        # Dry contacts (load-shed request, genset start): no pins on a host;
        # their state is in telemetry (site_flags) and in the events.
        pass

    def led(self, on):
        pass

    def log(self, msg):
        sys.stderr.write(msg + '\n')
