# Board HAL for the MicroPython unix port (software-in-the-loop).
# The RS-485 bus is a pty served by the plant emulator; CT sample blocks come
# on a second pty of the plant (CABINET_CT); telemetry is written to stdout
# as binary, human logs to stderr. This file and the other boards'
# hal.py are the only firmware code that touches hardware-facing modules.
import _thread
import json
import os
import select
import sys
import termios
import time

from cabinet.console import ConsoleIn

_DIR = __file__.rsplit('/', 1)[0] if '/' in __file__ else '.'
VMIN, VTIME = 6, 5            # indices in termios cc (Linux); the module lacks the names
CT_ENV = 'CABINET_CT'         # the plant's CT pty (its ready line's "ct")
CT_HEADER = 8                 # b'CT', block counter, sample count, payload byte sum: u16 LE


def _raw_nonblocking(f):
    """A tty in raw mode whose reads return at once (VMIN = VTIME = 0)."""
    fd = f.fileno()
    termios.setraw(fd)
    a = termios.tcgetattr(fd)
    a[6][VMIN] = 0                # VMIN = 1 would block reads and the loop
    a[6][VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, a)


def load_board():
    with open(_DIR + '/board.json') as f:
        return json.load(f)


class PtyBus:
    """Raw, non-blocking pty; select.poll gives the timeouts."""

    def __init__(self, path, gap_ms=2):
        self.f = open(path, 'r+b')
        _raw_nonblocking(self.f)
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


class CtPipe:
    """CT sample blocks from the plant (cabctl.plant.server.CtFeed), one per
    mains cycle: an 8-byte header - b'CT', a block counter, the sample count,
    the sum of the payload bytes mod 2**16, each u16 little-endian - then the
    samples as u16 little-endian. A byte parser finds the header again after
    a partial or lost block; a gap in the counter counts dropped blocks.
    Nothing allocates after __init__: bytes are copied by index."""

    def __init__(self, path, samples):
        self.f = open(path, 'r+b')
        _raw_nonblocking(self.f)
        self._readinto = self.f.readinto
        self.samples = samples
        self.size = 2 * samples
        self.scratch = bytearray(512)
        self.hdr = bytearray(CT_HEADER)
        self.rx = bytearray(self.size)      # the block arriving
        self.done = bytearray(self.size)    # the newest complete one
        self.pos = 0                        # header bytes, then payload bytes, received
        self.payload = False
        self.sum = 0
        self.want_sum = 0
        self.rx_seq = 0
        self.seq = -1                       # counter of the last good block
        self.new = 0                        # good blocks since the last read()
        self.blocks = 0                     # good blocks, dropped (counter gaps),
        self.dropped = 0                    # rejected (wrong size or byte sum)
        self.rejected = 0
        for _ in range(1000):               # what queued before we opened is stale
            if not self._readinto(self.scratch):
                break

    def _feed(self, s, n):
        i = 0
        while i < n:
            if self.payload:
                rx = self.rx
                p = self.pos
                c = self.sum
                end = self.size
                while i < n and p < end:
                    x = s[i]
                    rx[p] = x
                    c += x
                    p += 1
                    i += 1
                self.pos = p
                self.sum = c
                if p == end:
                    self._complete()
                continue
            x = s[i]
            i += 1
            p = self.pos
            if (p == 0 and x != 0x43) or (p == 1 and x != 0x54):
                self.pos = 1 if x == 0x43 else 0      # look for b'CT' again
                continue
            self.hdr[p] = x
            p += 1
            self.pos = p
            if p == CT_HEADER:
                h = self.hdr
                self.pos = 0
                if h[4] | (h[5] << 8) != self.samples:
                    self.rejected += 1                # a false sync, or another n/channels:
                    self._resync()                    # a real header may start inside it
                    continue
                self.rx_seq = h[2] | (h[3] << 8)
                self.want_sum = h[6] | (h[7] << 8)
                self.sum = 0
                self.payload = True

    def _resync(self):
        """Keep the rejected header's tail from its next b'C' (then b'T') on."""
        h = self.hdr
        for i in range(1, CT_HEADER):
            if h[i] == 0x43 and (i == CT_HEADER - 1 or h[i + 1] == 0x54):
                for j in range(i, CT_HEADER):
                    h[j - i] = h[j]
                self.pos = CT_HEADER - i
                return

    def _complete(self):
        self.payload = False
        self.pos = 0
        if self.sum & 0xFFFF != self.want_sum:
            self.rejected += 1
            return
        self.rx, self.done = self.done, self.rx   # a swap: no tuple is built
        seq = self.rx_seq
        if self.seq >= 0:
            self.dropped += (seq - self.seq - 1) & 0xFFFF
        self.seq = seq
        self.new += 1
        self.blocks += 1

    def read(self, arr):
        s = self.scratch
        for _ in range(32):                 # bounded: at most 16 KB per call
            n = self._readinto(s)
            if not n:
                break
            self._feed(s, n)
        got = self.new
        if got:
            self.new = 0
            d = self.done
            j = 0
            for i in range(self.samples):
                arr[i] = d[j] | (d[j + 1] << 8)
                j += 2
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
        self.console_readinto = ConsoleIn().readinto
        self.ct = None                    # CtPipe, once the controller asks for CTs

    def ct_open(self, samples, channels, rate_hz):
        """Prepare CT sampling: blocks of `samples` u16 (channels interleaved,
        each channel at rate_hz). Here the plant made them already: True if
        CABINET_CT names its CT pty."""
        path = os.getenv(CT_ENV)
        if not path:
            self.log('ct: %s not set: no CT samples' % CT_ENV)
            return False
        if self.ct is None or self.ct.samples != samples:
            self.ct = CtPipe(path, samples)
        return True

    def read_ct_block(self, arr):
        """Fill arr (array('H') of the ct_open size) with the newest complete
        block; the number of blocks that arrived since the last call (0: none,
        arr untouched). No allocation."""
        if self.ct is None:
            return 0
        return self.ct.read(arr)

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
