"""The device side of `cabctl flash`: a MicroPython board on a serial port,
driven through mpremote's SerialTransport (raw REPL), and the snippets it runs
on the board. Errors are FlashError with the exit code that names the failure.
"""
import contextlib
import io
import json
import os
import time

from .telemetry import StreamDecoder, load_schema

# Exit codes (also in the README)
EXIT_OK = 0
EXIT_FAIL = 1             # anything not listed below
EXIT_INPUT = 2            # board, config, key or compiler problem (nothing touched)
EXIT_PORT = 3             # port missing, busy or not accessible
EXIT_NO_ANSWER = 4        # no MicroPython raw REPL on the port
EXIT_ARCH = 5             # device runs another .mpy architecture/version
EXIT_SPACE = 6            # the files do not fit the device filesystem
EXIT_VERIFY = 7           # sha256 on the device differs after writing
EXIT_NO_START = 8         # no telemetry frame after the soft reset

CHUNK = 512               # bytes per raw-REPL write (mpremote's default is 256)

# Defined once on the device per session; everything it prints is one JSON line.
HELPERS = """\
import os, sys, json, hashlib, binascii
def _cab_h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    b = bytearray(256)
    m = memoryview(b)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(m[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
def _cab_size(p):
    try:
        return os.stat(p)[6]
    except OSError:
        return -1
def _cab_isdir(p):
    try:
        return os.stat(p)[0] & 0x4000 != 0
    except OSError:
        return False
"""

# Runs first on boards with a hardware watchdog: after the Ctrl-C nobody feeds
# it, so a timer does until the final soft reset (which deletes the timer;
# main.py then feeds the watchdog itself).
FEED_WDT = """\
try:
    import machine
    _cab_wdt = machine.WDT(timeout=%d)
    _cab_wdt.feed()
    try:
        _cab_tim = machine.Timer(-1, mode=machine.Timer.PERIODIC, period=%d,
                                 callback=lambda t: _cab_wdt.feed())
    except (ValueError, TypeError):
        _cab_tim = machine.Timer(0, mode=machine.Timer.PERIODIC, period=%d,
                                 callback=lambda t: _cab_wdt.feed())
    print('wdt fed')
except Exception as e:
    print('wdt not fed:', repr(e))
"""


class FlashError(Exception):
    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code


def _printable(data, limit=600):
    text = data.decode("utf-8", "replace")
    text = "".join(c if c.isprintable() or c in "\n" else "." for c in text.replace("\r", ""))
    return text[-limit:].strip()


class Device:
    """A MicroPython board on a serial port, driven through mpremote's SerialTransport."""

    def __init__(self, port, connect_timeout=5.0, attempts=2, log=None):
        self.port = port
        self.connect_timeout = connect_timeout
        self.attempts = attempts
        self.log = log or (lambda msg: None)
        self.t = None

    # -- connection ----------------------------------------------------------
    def _open(self):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport
        if not os.path.exists(self.port):
            raise FlashError(EXIT_PORT, f"port {self.port} not found: is the board plugged in? "
                             f"(for a virtual board, use the path `cabctl vboard` prints)")
        try:
            # timeout: reads return after 1 s of silence, so a mute port
            # ends in an error instead of a hang.
            return SerialTransport(self.port, baudrate=115200, timeout=1)
        except TransportError:
            raise FlashError(EXIT_PORT, self._why_not_open()) from None

    def _why_not_open(self):
        import serial
        try:
            s = serial.Serial(self.port, 115200, exclusive=True)
        except serial.SerialException as e:
            text = str(e)
            if "exclusive" in text or "Resource temporarily unavailable" in text or "busy" in text:
                return (f"port {self.port} is busy: another program (mpremote, cabctl log, "
                        f"a terminal) has it open; close it and retry")
            if "Permission denied" in text:
                return (f"no permission to open {self.port}: add yourself to the port's group "
                        f"(often `dialout`) and log in again")
            return f"cannot open {self.port}: {text}"
        s.close()
        return f"cannot open {self.port} through mpremote (it opened fine just now; retry)"

    def connect(self):
        from mpremote.transport import TransportError
        last = ""
        for attempt in range(self.attempts):
            self.t = self._open()
            captured = io.StringIO()
            try:
                with contextlib.redirect_stdout(captured):    # mpremote prints what it got
                    self.t.enter_raw_repl(soft_reset=True, timeout_overall=self.connect_timeout)
                return
            except (TransportError, OSError) as e:
                last = f"{e}; console said: {captured.getvalue().strip()[-300:] or 'nothing'}"
                self.close()
                if attempt + 1 < self.attempts:
                    # A board whose watchdog fired mid-handshake is rebooting:
                    # give it time to come up again, then interrupt it again.
                    self.log(f"no raw REPL yet ({e}); retrying")
                    time.sleep(1.0)
        raise FlashError(EXIT_NO_ANSWER,
                         f"board not answering on {self.port}: no MicroPython raw REPL within "
                         f"{self.connect_timeout:g} s, twice (is MicroPython on it? is another "
                         f"program reading the port?) ({last})")

    def close(self):
        if self.t is not None:
            try:
                self.t.close()
            except OSError:
                pass
            self.t = None

    # -- commands ------------------------------------------------------------
    def exec(self, code, what):
        from mpremote.transport import TransportError, TransportExecError
        try:
            return self.t.exec(code)
        except TransportExecError as e:
            raise FlashError(EXIT_FAIL, f"{what} failed on the device: "
                             f"{e.error_output.strip()[-500:]}") from None
        except (TransportError, OSError) as e:
            raise FlashError(EXIT_NO_ANSWER, f"{what}: board stopped answering on "
                             f"{self.port} ({e})") from None

    def json_exec(self, code, what):
        out = self.exec(code, what)
        try:
            return json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise FlashError(EXIT_FAIL, f"{what}: unexpected reply {out[-200:]!r}") from None

    def feed_watchdog(self, timeout_ms):
        period = max(100, timeout_ms // 4)
        out = self.exec(FEED_WDT % (timeout_ms, period, period), "starting the watchdog feeder")
        self.log(out.decode(errors="replace").strip())

    def probe(self, paths):
        self.exec(HELPERS, "loading the helper functions")
        dirs = sorted({p.rsplit("/", 1)[0] for p in paths if "/" in p})
        shadows = [p[:-4] + ".py" for p in paths if p.endswith(".mpy")]
        code = ("_i = {'mpy': getattr(sys.implementation, '_mpy', None), 'platform': sys.platform,"
                " 'version': sys.version, 'fs': None, 'hashes': {}, 'sizes': {}, 'dirs': {},"
                " 'shadows': []}\n"
                "try:\n _i['fs'] = list(os.statvfs('.'))\nexcept Exception:\n pass\n"
                f"for p in {paths!r}:\n"
                " _i['hashes'][p] = _cab_h(p)\n _i['sizes'][p] = _cab_size(p)\n"
                f"for d in {dirs!r}:\n _i['dirs'][d] = _cab_isdir(d)\n"
                f"_i['shadows'] = [p for p in {shadows!r} if _cab_size(p) >= 0]\n"
                "print(json.dumps(_i))\n")
        return self.json_exec(code, "reading the device's files")

    def hashes(self, paths):
        code = f"print(json.dumps({{p: _cab_h(p) for p in {paths!r}}}))\n"
        return self.json_exec(code, "verifying by sha256")

    def mkdir(self, path):
        self.exec(f"os.mkdir({path!r})", f"creating folder {path}")

    def remove(self, path):
        self.exec(f"os.remove({path!r})", f"removing {path}")

    def write(self, path, data, progress=None):
        from mpremote.transport import TransportError
        try:
            self.t.fs_writefile(path, data, chunk_size=CHUNK, progress_callback=progress)
        except OSError as e:
            if e.errno == 28:           # ENOSPC
                raise FlashError(EXIT_SPACE, f"file too large: the device filesystem filled up "
                                 f"while writing {path} ({len(data)} bytes)") from None
            raise FlashError(EXIT_FAIL, f"writing {path} failed on the device: "
                             f"{os.strerror(e.errno) if e.errno else e}") from None
        except TransportError as e:
            raise FlashError(EXIT_NO_ANSWER, f"writing {path}: board stopped answering ({e})") \
                from None

    def import_all(self, modules):
        from mpremote.transport import TransportError, TransportExecError
        try:
            self.t.exec("for m in %r:\n    __import__(m)\n" % (modules,))
        except TransportExecError as e:
            err = e.error_output.strip()
            if "incompatible .mpy" in err or "native code in .mpy" in err:
                raise FlashError(EXIT_ARCH, f"wrong architecture: the device cannot load the "
                                 f"compiled modules: {err.splitlines()[-1]}") from None
            raise FlashError(EXIT_FAIL, f"the flashed modules fail to import: {err[-500:]}") \
                from None
        except (TransportError, OSError) as e:
            raise FlashError(EXIT_NO_ANSWER, f"import check: board stopped answering ({e})") \
                from None

    def boot(self, wait_s):
        """Friendly REPL, Ctrl-D: main.py boots. Returns the first telemetry frame (or None)."""
        s = self.t.serial
        s.write(b"\r\x02")                    # leave the raw REPL
        self.t.in_raw_repl = False
        data = self.t.read_until(1, b">>> ", timeout=5)
        if not data.endswith(b">>> "):
            raise FlashError(EXIT_NO_ANSWER, "no friendly REPL prompt after leaving the raw REPL")
        s.write(b"\x04")                      # soft reset: boot.py, main.py
        data = self.t.read_until(1, b"soft reboot\r\n", timeout=10)
        if not data.endswith(b"soft reboot\r\n"):
            raise FlashError(EXIT_NO_START, f"no soft reboot: {_printable(data, 200)!r}")
        if not wait_s:
            return None
        dec = StreamDecoder(load_schema())
        seen = bytearray()
        end = time.monotonic() + wait_s
        while time.monotonic() < end:
            chunk = s.read(s.in_waiting or 1)
            if not chunk:
                continue
            seen += chunk
            frames = dec.feed(chunk)
            if frames:
                return frames[0]
            if b"\n>>> " in seen:             # main.py ended: it printed why, then the REPL
                break
        raise FlashError(EXIT_NO_START,
                         f"the firmware did not start: no telemetry frame within "
                         f"{wait_s:g} s of the soft reset; console: {_printable(bytes(seen))!r}")
