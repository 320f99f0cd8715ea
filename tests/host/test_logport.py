"""`cabctl log` without --port: pick the only plausible board port, or say which could be."""
import json
import threading
from types import SimpleNamespace

import pytest
from serial.tools import list_ports, list_ports_common

from cabctl import cli, logport
from cabctl.logport import PortError, pick_port


def port(device, vid=None, pid=None, description="n/a", manufacturer=None, product=None):
    p = list_ports_common.ListPortInfo(device, skip_link_detection=True)
    p.vid, p.pid, p.description, p.manufacturer, p.product = vid, pid, description, manufacturer, product
    return p


PICO = port("/dev/ttyACM0", 0x2E8A, 0x0005, "Board in FS mode", "MicroPython", "Board in FS mode")
ESP32_CP210X = port("/dev/ttyUSB0", 0x10C4, 0xEA60, "CP2102 USB to UART Bridge Controller")
ESP32_CH340 = port("/dev/ttyUSB1", 0x1A86, 0x7523, "USB Serial")
FTDI_RS485 = port("/dev/ttyUSB2", 0x0403, 0x6001, "FT232R USB UART")
ESP32S3_NATIVE = port("/dev/ttyACM1", 0x303A, 0x1001, "USB JTAG/serial debug unit")
LEGACY = port("/dev/ttyS0", None, None, "ttyS0")
BLUETOOTH = port("/dev/cu.Bluetooth-Incoming-Port", None, None, "n/a")


@pytest.fixture
def ports(monkeypatch):
    """Set what pyserial's list_ports.comports() returns."""
    found = []
    monkeypatch.setattr(list_ports, "comports", lambda *a, **k: list(found))
    return found


@pytest.mark.parametrize("present, chosen", [
    ([PICO], "/dev/ttyACM0"),
    ([LEGACY, ESP32_CP210X], "/dev/ttyUSB0"),                   # the only USB serial port
    ([PICO, FTDI_RS485, LEGACY], "/dev/ttyACM0"),               # the board beats an RS-485 adapter
    ([ESP32S3_NATIVE, ESP32_CH340], "/dev/ttyACM1"),
    ([port("/dev/ttyACM3")], "/dev/ttyACM3"),                    # CDC/ACM, ids unknown
])
def test_one_plausible_port_is_picked(ports, present, chosen):
    ports.extend(present)
    assert pick_port() == chosen


def test_several_candidates_are_listed(ports):
    ports.extend([ESP32_CP210X, FTDI_RS485, LEGACY])
    with pytest.raises(PortError) as e:
        pick_port()
    msg = str(e.value)
    assert "2 serial ports could be the board" in msg and "--port" in msg
    assert "/dev/ttyUSB0  10C4:EA60  Silicon Labs CP210x" in msg
    assert "/dev/ttyUSB2  0403:6001  FTDI" in msg
    assert "ttyS0" not in msg


def test_no_port_is_a_clear_error(ports):
    with pytest.raises(PortError, match="no serial port looks like a board .*no USB serial device"):
        pick_port()
    ports.extend([LEGACY, BLUETOOTH])
    with pytest.raises(PortError, match="ignored: /dev/ttyS0.*--port DEV or --cmd"):
        pick_port()


def test_scores():
    assert logport.score(LEGACY) == 0 and logport.score(BLUETOOTH) == 0
    assert logport.score(PICO) > logport.score(ESP32S3_NATIVE) > logport.score(ESP32_CP210X)
    assert logport.score(ESP32_CP210X) == logport.score(FTDI_RS485) > logport.score(
        port("/dev/ttyUSB9", 0x1234, 0x5678))


def test_cabctl_log_without_a_port_exits_with_the_list(ports, capsys):
    ports.extend([ESP32_CP210X, ESP32_CH340])
    assert cli.main(["log", "--quiet", "--seconds", "0.1"]) == 3
    err = capsys.readouterr().err
    assert "cabctl log: 2 serial ports could be the board" in err
    assert "/dev/ttyUSB0" in err and "/dev/ttyUSB1" in err


def test_cabctl_log_without_any_port(ports, capsys):
    assert cli.main(["log", "--quiet"]) == 3
    assert "no serial port looks like a board" in capsys.readouterr().err


def test_cabctl_log_opens_the_picked_port(ports, monkeypatch, tmp_path, capsys):
    """The picked device is the one opened; a port that vanishes is reopened."""
    import serial
    ports.extend([PICO, LEGACY])
    opened = []

    class FakeSerial:
        def __init__(self, name, baud, timeout=None):
            opened.append(name)
            self.port, self.baudrate = name, baud
            self.reads = 0

        def read(self, n):
            self.reads += 1
            if len(opened) == 1 and self.reads == 3:
                raise serial.SerialException("device reports readiness to read but returned no data")
            threading.Event().wait(0.01)
            return b""

        def close(self):
            pass

    monkeypatch.setattr(serial, "Serial", FakeSerial)
    monkeypatch.setattr(logport, "SerialReader", _fast_retry(logport.SerialReader))
    rc = cli.main(["log", "--quiet", "--seconds", "0.5", "--out", str(tmp_path / "o")])
    assert rc == 1                                        # no frames on this fake port
    assert opened[0] == "/dev/ttyACM0" and len(opened) >= 2
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["source"] == "/dev/ttyACM0" and s["reconnects"] >= 1 and s["frames_received"] == 0


def _fast_retry(cls):
    class Fast(cls):
        def __init__(self, ser, feed, retry_s=0.01):
            super().__init__(ser, feed, retry_s)
    return Fast


def test_describe_without_usb_ids():
    assert logport.describe(SimpleNamespace(device="/dev/ttyS0", vid=None, pid=None,
                                            description="ttyS0")) == "/dev/ttyS0  no USB id  ttyS0"
