"""`cabctl cmd`: authenticated commands to a cabinet over its console.

A command is one line of printable ASCII: JSON payload, then (for commands
that change behaviour) a space and HMAC-SHA256(key, payload) in hex. The
counter "n" is milliseconds since the epoch, so it grows across host runs
without host-side state (the device rejects anything not above the last).
The reply is a command_result event frame in the telemetry stream.
"""
import hashlib
import hmac
import json
import sys
import time

from .telemetry import StreamDecoder, load_schema

READ_ONLY = ("status", "get_config")
_ids = iter(range(1, 1 << 30))


def line(cmd, args=None, key=None, counter=None, cid=None):
    """The bytes to send for one command."""
    msg = {"id": cid if cid is not None else next(_ids), "cmd": cmd}
    if args:
        msg["args"] = args
    if cmd not in READ_ONLY:
        msg["n"] = counter if counter is not None else time.time_ns() // 1_000_000
    payload = json.dumps(msg, separators=(",", ":"), ensure_ascii=True)
    out = payload
    if key is not None and cmd not in READ_ONLY:
        out += " " + hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
    data = (out + "\n").encode("ascii")
    assert 3 not in data and 0 not in data          # never Ctrl-C or a frame delimiter
    return msg["id"], data


def parse_args(words):
    """["cap_w=17000000", "armed=true"] -> {"cap_w": 17000000, "armed": True}."""
    out = {}
    for w in words:
        k, sep, v = w.partition("=")
        if not sep:
            raise ValueError(f"expected KEY=VALUE, got {w!r}")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def add_arguments(p):
    p.add_argument("command", choices=["status", "get-config", "set", "dr", "dr-clear", "arm",
                                       "disarm", "reboot", "share"])
    p.add_argument("args", nargs="*", help="set: KEY=VALUE ...; dr: LIMIT_W SECONDS; "
                                           "share: DIS_PM CHA_PM (what `cabctl site` sends)")
    p.add_argument("--port", required=True, help="the board's console (or a vboard pty)")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--key-file", help="the device key (32 bytes) for commands that change things")
    p.add_argument("--timeout", type=float, default=5.0)


def build(command, args):
    if command == "set":
        return "set_config", parse_args(args)
    if command == "dr":
        if len(args) != 2:
            raise ValueError("dr takes LIMIT_W SECONDS")
        return "dr", {"limit_w": int(args[0]), "for_s": int(args[1])}
    if command == "share":
        if len(args) != 2:
            raise ValueError("share takes DIS_PM CHA_PM")
        return "share", {"dis_pm": int(args[0]), "cha_pm": int(args[1])}
    return command.replace("-", "_"), {}


def run(args):
    import serial
    try:
        cmd, cargs = build(args.command, args.args)
    except ValueError as e:
        sys.exit(f"cabctl cmd: {e}")
    key = open(args.key_file, "rb").read() if args.key_file else None
    cid, data = line(cmd, cargs, key)
    try:
        port = serial.Serial(args.port, args.baud, timeout=0.1)
    except serial.SerialException as e:
        sys.exit(f"cabctl cmd: cannot open {args.port}: {e}")
    dec = StreamDecoder(load_schema())
    port.write(data)
    end = time.monotonic() + args.timeout
    while time.monotonic() < end:
        for rec in dec.feed(port.read(4096)):
            if rec.get("event") == "command_result" and rec.get("id") == cid:
                print(json.dumps(rec))
                return 0 if rec.get("ok") else 1
    sys.exit(f"cabctl cmd: no reply from {args.port} within {args.timeout:g} s")
