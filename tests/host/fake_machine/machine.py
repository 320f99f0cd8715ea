"""Test double for MicroPython's `machine` module: UART, Pin, WDT, ADC.

The hardware boards (RP2040, ESP32) cannot exist on this Linux box, and the
unix port's own `machine` has no UART/Pin/ADC, so tests put this folder first
on MICROPYPATH. It is NOT a hardware model: it checks the constructor
arguments the real ports accept (set PORT = 'rp2' or 'esp32' before the HAL
is imported), records every pin, UART and watchdog call in order, and serves
scripted received bytes. Recording writes into preallocated buffers, so the
HAL can be exercised under micropython.heap_lock(). Electrical timing (when
the last stop bit really leaves the pin) is out of its reach.
"""
import time
from array import array

PORT = None                   # 'rp2' or 'esp32': which port's rules to apply

# Event codes in LOG, each with one small argument.
PIN_ON, PIN_OFF, WRITE, FLUSH, READ, FEED, ADC_READ = 1, 2, 3, 4, 5, 6, 7
NAMES = ('', 'pin_on', 'pin_off', 'write', 'flush', 'read', 'feed', 'adc_read')
LED_ID = 250                  # event argument standing for Pin('LED')


class _Log:
    def __init__(self, size=512):
        self.code = bytearray(size)
        self.arg = bytearray(size)
        self.n = 0
        self.lost = 0

    def add(self, code, arg):
        if self.n < len(self.code):
            self.code[self.n] = code
            self.arg[self.n] = arg & 0xFF
            self.n += 1
        else:
            self.lost += 1

    def clear(self):
        self.n = 0
        self.lost = 0

    def events(self):         # for reports, outside locked sections
        return [(NAMES[self.code[i]], self.arg[i]) for i in range(self.n)]


LOG = _Log()
PINS = []
UARTS = []
WDTS = []
ADCS = []


def _pin_id(p):
    return p.id if isinstance(p, Pin) else p


def _check_pin(pid, output):
    if PORT == 'rp2':
        if pid == 'LED':
            return
        if not (isinstance(pid, int) and 0 <= pid <= 29):
            raise ValueError('rp2: invalid pin %r' % (pid,))
    elif PORT == 'esp32':
        ok = isinstance(pid, int) and (0 <= pid <= 19 or 21 <= pid <= 23
                                       or 25 <= pid <= 27 or 32 <= pid <= 39)
        if not ok:
            raise ValueError('esp32: invalid pin %r' % (pid,))
        if 6 <= pid <= 11:
            raise ValueError('esp32: GPIO%d belongs to the SPI flash' % pid)
        if output and pid >= 34:
            raise ValueError('esp32: GPIO%d is input-only' % pid)
    else:
        raise RuntimeError('set machine.PORT before importing the HAL')


class Pin:
    IN, OUT, OPEN_DRAIN = 0, 1, 2
    PULL_UP, PULL_DOWN = 1, 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        _check_pin(id, mode == Pin.OUT)
        self.id = id
        self.num = LED_ID if id == 'LED' else id
        self.mode = mode
        self.v = 1 if value else 0
        PINS.append(self)

    def on(self):
        self.v = 1
        LOG.add(PIN_ON, self.num)

    def off(self):
        self.v = 0
        LOG.add(PIN_OFF, self.num)

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = 1 if v else 0
        LOG.add(PIN_ON if v else PIN_OFF, self.num)


class UART:
    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, *, tx=None,
                 rx=None, rts=None, cts=None, txbuf=256, rxbuf=256, timeout=0,
                 timeout_char=0, invert=0, flow=0):
        txp, rxp = _pin_id(tx), _pin_id(rx)
        if PORT == 'rp2':
            # ports/rp2/machine_uart.c: IS_VALID_TX / IS_VALID_RX
            if id not in (0, 1):
                raise ValueError("UART(%d) doesn't exist" % id)
            if not (txp & 3 == 0 and ((txp + 4) & 8) >> 3 == id):
                raise ValueError('bad TX pin')
            if not (rxp & 3 == 1 and ((rxp + 4) & 8) >> 3 == id):
                raise ValueError('bad RX pin')
        elif PORT == 'esp32':
            if id not in (1, 2):
                raise ValueError('UART(%d): 0 is the REPL console' % id)
            if not isinstance(txp, int) or not isinstance(rxp, int):
                raise TypeError('tx/rx must be pins')
            _check_pin(txp, True)
            _check_pin(rxp, False)
        self.id, self.baudrate, self.bits, self.parity, self.stop = id, baudrate, bits, parity, stop
        self.tx, self.rx, self.timeout, self.timeout_char = txp, rxp, timeout, timeout_char
        self.txbuf, self.rxbuf = txbuf, rxbuf
        self.sent = bytearray(1024)   # everything written, in order
        self.sent_n = 0
        self.inbox = bytearray(1024)  # scripted receive stream
        self.in_n = 0
        self.in_pos = 0
        self.due = [0] * 16           # chunk k becomes readable at due[k] (ticks exceed int32)
        self.end = array('i', [0] * 16)   # ... up to inbox index end[k]
        self.chunks = 0
        self.overreads = 0            # readinto asked for more than any(): blocks on hardware
        self.reply = bytearray(256)   # auto-reply to the next write (a fake slave)
        self.reply_n = 0
        self.reply_delay_us = 0
        UARTS.append(self)

    # --- scripting (callable under heap_lock) ---
    def script(self, data, n, delay_us=0):
        """Make data[0:n] readable delay_us from now."""
        for i in range(n):
            self.inbox[self.in_n + i] = data[i]
        self.in_n += n
        self.due[self.chunks] = time.ticks_add(time.ticks_us(), delay_us)
        self.end[self.chunks] = self.in_n
        self.chunks += 1

    def reset_rx(self):
        self.in_n = self.in_pos = self.chunks = 0

    def set_reply(self, data, n, delay_us):
        for i in range(n):
            self.reply[i] = data[i]
        self.reply_n = n
        self.reply_delay_us = delay_us

    # --- machine.UART API ---
    def any(self):
        now = time.ticks_us()
        top = self.in_pos
        for k in range(self.chunks):
            if time.ticks_diff(now, self.due[k]) >= 0 and self.end[k] > top:
                top = self.end[k]
        return top - self.in_pos

    def readinto(self, buf, nbytes=-1):
        avail = self.any()
        if nbytes < 0:
            nbytes = len(buf)
        if nbytes > avail:
            self.overreads += 1
            nbytes = avail
        if nbytes > len(buf):
            nbytes = len(buf)
        for i in range(nbytes):       # like the real one: fills buf from index 0
            buf[i] = self.inbox[self.in_pos + i]
        self.in_pos += nbytes
        LOG.add(READ, nbytes)
        return nbytes if nbytes else None

    def write(self, buf):
        n = len(buf)
        for i in range(n):
            self.sent[(self.sent_n + i) % len(self.sent)] = buf[i]
        self.sent_n += n
        LOG.add(WRITE, n)
        if self.reply_n:
            self.reset_rx()
            self.script(self.reply, self.reply_n, self.reply_delay_us)
        return n

    def flush(self):
        LOG.add(FLUSH, 0)

    def txdone(self):
        return True


class WDT:
    def __init__(self, id=0, timeout=5000):
        if PORT == 'rp2' and not 0 < timeout <= 8388:
            raise ValueError('rp2: WDT timeout must be 1..8388 ms')
        if PORT == 'esp32' and timeout < 1000:
            raise ValueError('esp32: WDT timeout must be >= 1000 ms')
        self.timeout = timeout
        self.feeds = 0
        WDTS.append(self)

    def feed(self):
        self.feeds += 1
        LOG.add(FEED, 0)


class ADC:
    ATTN_0DB, ATTN_2_5DB, ATTN_6DB, ATTN_11DB = 0, 1, 2, 3

    def __init__(self, pin, *, atten=None):
        pid = _pin_id(pin)
        if PORT == 'rp2':
            if atten is not None:
                raise TypeError('rp2: ADC takes no atten')
            if pid not in (26, 27, 28, 29):
                raise ValueError('rp2: no ADC on GP%r' % (pid,))
        elif PORT == 'esp32' and not (isinstance(pid, int) and 32 <= pid <= 39):
            raise ValueError('esp32: GPIO%r is not an ADC1 pin' % (pid,))
        self.pin = pid
        self.atten = atten
        self.level = 32768            # what read_u16 returns; tests may change it
        ADCS.append(self)

    def read_u16(self):
        LOG.add(ADC_READ, self.pin)
        return self.level


RESETS = []


def reset():
    """machine.reset(): recorded instead of rebooting the host."""
    RESETS.append(1)
