"""Which serial port is the board, and reading it through USB re-enumeration.

Without --port, `cabctl log` looks at pyserial's list of ports and ranks
them: a USB CDC/ACM port (ttyACM*, cu.usbmodem*) and a known MicroPython
vendor (the MCU's own USB: Raspberry Pi 2E8A, Espressif 303A, MicroPython
F055) score highest, a USB-UART bridge of the kind ESP32 boards carry
(Silicon Labs 10C4, WCH 1A86, FTDI 0403) next. Ports without USB (ttyS*,
Bluetooth) are not candidates. The single best port is used; a tie is an
error that lists the candidates, as is finding none.
"""
import time

from serial.tools import list_ports

BOARD_VIDS = {0x2E8A: "Raspberry Pi", 0x303A: "Espressif", 0xF055: "MicroPython"}
BRIDGE_VIDS = {0x10C4: "Silicon Labs CP210x", 0x1A86: "WCH CH34x", 0x0403: "FTDI"}
ACM_NAMES = ("ttyACM", "usbmodem")


class PortError(RuntimeError):
    pass


def _text(p):
    return " ".join(str(getattr(p, a, "") or "") for a in ("manufacturer", "product", "description"))


def score(p):
    """0 = not a candidate; higher = more likely a MicroPython board."""
    vid = getattr(p, "vid", None)
    acm = any(s in p.device for s in ACM_NAMES)
    if vid is None and not acm:
        return 0
    s = 1
    if acm:
        s += 1
    if vid in BOARD_VIDS:
        s += 2
    elif vid in BRIDGE_VIDS:
        s += 1
    if "micropython" in _text(p).lower():
        s += 1
    return s


def describe(p):
    vid, pid = getattr(p, "vid", None), getattr(p, "pid", None)
    ids = f"{vid:04X}:{pid or 0:04X}" if vid is not None else "no USB id"
    maker = BOARD_VIDS.get(vid) or BRIDGE_VIDS.get(vid)
    text = getattr(p, "description", "") or ""
    if text in ("", "n/a", p.device):
        text = ""
    return "  ".join(x for x in (p.device, ids, maker or "", text) if x)


def pick_port(ports=None):
    """The device name of the one plausible board port; PortError naming the candidates otherwise."""
    ports = list(list_ports.comports() if ports is None else ports)
    ranked = sorted(((score(p), p) for p in ports), key=lambda sp: (-sp[0], sp[1].device))
    plausible = [(s, p) for s, p in ranked if s > 0]
    if not plausible:
        msg = "no serial port looks like a board (no USB serial device found)"
        if ports:
            msg += "; ignored: " + ", ".join(describe(p) for p in ports)
        raise PortError(msg + ". Connect the board, or pass --port DEV or --cmd \"...\".")
    best = plausible[0][0]
    top = [p for s, p in plausible if s == best]
    if len(top) == 1:
        return top[0].device
    listing = "\n".join(f"  {describe(p)}" for _, p in plausible)
    raise PortError(f"{len(top)} serial ports could be the board; pass --port with one of:\n{listing}")


class SerialReader:
    """Reads an open pyserial port; if the device goes away (a board reset
    re-enumerates USB), closes it and reopens the same name until it is back."""

    def __init__(self, ser, feed, retry_s=0.5):
        self.ser = ser
        self.feed = feed
        self.retry_s = retry_s
        self.reconnects = 0

    def run(self, stop):
        import serial
        ser = self.ser
        name, baud = ser.port, ser.baudrate
        while not stop.is_set():
            if ser is None:
                try:
                    ser = serial.Serial(name, baud, timeout=0.2)
                except (serial.SerialException, OSError):
                    stop.wait(self.retry_s)
                    continue
                self.reconnects += 1
            try:
                data = ser.read(4096)
            except (serial.SerialException, OSError, TypeError):
                _close(ser)
                ser = None
                time.sleep(0.05)
                continue
            if data:
                self.feed(data)
        if ser is not None:
            _close(ser)


def _close(ser):
    try:
        ser.close()
    except Exception:       # a vanished device may fail to close; nothing to keep
        pass
