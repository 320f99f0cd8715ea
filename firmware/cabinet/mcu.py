# What the microcontroller boards share: a half-duplex RS-485 bus on a UART
# with a driver-enable pin, and the Board plumbing (telemetry to the console,
# watchdog, LED, CT inputs, logs kept in RAM). No `machine` import here: each
# boards/<board>/hal.py builds the port-specific UART, Pin, ADC and WDT
# objects and hands them in.
#
# Steady-state calls (bus write/drain/recv_into, send_telemetry,
# feed_watchdog, led, read_ct, read_ct_block) allocate nothing: methods are bound once here,
# bytes are copied by index from a preallocated scratch buffer (slices allocate).
import json
import sys
import time

from cabinet.console import ConsoleIn

LOG_LINES = 16                # Board.recent_logs keeps the last this many


def load_json(path):
    with open(path) as f:
        return json.load(f)


class Rs485Bus:
    """Half-duplex RS-485: DE (tied to /RE) high while sending, low otherwise.

    uart must be non-blocking (timeout=0): recv_into asks only for what any()
    reports and does its own timing. tail_us holds DE after flush() on ports
    whose flush() returns before the last stop bit.
    """

    def __init__(self, uart, de, baud, tail_us=0):
        self.uart = uart
        self.de = de
        de.off()                  # listen until we talk
        # End of a reply: 3.5 characters (11 bits) of silence, at least 2 ms.
        self.gap_us = max(2000, 38500000 // baud + 1)
        self.tail_us = tail_us
        self.scratch = bytearray(64)
        self._any = uart.any
        self._readinto = uart.readinto
        self._write = uart.write
        self._flush = uart.flush
        self._de_on = de.on
        self._de_off = de.off
        self._sleep_us = time.sleep_us

    def write(self, buf):
        self._de_on()
        try:
            self._write(buf)
            self._flush()             # blocks until the UART has sent it all
            if self.tail_us:
                self._sleep_us(self.tail_us)
        finally:
            self._de_off()            # a stuck driver would jam the whole bus

    def drain(self):
        s = self.scratch
        n = self._any()
        while n:
            if not self._readinto(s, n if n < len(s) else len(s)):
                return
            n = self._any()

    def recv_into(self, buf, want, timeout_ms):
        """Read up to `want` bytes into buf[0:]; 0 if none within timeout_ms,
        else stop at a silent gap of gap_us or when `want` bytes are in."""
        any_ = self._any
        readinto = self._readinto
        s = self.scratch
        cap = len(s)
        ticks_us = time.ticks_us
        ticks_diff = time.ticks_diff
        got = 0
        limit = timeout_ms * 1000     # first byte: the caller's deadline
        t0 = ticks_us()
        # Busy-polls any(): bounded by timeout_ms, and the control loop sleeps
        # between cycles. readinto(buf, n) fills from index 0, hence scratch.
        while got < want:
            n = any_()
            if n:
                if n > want - got:
                    n = want - got
                if n > cap:
                    n = cap
                n = readinto(s, n) or 0
                for i in range(n):
                    buf[got] = s[i]
                    got += 1
                t0 = ticks_us()
                limit = self.gap_us   # after the first byte: end at a silence
            elif ticks_diff(ticks_us(), t0) >= limit:
                break
        return got


class McuBoard:
    """The Board interface of boards/*/hal.py on a microcontroller."""

    def __init__(self, cfg, bus, ct_adcs, led_pin, reset):
        self.cfg = cfg
        self.baud = cfg['bus']['baud']
        self.site_path = 'site.json'
        self.recent_logs = []
        self.bus = bus
        self.ct = ct_adcs
        self._ct_read = [a.read_u16 for a in ct_adcs]
        self._ct_n = 0                    # read_ct_block: samples per block (0: not opened)
        self._ct_ch = 0
        self._ct_rate = 1
        self._led_value = led_pin.value if led_pin is not None else None
        # The console carries binary telemetry: sys.stdout.buffer writes raw
        # bytes; the text stream would turn 0x0A into 0x0D 0x0A (fallback only).
        # Ctrl-C stays enabled so mpremote can interrupt: 0x03 is only acted on
        # when it arrives from the host, never in what the board sends.
        out = getattr(sys.stdout, 'buffer', None)
        self._out = out.write if out else sys.stdout.write
        self._feed = None
        self.key_path = 'key.bin'
        self._reset = reset
        self._outputs = {}                # name -> Pin, filled by the board's hal.py
        self.console_readinto = ConsoleIn().readinto

    def start_watchdog(self, wdt):
        # Call last, so a bad board.json fails with the REPL still reachable:
        # once started the watchdog cannot be stopped, only fed (machine.WDT).
        self._wdt = wdt
        self._feed = wdt.feed

    def reset(self):
        self._reset()                  # machine.reset, handed in by the board's hal.py

    def interrupted(self):
        pass                          # the hardware watchdog cannot be stopped

    def send_telemetry(self, frame):
        self._out(frame)

    def feed_watchdog(self):
        self._feed()

    def led(self, on):
        if self._led_value is not None:
            self._led_value(1 if on else 0)

    def set_output(self, name, on):
        """A dry-contact output named in board.json "outputs" (shed, genset)."""
        pin = self._outputs.get(name)
        if pin is not None:
            pin.value(1 if on else 0)

    def read_ct(self, i):
        """Raw ADC reading of current transformer i, 0..65535 (1.65 V bias ~ 32768)."""
        return self._ct_read[i]()

    def ct_open(self, samples, channels, rate_hz):
        """Prepare read_ct_block: blocks of `samples` u16, `channels` ADC inputs
        (board.json adc.ct_channels, in order) interleaved, each at rate_hz.
        False if the board has fewer CT inputs than the config asks for."""
        if channels > len(self._ct_read) or samples % channels or rate_hz <= 0:
            self.log('ct: %d channels asked, board has %d' % (channels, len(self._ct_read)))
            return False
        self._ct_n = samples
        self._ct_ch = channels
        self._ct_rate = rate_hz
        return True

    def read_ct_block(self, arr):
        """Sample one block now: every channel read_u16() in turn (round robin,
        the skew between channels is the ADC's conversion time), one round every
        1/rate_hz s, timed by a busy loop on ticks_us. Blocks the caller for one
        mains cycle (16.7 ms at 60 Hz, 64 samples): the controller calls it once
        per cycle, so its period must leave room. Returns 1 (a fresh block), 0
        if ct_open failed. No allocation: every value stays a small int.

        Untested on hardware here (no board in CI): the timing depends on the
        port's read_u16() (rp2040 ~2 us, esp32 ~40-60 us per call with
        calibration, fine at 64 x 4 per cycle). A machine.Timer filling a
        double buffer would free the loop, but soft-IRQ jitter at ~4 kHz is
        worse than this loop's."""
        n = self._ct_n
        if not n:
            return 0
        rd = self._ct_read
        nch = self._ct_ch
        rate = self._ct_rate
        ticks_us = time.ticks_us
        ticks_add = time.ticks_add
        ticks_diff = time.ticks_diff
        t0 = ticks_us()
        k = 0
        j = 0
        while k < n:
            for c in range(nch):
                arr[k] = rd[c]()
                k += 1
            j += 1
            # Round j starts j / rate_hz s after t0 (no drift; j <= 256
            # rounds, so j * 10**6 stays below 2**30).
            due = ticks_add(t0, (j * 1000000) // rate)
            while ticks_diff(due, ticks_us()) > 0:
                pass
        return 1

    def log(self, msg):
        # Logs must not mix with telemetry on the console: keep a short ring
        # in RAM instead (allocates, but logs are rare events).
        r = self.recent_logs
        r.append(msg)
        if len(r) > LOG_LINES:
            r.pop(0)
