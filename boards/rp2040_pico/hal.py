# Board HAL for the Raspberry Pi Pico (RP2040), MicroPython >= 1.24: builds
# the rp2 UART, pins, ADCs and watchdog from board.json; the shared bus and
# board logic is in cabinet/mcu.py. The boards' hal.py files are the only
# firmware code that may import `machine`.
from machine import ADC, Pin, UART, WDT, reset
from cabinet.mcu import McuBoard, Rs485Bus, load_json

_DIR = __file__.rsplit('/', 1)[0] if '/' in __file__ else '.'


def load_board():
    return load_json(_DIR + '/board.json')


class Board(McuBoard):
    def __init__(self):
        cfg = load_board()
        b = cfg['bus']
        baud = b['baud']
        # timeout=0: reads never block (the bus does its own timing). Parity
        # and stop default to 8N1; a site whose devices need 8E1 adds
        # "parity": 0 to board.json's bus.
        uart = UART(b['uart'], baudrate=baud, bits=8, parity=b.get('parity'),
                    stop=b.get('stop', 1), tx=Pin(b['tx_pin']), rx=Pin(b['rx_pin']),
                    timeout=0, timeout_char=0, txbuf=256, rxbuf=256)
        de = Pin(b['de_pin'], Pin.OUT, value=0)
        # Before MicroPython 1.24 (PR #16052) rp2's flush() returned while the
        # last byte was still on the wire (documented in machine.UART.flush);
        # hold DE one more character so it is never cut. Harmless after.
        bus = Rs485Bus(uart, de, baud, tail_us=11000000 // baud + 1)
        # CT inputs: ADC(Pin) puts the pin in high-Z; read_u16() is 0..65535.
        cts = [ADC(Pin(p)) for p in cfg['adc']['ct_channels']]
        lp = cfg['led_pin']
        led = Pin(lp, Pin.OUT, value=0) if lp is not None else None
        McuBoard.__init__(self, cfg, bus, cts, led, reset)
        # Dry contacts to the cluster scheduler (load shed) and the genset.
        for name, pin in cfg.get('outputs', {}).items():
            self._outputs[name] = Pin(pin, Pin.OUT, value=0)
        self.start_watchdog(WDT(timeout=cfg['watchdog_ms']))
