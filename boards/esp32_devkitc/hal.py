# Board HAL for the ESP32-DevKitC (ESP32-WROOM-32), MicroPython >= 1.24:
# builds the esp32 UART, pins, ADCs and watchdog from board.json; the shared
# bus and board logic is in cabinet/mcu.py. The boards' hal.py files are the
# only firmware code that may import `machine`.
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
        # timeout=0: reads never block (the bus does its own timing).
        # timeout_char=0 also makes the port set the RX FIFO threshold and RX
        # timeout to 1, so any() sees bytes as they arrive instead of in
        # 120-byte chunks (a chunked reply would look like an inter-frame gap).
        # Parity/stop default to 8N1; a site whose devices need 8E1 adds
        # "parity": 0 to board.json's bus.
        uart = UART(b['uart'], baudrate=baud, bits=8, parity=b.get('parity'),
                    stop=b.get('stop', 1), tx=b['tx_pin'], rx=b['rx_pin'],
                    timeout=0, timeout_char=0, txbuf=256, rxbuf=256)
        de = Pin(b['de_pin'], Pin.OUT, value=0)
        # flush() is uart_wait_tx_done() on esp32: it returns after the last
        # stop bit, so DE can drop at once (no tail).
        bus = Rs485Bus(uart, de, baud)
        # CT inputs on ADC1 (ADC2 fails while Wi-Fi is on). 11 dB attenuation:
        # linear range ~0.15-2.45 V around the 1.65 V bias; read_u16() 0..65535.
        cts = [ADC(Pin(p), atten=ADC.ATTN_11DB) for p in cfg['adc']['ct_channels']]
        lp = cfg['led_pin']
        led = Pin(lp, Pin.OUT, value=0) if lp is not None else None
        McuBoard.__init__(self, cfg, bus, cts, led, reset)
        # Dry contacts to the cluster scheduler (load shed) and the genset.
        for name, pin in cfg.get('outputs', {}).items():
            self._outputs[name] = Pin(pin, Pin.OUT, value=0)
        self.start_watchdog(WDT(timeout=cfg['watchdog_ms']))
