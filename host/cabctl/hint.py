"""`cabctl hint`: job events from the cluster as feed-forward for the cabinet.

A scheduler hook (Slurm prolog/epilog) or the training loop announces what
the cluster is about to do; the cabinet pre-arms its PCS for it (firmware:
cabinet/predict.py `Hints`, device command `hint`). Events:

    job_start   the job's GPUs go to full power in IN seconds, a step of ~POWER W
    ckpt_start  a checkpoint begins (power drops by ~POWER W)
    ckpt_end    it ends (power rises by ~POWER W)
    job_end     the job stops (power drops by ~POWER W)
    maint       planned maintenance: a drop of ~POWER W, for FOR seconds
    maint_end   the load comes back
    clear       forget all hints (or those of --job)
    list        the hints the device holds

Three ways to send one:

    cabctl hint send EVENT --in 30 --power-w 12e6 --port DEV --key-file KEY
        straight to the device console (as `cabctl cmd`)
    cabctl hint serve --port 8765 --device DEV --key-file KEY
        a small daemon on 127.0.0.1:8765 (or --socket PATH, a unix socket)
        that takes POST /hint {"event": ..., "in_s": ..., "power_w": ...}
        and forwards each hint as an authenticated command line
    cabctl hint post EVENT --in 30 --power-w 12e6 [--url URL | --socket PATH]
        to that daemon (what a hook calls; curl works as well)

Times are relative ("in_s", seconds from now, may be fractional) or absolute
("at", Unix time in seconds); the daemon converts them to milliseconds from
the moment it sends the line, so its own delay is not added. The HTTP side
has no authentication: it listens on loopback or a unix socket only, and
the device key stays with the daemon.
"""
import argparse
import http.client
import json
import os
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from . import cmd as cmdline

EVENTS = ("job_start", "ckpt_start", "ckpt_end", "job_end", "maint", "maint_end")
CONTROL = ("clear", "list")
MAX_W = 1_000_000_000
DEFAULT_PORT = 8765


class HintError(ValueError):
    pass


def _int(v, name, lo, hi):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise HintError(f"{name} must be a number, got {v!r}")
    v = int(round(v))
    if not lo <= v <= hi:
        raise HintError(f"{name} = {v} is outside {lo}..{hi}")
    return v


def normalize(msg, now=None):
    """A hint as received (JSON object) -> (due time in Unix seconds or None, device args).

    Keys: event; in_s or at (one of them, for events); power_w; window_ms
    (default: the device's, 250 ms); job; for_s (maint)."""
    if not isinstance(msg, dict):
        raise HintError("a hint is a JSON object")
    known = {"event", "in_s", "at", "power_w", "window_ms", "job", "for_s"}
    unknown = sorted(set(msg) - known)
    if unknown:
        raise HintError(f"unknown keys {unknown} (known: {sorted(known)})")
    ev = msg.get("event")
    if ev not in EVENTS + CONTROL:
        raise HintError(f"event must be one of {', '.join(EVENTS + CONTROL)}, got {ev!r}")
    args = {"event": ev}
    if "job" in msg:
        args["job"] = _int(msg["job"], "job", 0, (1 << 30) - 1)
    if ev in CONTROL:
        return None, args
    now = time.time() if now is None else now
    if ("in_s" in msg) == ("at" in msg):
        raise HintError("give exactly one of in_s (seconds from now) or at (Unix time)")
    due = now + float(msg["in_s"]) if "in_s" in msg else float(msg["at"])
    if not -600 <= due - now <= 86400:
        raise HintError("the event must be due within -600..86400 s of now")
    if "power_w" not in msg:
        raise HintError("power_w (the size of the power step, W) is required")
    args["power_w"] = _int(msg["power_w"], "power_w", 0, MAX_W)
    if "window_ms" in msg:
        args["window_ms"] = _int(msg["window_ms"], "window_ms", 0, 600_000)
    if ev == "maint" and "for_s" in msg:
        args["for_ms"] = _int(float(msg["for_s"]) * 1000, "for_s * 1000", 0, 86_400_000)
    elif "for_s" in msg:
        raise HintError("for_s only goes with maint")
    return due, args


def device_args(due, args, now=None):
    """The device command's args, with in_ms counted from now (send time)."""
    out = dict(args)
    if due is not None:
        now = time.time() if now is None else now
        out["in_ms"] = _int((due - now) * 1000, "in_ms", -600_000, 86_400_000)
    return out


class Forwarder:
    """Builds authenticated `hint` command lines and hands them to a sink:
    sink(line_bytes, cid) -> the device's reply (a dict) or None."""

    def __init__(self, sink, key):
        self.sink = sink
        self.key = key
        self.last_n = 0
        self.lock = threading.Lock()
        self.sent = 0
        self.failed = 0

    def forward(self, msg):
        due, args = normalize(msg)
        with self.lock:
            # The device wants a counter above the last one it accepted:
            # milliseconds, but strictly growing within one millisecond too.
            n = max(time.time_ns() // 1_000_000, self.last_n + 1)
            self.last_n = n
            cid, data = cmdline.line("hint", device_args(due, args), self.key, counter=n)
            reply = self.sink(data, cid)
            self.sent += 1
            if not reply or not reply.get("ok"):
                self.failed += 1
        return reply


class SerialSink:
    """The device's console: write the line, wait for its command_result frame."""

    def __init__(self, device, baud=115200, timeout=2.0):
        import serial
        from .telemetry import StreamDecoder, load_schema
        self.port = serial.Serial(device, baud, timeout=0.05)
        self.dec = StreamDecoder(load_schema())
        self.timeout = timeout

    def __call__(self, data, cid):
        self.port.write(data)
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            for rec in self.dec.feed(self.port.read(4096)):
                if rec.get("event") == "command_result" and rec.get("id") == cid:
                    return rec
        return None


class PrintSink:
    """--dry-run: print each line instead of sending it (or write it to a
    FIFO or file that another program feeds to the console)."""

    def __init__(self, out=None):
        self.out = out or sys.stdout

    def __call__(self, data, cid):
        self.out.write(data.decode())
        self.out.flush()
        return {"ok": True, "id": cid, "message": "not sent (dry run)"}


class _Handler(BaseHTTPRequestHandler):
    server_version = "cabctl-hint/1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("cabctl hint: " + fmt % args + "\n")

    def _send(self, code, obj):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.rstrip("/") in ("", "/health"):
            f = self.server.forwarder
            return self._send(200, {"ok": True, "sent": f.sent, "failed": f.failed})
        self._send(404, {"ok": False, "error": "GET /health or POST /hint"})

    def do_POST(self):
        if self.path.rstrip("/") != "/hint":
            return self._send(404, {"ok": False, "error": "POST /hint"})
        try:
            n = int(self.headers.get("Content-Length", "0"))
            if not 0 < n <= 4096:
                raise HintError("a hint is a JSON object of at most 4096 bytes")
            msg = json.loads(self.rfile.read(n))
            reply = self.server.forwarder.forward(msg)
        except (HintError, ValueError) as e:
            return self._send(400, {"ok": False, "error": str(e)})
        except Exception as e:                          # the device link failed
            return self._send(502, {"ok": False, "error": f"forwarding failed: {e}"})
        if reply is None:
            return self._send(504, {"ok": False, "error": "no reply from the device"})
        self._send(200 if reply.get("ok") else 502, {"ok": bool(reply.get("ok")), "reply": reply})


class _TcpServer(HTTPServer):
    daemon_threads = True


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("unix", 0)                        # BaseHTTPRequestHandler wants a pair


def make_server(forwarder, port=DEFAULT_PORT, sock_path=None, verbose=False):
    """An HTTP server for POST /hint on 127.0.0.1:port or a unix socket
    (call serve_forever(); port 0 picks a free one: server.server_address)."""
    if sock_path:
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        srv = _UnixServer(sock_path, _Handler)
        os.chmod(sock_path, 0o660)
    else:
        srv = _TcpServer(("127.0.0.1", port), _Handler)
    srv.forwarder = forwarder
    srv.verbose = verbose
    return srv


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=5.0):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def post(msg, url=None, sock_path=None, timeout=5.0):
    """POST a hint to the daemon; (HTTP status, JSON reply)."""
    if sock_path:
        conn = _UnixHTTPConnection(sock_path, timeout)
    else:
        from urllib.parse import urlsplit
        u = urlsplit(url or f"http://127.0.0.1:{DEFAULT_PORT}")
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    body = json.dumps(msg).encode()
    conn.request("POST", "/hint", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, json.loads(data or b"{}")


# --- CLI ---

def _event_args(p):
    p.add_argument("event", choices=EVENTS + CONTROL)
    when = p.add_mutually_exclusive_group()
    when.add_argument("--in", dest="in_s", type=float, help="seconds until the event")
    when.add_argument("--at", type=float, help="Unix time of the event")
    p.add_argument("--power-w", type=float, help="size of the power step, W (e.g. 12e6)")
    p.add_argument("--window-ms", type=int, help="how long after the due time the device "
                                                 "keeps it armed (device default 250)")
    p.add_argument("--job", type=int, help="job id (to clear one job's hints)")
    p.add_argument("--for", dest="for_s", type=float, help="maint: duration, s")


def add_arguments(p):
    sub = p.add_subparsers(dest="hint_command", required=True)
    s = sub.add_parser("send", help="one hint straight to the device console")
    _event_args(s)
    s.add_argument("--port", required=True, help="the board's console (or a vboard pty)")
    s.add_argument("--baud", type=int, default=115200)
    s.add_argument("--key-file", required=True, help="the device key (32 bytes)")
    s.add_argument("--timeout", type=float, default=3.0)
    s = sub.add_parser("post", help="one hint to a running `cabctl hint serve`")
    _event_args(s)
    s.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}")
    s.add_argument("--socket", help="the daemon's unix socket instead of --url")
    s = sub.add_parser("serve", help="daemon: POST /hint on loopback HTTP or a unix socket, "
                                     "forwarded to the device")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port on 127.0.0.1")
    s.add_argument("--socket", help="listen on this unix socket instead")
    s.add_argument("--device", help="the board's console (serial port or vboard pty)")
    s.add_argument("--baud", type=int, default=115200)
    s.add_argument("--key-file", help="the device key (32 bytes)")
    s.add_argument("--dry-run", action="store_true", help="print the command lines, send nothing")
    s.add_argument("--verbose", action="store_true")


def _msg(args):
    msg = {"event": args.event}
    for k in ("in_s", "at", "power_w", "window_ms", "job", "for_s"):
        v = getattr(args, k)
        if v is not None:
            msg[k] = v
    return msg


def run(args):
    try:
        if args.hint_command == "post":
            status, reply = post(_msg(args), args.url, args.socket)
            print(json.dumps(reply))
            return 0 if status == 200 and reply.get("ok") else 1
        if args.hint_command == "send":
            key = open(args.key_file, "rb").read()
            fwd = Forwarder(SerialSink(args.port, args.baud, args.timeout), key)
            reply = fwd.forward(_msg(args))
            if reply is None:
                sys.exit(f"cabctl hint: no reply from {args.port} within {args.timeout:g} s")
            print(json.dumps(reply))
            return 0 if reply.get("ok") else 1
        # serve
        if args.dry_run:
            sink, key = PrintSink(), b"\0" * 32
        else:
            if not args.device or not args.key_file:
                sys.exit("cabctl hint serve: --device and --key-file are needed (or --dry-run)")
            sink, key = SerialSink(args.device, args.baud), open(args.key_file, "rb").read()
        srv = make_server(Forwarder(sink, key), args.port, args.socket, args.verbose)
        where = args.socket or "http://%s:%d" % srv.server_address
        print(f"cabctl hint: listening on {where}, POST /hint", file=sys.stderr, flush=True)
        try:
            srv.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            srv.server_close()
            if args.socket and os.path.exists(args.socket):
                os.unlink(args.socket)
        return 0
    except (HintError, OSError) as e:
        print(f"cabctl hint: {e}", file=sys.stderr)
        return 2


def main(argv=None):
    p = argparse.ArgumentParser(prog="cabctl hint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
