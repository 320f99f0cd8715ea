"""`cabctl vboard`: a virtual board that the real mpremote and `cabctl flash` can talk to.

The MicroPython unix port has a raw REPL only when its stdin is a terminal,
and a Ctrl-D soft reset in the raw REPL ends the process. So the board is a
supervisor that owns the pty the host sees (the "USB serial port") and runs
one micropython child at a time on an inner pty, in the board's flash folder:

  host (mpremote, cabctl flash/log)
     |  outer pty: slave path printed on the first stdout line; raw, 8-bit clean
  supervisor  -- relays bytes both ways, unmodified
     |  inner pty: child's stdin+stdout (OPOST off: 0x0A is never turned into
     |  0x0D 0x0A, so COBS telemetry passes through); child's stderr -> log
  micropython [-i boot.py]  cwd = flash folder, MICROPYPATH = flash:.frozen

What the supervisor adds to the plain relay:
- Soft reset: when the child exits right after the host sent Ctrl-D, it prints
  "MPY: soft reboot" and starts a new child. From the raw REPL the new child is
  put back into the raw REPL (its friendly banner is swallowed), so the host
  sees "raw REPL; CTRL-B to exit\\r\\n>" as from a real board, where main.py
  does not run after a raw-REPL soft reset. From the friendly REPL (or at power
  on) the new child boots main.py, if the flash has one, then stays in the REPL
  (-i), like a board's main.py followed by its REPL.
- Ctrl-C: the inner pty has ISIG off, so 0x03 never becomes a signal by
  itself. The supervisor reads the child's terminal mode: the unix port puts
  its terminal in raw mode (lflag 0) while a REPL waits for input and back to
  the supervisor's mode while code runs. While waiting in a REPL the 0x03 byte
  is passed on; while code runs the supervisor sends SIGINT (KeyboardInterrupt,
  the unix port's own Ctrl-C path) and holds the bytes behind it until the
  child is back in a REPL, so "\\r\\x03\\r\\x01" from mpremote cannot be lost in
  the mode switch. A child still starting up (the interpreter runs inside a
  python3 process: a SIGINT then would kill python3, not interrupt
  MicroPython) gets the interrupt once boot.py reports that main.py starts.
- Any other exit of the child (a crash, a second Ctrl-C) is a reset: main.py
  boots again, or the REPL comes up if the host had just interrupted.

The firmware's RS-485 bus is --bus (the plant's pty), passed as CABINET_BUS;
the firmware finds site.json in its working folder, the flash.
"""
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import termios
import time
import tty
from pathlib import Path

from .sil import micropython_exe

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_BANNER = b'Type "help()" for more information.'
SOFT_REBOOT = b"MPY: soft reboot\r\n"
BOOT_MARK = "vboard: running main.py"
INTR_HOLD_S = 2.0        # input held after a Ctrl-C until the REPL is back, at most this
OUT_MAX = 8192           # console output buffered here (the pty itself holds ~20 KB more)
NO_HOST_S = 0.5          # the port took nothing for this long: nobody reads it, drop output

BOOT_PY = f"""\
import sys
sys.path[0] = ''
sys.stderr.write('{BOOT_MARK}\\n')
exec(compile(open('main.py').read(), 'main.py', 'exec'))
"""


def _die_with_parent():
    """In the child: setsid (no signals from our terminal) and die if the supervisor dies."""
    os.setsid()
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)          # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _inner_tty(fd):
    """The child's 'original' terminal mode: 8-bit clean both ways, no signals."""
    a = termios.tcgetattr(fd)
    a[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR
              | termios.IGNCR | termios.ICRNL | termios.IXON | termios.IXOFF)
    a[1] &= ~termios.OPOST
    a[2] = (a[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    # lflag stays non-zero on purpose: the unix port sets it to 0 in its REPL,
    # which is how the supervisor tells "waiting for input" from "running".
    a[3] = termios.NOFLSH | termios.ECHOKE | termios.ECHOCTL
    a[6][termios.VMIN] = 1
    a[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, a)


class Child:
    """One micropython process on its own pty."""

    def __init__(self, kind, args, cwd, env):
        self.kind = kind              # 'boot' (main.py), 'repl', 'rawrepl'
        self.master, self.slave = os.openpty()
        _inner_tty(self.slave)
        os.set_blocking(self.master, False)
        err_r, err_w = os.pipe()
        self.proc = subprocess.Popen(args, stdin=self.slave, stdout=self.slave, stderr=err_w,
                                     cwd=cwd, env=env, close_fds=True,
                                     preexec_fn=_die_with_parent)
        os.close(err_w)
        self.err = err_r
        os.set_blocking(self.err, False)
        self.err_buf = b""
        self.started = time.monotonic()
        self.ready = False            # may take input / a Ctrl-C now
        self.sent_raw = False         # rawrepl: Ctrl-A sent
        self.swallow = b""            # rawrepl: output before the raw banner

    def lflag(self):
        try:
            return termios.tcgetattr(self.slave)[3]
        except termios.error:
            return -1

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.master, self.slave, self.err):
            try:
                os.close(fd)
            except OSError:
                pass


class VBoard:
    def __init__(self, flash, bus=None, heapsize=None, log=None):
        self.flash = Path(flash).resolve()
        self.flash.mkdir(parents=True, exist_ok=True)
        self.bus = bus
        self.heapsize = heapsize
        self.log_file = log or sys.stderr
        self.tmp = tempfile.mkdtemp(prefix="vboard-")
        self.boot_py = os.path.join(self.tmp, "boot.py")
        Path(self.boot_py).write_text(BOOT_PY)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.child = None
        self.inq = bytearray()        # host -> child, not yet delivered
        self.outq = bytearray()       # child -> host, not yet written
        self.dropped = 0
        self.blocked_since = None     # the port has refused output since then
        self.intr_at = None           # SIGINT sent, input held until the REPL is back
        self.last_intr = -1e9
        self.last_in = -1             # last byte delivered to the child
        self.mode = None              # 'raw' or 'friendly': the child's last REPL banner
        self.tail = b""
        self.running = True
        self.resets = 0

    # -- children ------------------------------------------------------------
    def log(self, msg):
        self.log_file.write(f"vboard: {msg}\n")
        self.log_file.flush()

    def _env(self):
        env = dict(os.environ)
        env["MICROPYPATH"] = f"{self.flash}:.frozen"
        env.pop("CABINET_SITE", None)          # the firmware reads site.json on its flash
        if self.bus:
            env["CABINET_BUS"] = str(self.bus)
        else:
            env.pop("CABINET_BUS", None)
        return env

    def spawn(self, kind):
        if kind == "boot" and not (self.flash / "main.py").is_file():
            kind = "repl"
        args = [micropython_exe()]
        if self.heapsize:
            args += ["-X", f"heapsize={self.heapsize}"]
        if kind == "boot":
            args += ["-i", self.boot_py]
        self.child = Child(kind, args, str(self.flash), self._env())
        self.mode = None
        self.tail = b""
        self.last_in = -1
        self.intr_at = None
        self.log(f"started micropython pid {self.child.proc.pid} ({kind})")

    def _child_exited(self):
        c = self.child
        self._read_child(final=True)
        code = c.proc.returncode
        c.close()
        self.child = None
        soft = code == 0 and self.last_in == 0x04
        now = time.monotonic()
        if soft:
            self.resets += 1
            self.log(f"soft reset from the {self.mode or 'unknown'} REPL")
            self._out(SOFT_REBOOT)
            self.spawn("rawrepl" if self.mode == "raw" else "boot")
            return
        self.log(f"micropython exited with {code}: reset")
        if now - c.started < 1.0:
            time.sleep(0.5)                    # a crash loop must not spin
        self.spawn("repl" if now - self.last_intr < 3.0 else "boot")

    # -- byte paths ----------------------------------------------------------
    def _no_host(self):
        return (self.blocked_since is not None
                and time.monotonic() - self.blocked_since > NO_HOST_S)

    def _may_read_child(self):
        # Back-pressure while a host reads (slowly): the child waits, as on a
        # USB serial port. Nobody reading at all: keep the newest output only,
        # so a board without a host never stalls its control loop.
        return len(self.outq) < OUT_MAX or self._no_host()

    def _out(self, data):
        self.outq += data
        if len(self.outq) > OUT_MAX and self._no_host():
            cut = len(self.outq) - OUT_MAX // 2
            self.dropped += cut
            del self.outq[:cut]

    def _track(self, data):
        buf = self.tail + data
        r, f = buf.rfind(RAW_BANNER), buf.rfind(FRIENDLY_BANNER)
        if r >= 0 or f >= 0:
            self.mode = "raw" if r > f else "friendly"
        self.tail = buf[-64:]

    def _read_child(self, final=False):
        c = self.child
        while final or self._may_read_child():
            try:
                data = os.read(c.master, 65536)
            except (BlockingIOError, InterruptedError):
                data = b""
            except OSError:                    # EIO: the child side is gone
                data = b""
            if not data:
                break
            self._track(data)
            if c.kind == "rawrepl" and not c.ready:
                c.swallow += data
                i = c.swallow.find(RAW_BANNER)
                if i < 0:
                    c.swallow = c.swallow[-256:]
                    continue
                c.ready = True
                data = c.swallow[i:]
                c.swallow = b""
            self._out(data)
        while True:
            try:
                err = os.read(c.err, 65536)
            except (BlockingIOError, InterruptedError, OSError):
                err = b""
            if not err:
                break
            c.err_buf += err
            *lines, c.err_buf = c.err_buf.split(b"\n")
            for line in lines:
                text = line.decode("utf-8", "replace")
                if text == BOOT_MARK:
                    c.ready = True
                self.log_file.write(text + "\n")
            self.log_file.flush()
        if final and c.err_buf:
            self.log_file.write(c.err_buf.decode("utf-8", "replace") + "\n")

    def _write_child(self, data):
        try:
            n = os.write(self.child.master, data)
        except (BlockingIOError, InterruptedError):
            return 0
        if n:
            self.last_in = data[n - 1]
        return n

    def _pump_in(self):
        c = self.child
        if c is None:
            return
        lflag = c.lflag()
        if not c.ready:
            if c.kind == "repl" and lflag == 0:
                c.ready = True                 # its REPL is reading
            elif c.kind == "rawrepl" and lflag == 0 and not c.sent_raw:
                os.write(c.master, b"\x01")    # into the raw REPL, banner swallowed
                c.sent_raw = True
            if not c.ready:
                return
        if self.intr_at is not None:
            if lflag != 0 and time.monotonic() - self.intr_at < INTR_HOLD_S:
                return
            self.intr_at = None
        while self.inq:
            if self.inq[0] == 0x03 and lflag != 0:
                # Code is running: interrupt it the unix port's way, then hold
                # what follows until its REPL reads again.
                del self.inq[0]
                os.kill(c.proc.pid, signal.SIGINT)
                self.intr_at = self.last_intr = time.monotonic()
                self.log("Ctrl-C: interrupting running code")
                return
            end = self.inq.find(0x03, 1) if self.inq[0] == 0x03 else self.inq.find(0x03)
            chunk = bytes(self.inq[:end if end >= 0 else len(self.inq)])
            n = self._write_child(chunk)
            del self.inq[:n]
            if n < len(chunk):
                return

    def _pump_out(self):
        while self.outq:
            try:
                n = os.write(self.master, self.outq[:65536])
            except (BlockingIOError, InterruptedError, OSError):
                n = 0
            if not n:
                if self.blocked_since is None:
                    self.blocked_since = time.monotonic()
                return
            self.blocked_since = None
            del self.outq[:n]

    # -- main loop -----------------------------------------------------------
    def serve(self):
        self.spawn("boot")
        while self.running:
            c = self.child
            rl = [self.master, c.err] + ([c.master] if self._may_read_child() else [])
            wl = [self.master] if self.outq else []
            try:
                r, w, _ = select.select(rl, wl, [], 0.01)
            except InterruptedError:
                continue
            if self.master in r:
                try:
                    self.inq += os.read(self.master, 65536)
                except (BlockingIOError, InterruptedError, OSError):
                    pass
            if c.master in r or c.err in r:
                self._read_child()
            if c.proc.poll() is not None:
                self._child_exited()
                continue
            self._pump_in()
            self._pump_out()

    def close(self):
        if self.child:
            self.child.close()
            self.child = None
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.remove(self.boot_py)
            os.rmdir(self.tmp)
        except OSError:
            pass
        if self.dropped:
            self.log(f"{self.dropped} console bytes dropped while nobody read the port")


def add_arguments(p):
    p.add_argument("--dir", help="the board's flash folder (default: a new runs/vboard-* folder)")
    p.add_argument("--bus", help="RS-485 bus: the plant's pty path (passed as CABINET_BUS)")
    p.add_argument("--heapsize", help="MicroPython heap, e.g. 190k (default: the unix port's)")
    p.add_argument("--log", help="write the firmware's stderr and vboard events here "
                                 "(default: stderr)")


def run(args):
    if args.dir:
        flash = Path(args.dir)
    else:
        from .rig import new_run_dir
        flash = new_run_dir(tag="vboard")
    log = open(args.log, "a", buffering=1) if args.log else None
    vb = VBoard(flash, bus=args.bus, heapsize=args.heapsize, log=log)

    def stop(signum, frame):
        vb.running = False
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, stop)
    print(vb.path, flush=True)
    vb.log(json.dumps({"port": vb.path, "flash": str(vb.flash), "bus": args.bus}))
    try:
        vb.serve()
    finally:
        vb.close()
        if log:
            log.close()
    return 0
