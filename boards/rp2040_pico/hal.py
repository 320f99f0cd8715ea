# Board HAL for the Raspberry Pi Pico (RP2040), MicroPython >= 1.24.
# Modbus RTU over RS-485 on a hardware UART with a driver-enable pin,
# telemetry as raw bytes on the USB console, logs kept in RAM. The boards'
# hal.py files are the only firmware code that may import `machine`.
#
# Steady-state calls (bus write/drain/recv_into, send_telemetry,
# feed_watchdog, led) allocate nothing: methods are bound once here, bytes
# are copied by index from a preallocated scratch buffer (slices allocate).
import json
import sys
import time
from machine import ADC, Pin, UART, WDT

_DIR = __file__.rsplit('/', 1)[0] if '/' in __file__ else '.'
LOG_LINES = 16                # Board.recent_logs keeps the last this many


def load_board():
    with open(_DIR + '/board.json') as f:
        return json.load(f)


class Rs485Bus:
    """Half-duplex RS-485: DE (tied to /RE) high while sending, low otherwise."""

    def __init__(self, b):
        baud = b['baud']
        # timeout=0: reads never block; recv_into only asks for what any()
        # reports and does its own timing. Parity/stop default to 8N1; a site
        # whose devices need 8E1 adds "parity": 0 to board.json's bus.
        self.uart = u = UART(b['uart'], baudrate=baud, bits=8, parity=b.get('parity'),
                             stop=b.get('stop', 1), tx=Pin(b['tx_pin']),
                             rx=Pin(b['rx_pin']), timeout=0, timeout_char=0,
                             txbuf=256, rxbuf=256)
        self.de = Pin(b['de_pin'], Pin.OUT, value=0)   # listen until we talk
        # End of a reply: 3.5 characters (11 bits) of silence, at least 2 ms.
        self.gap_us = max(2000, 38500000 // baud + 1)
        # Before MicroPython 1.24 (PR #16052) rp2's flush() returned while the
        # last byte was still on the wire (documented in machine.UART.flush);
        # hold DE one more character so it is never cut. Harmless after.
        self.tail_us = 11000000 // baud + 1
        self.scratch = bytearray(64)
        self._any = u.any
        self._readinto = u.readinto
        self._write = u.write
        self._flush = u.flush
        self._de_on = self.de.on
        self._de_off = self.de.off
        self._sleep_us = time.sleep_us

    def write(self, buf):
        self._de_on()
        try:
            self._write(buf)
            self._flush()             # blocks until the UART has sent it all
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


class Board:
    def __init__(self):
        self.cfg = cfg = load_board()
        self.baud = cfg['bus']['baud']
        self.site_path = 'site.json'
        self.recent_logs = []
        self.bus = Rs485Bus(cfg['bus'])
        # CT inputs: ADC(Pin) puts the pin in high-Z; read_u16() is 0..65535.
        self.ct = [ADC(Pin(p)) for p in cfg['adc']['ct_channels']]
        self._ct_read = [a.read_u16 for a in self.ct]
        lp = cfg['led_pin']
        self._led = Pin(lp, Pin.OUT, value=0) if lp is not None else None
        self._led_value = self._led.value if self._led is not None else None
        # The console carries binary telemetry: sys.stdout.buffer writes raw
        # bytes; the text stream would turn 0x0A into 0x0D 0x0A (fallback only).
        # Ctrl-C stays enabled so mpremote can interrupt: 0x03 is only acted on
        # when it arrives from the host, never in what the board sends.
        out = getattr(sys.stdout, 'buffer', None)
        self._out = out.write if out else sys.stdout.write
        # Last, so a bad board.json fails with the REPL still reachable: once
        # started the watchdog cannot be stopped, only fed (machine.WDT).
        self._wdt = WDT(timeout=cfg['watchdog_ms'])
        self._feed = self._wdt.feed

    def send_telemetry(self, frame):
        self._out(frame)

    def feed_watchdog(self):
        self._feed()

    def led(self, on):
        if self._led_value is not None:
            self._led_value(1 if on else 0)

    def read_ct(self, i):
        """Raw ADC reading of current transformer i, 0..65535 (1.65 V ~ 32768)."""
        return self._ct_read[i]()

    def log(self, msg):
        # Logs must not mix with telemetry on the console: keep a short ring
        # in RAM instead (allocates, but logs are rare events).
        r = self.recent_logs
        r.append(msg)
        if len(r) > LOG_LINES:
            r.pop(0)
