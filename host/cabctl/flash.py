"""`cabctl flash`: build the firmware for a board and put it on the board through mpremote.

Steps: compile (cabctl.build); connect (cabctl.flashdev: mpremote's SerialTransport, raw
REPL, soft reset), keep a hardware watchdog fed while we work, ask the device
for its .mpy architecture, free space and the sha256 of every file, write only
what differs (with progress), verify every file by sha256, import every module
once, then soft-reset from the friendly REPL (main.py boots) and wait for the
first telemetry frame on the same port.
"""
import json
import math
import sys
import time

from . import build as fwbuild
from .flashdev import (EXIT_ARCH, EXIT_FAIL, EXIT_INPUT, EXIT_NO_ANSWER,  # noqa: F401
                       EXIT_NO_START, EXIT_OK, EXIT_PORT, EXIT_SPACE, EXIT_VERIFY, Device,
                       FlashError)


def device_arch(mpy):
    """(mpy version, arch name or None) from sys.implementation._mpy."""
    arch = (mpy >> 10) & 0x3F
    return mpy & 0xFF, (fwbuild.MPY_ARCHS[arch] if arch < len(fwbuild.MPY_ARCHS)
                        else f"arch{arch}") if arch else None


def check_arch(board, cfg, info, items):
    mpy = info.get("mpy")
    if mpy is None:
        return None                           # old firmware: the import check decides
    ver, arch = device_arch(mpy)
    want = cfg["mpy_arch"]
    first = next(it for it in items if it.path.endswith(".mpy"))
    file_ver = fwbuild.mpy_header(first.data)[0]
    if arch and arch != want:
        raise FlashError(EXIT_ARCH, f"wrong architecture: board {board} builds {want} .mpy, but "
                         f"the device on this port runs {arch} MicroPython ({info['platform']}, "
                         f"{info['version']}); pick the right --board")
    if ver != file_ver:
        raise FlashError(EXIT_ARCH, f"wrong .mpy version: the device's MicroPython reads .mpy "
                         f"v{ver}, mpy-cross made v{file_ver}; update the board's MicroPython "
                         f"(or mpy-cross) so they match")
    return arch


def check_space(changed, info):
    fs = info.get("fs")
    if not fs:
        return None
    bsize = fs[1] or fs[0] or 4096
    free = fs[4] * bsize
    blocks = lambda n: math.ceil(max(n, 0) / bsize) * bsize
    need = sum(blocks(it.size) - blocks(info["sizes"].get(it.path, -1)) for it in changed)
    if need > free:
        big = ", ".join(f"{it.path} {it.size} B" for it in
                        sorted(changed, key=lambda i: -i.size)[:3])
        raise FlashError(EXIT_SPACE, f"file too large for the device filesystem: the changed "
                         f"files need {need} bytes more, {free} bytes are free (largest: {big})")
    return free


class Progress:
    def __init__(self, out=sys.stderr):
        self.out = out
        self.tty = out.isatty()

    def line(self, msg):
        self.out.write(msg + "\n")
        self.out.flush()

    def file(self, i, n, path, size):
        def cb(done, total):
            if self.tty:
                pct = 100 * done // max(total, 1)
                bar = "#" * (pct // 5)
                self.out.write(f"\r  [{i}/{n}] {path:<28} {size:>7} B [{bar:<20}] {pct:3d}%")
                self.out.flush()
        return cb

    def done(self, i, n, path, size, secs):
        if self.tty:
            self.out.write("\r")
        self.line(f"  [{i}/{n}] {path:<28} {size:>7} B  written ({secs:.2f} s)")


def flash(board, port, config=None, key_file=None, dry_run=False, wait_s=15.0,
          connect_timeout=5.0, out=sys.stderr):
    """Returns a report dict; raises FlashError."""
    t0 = time.monotonic()
    prog = Progress(out)
    try:
        cfg, items = fwbuild.build(board, config=config, key_file=key_file)
    except fwbuild.BuildError as e:
        raise FlashError(EXIT_INPUT, str(e)) from None
    files = [{"path": it.path, "size": it.size, "source": it.source,
              **({} if it.path == "key.bin" else {"sha256": it.sha256})} for it in items]
    report = {"board": board, "arch": cfg["mpy_arch"], "port": port, "dry_run": dry_run,
              "files": files, "total_bytes": sum(it.size for it in items),
              "mpy_bytes": fwbuild.mpy_total(items)}
    if dry_run:
        report["seconds"] = round(time.monotonic() - t0, 3)
        return report
    dev = Device(port, connect_timeout=connect_timeout, log=lambda m: prog.line("  " + m))
    prog.line(f"cabctl flash: {board} ({cfg['mpy_arch']}) on {port}")
    dev.connect()
    try:
        if cfg["mpy_arch"] != "x64" and cfg.get("watchdog_ms"):
            dev.feed_watchdog(cfg["watchdog_ms"])
        paths = [it.path for it in items]
        info = dev.probe(paths)
        report["device"] = {"platform": info["platform"], "version": info["version"],
                            "mpy_arch": check_arch(board, cfg, info, items)}
        changed = [it for it in items if info["hashes"].get(it.path) != it.sha256]
        report["free_bytes"] = check_space(changed, info)
        for d, isdir in sorted(info["dirs"].items()):
            if not isdir:
                dev.mkdir(d)
        for p in info["shadows"]:             # a stale .py would be imported before the .mpy
            dev.remove(p)
            prog.line(f"  removed {p} (it would shadow {p[:-3]}.mpy)")
        t_write = time.monotonic()
        for i, it in enumerate(changed, 1):
            t1 = time.monotonic()
            dev.write(it.path, it.data, prog.file(i, len(changed), it.path, it.size))
            prog.done(i, len(changed), it.path, it.size, time.monotonic() - t1)
        write_s = time.monotonic() - t_write
        unchanged = len(items) - len(changed)
        prog.line(f"  {len(changed)} written, {unchanged} unchanged (skipped)")
        for f, it in zip(files, items):
            f["action"] = "written" if it in changed else "unchanged"
        got = dev.hashes(paths)
        bad = [it.path for it in items if got.get(it.path) != it.sha256]
        if bad:
            raise FlashError(EXIT_VERIFY, "verification mismatch: sha256 on the device differs "
                             "for " + ", ".join(f"{p} (device {str(got.get(p))[:12]})"
                                                for p in bad))
        prog.line(f"  verified {len(items)} files by sha256")
        modules = ["hal"] + [it.path[:-4].replace("/", ".") for it in items
                             if it.path.startswith("cabinet/") and it.path.endswith(".mpy")
                             and not it.path.endswith("__init__.mpy")]
        dev.import_all(modules)
        report.update(written=len(changed), unchanged=unchanged,
                      bytes_written=sum(it.size for it in changed),
                      write_seconds=round(write_s, 3), verified=True,
                      removed=info["shadows"])
        t_boot = time.monotonic()
        frame = dev.boot(wait_s)
        if frame is not None:
            report["first_frame"] = frame
            report["boot_seconds"] = round(time.monotonic() - t_boot, 3)
            prog.line(f"  firmware runs: telemetry frame seq {frame.get('seq')} after "
                      f"{report['boot_seconds']:.2f} s")
    finally:
        dev.close()
    report["seconds"] = round(time.monotonic() - t0, 3)
    return report


def add_arguments(p):
    p.add_argument("--board", required=True, help="a folder in boards/ (unix, rp2040_pico, ...)")
    p.add_argument("--port", help="the board's serial port (or a `cabctl vboard` pty)")
    p.add_argument("--config", help="site.json to install (validated here first)")
    p.add_argument("--key-file", help="device key, 32 random bytes, installed as key.bin")
    p.add_argument("--dry-run", action="store_true", help="build and list; touch no port")
    p.add_argument("--json", action="store_true", help="print one JSON report on stdout")
    p.add_argument("--wait", type=float, default=15.0,
                   help="seconds to wait for the first telemetry frame after the reset (0: don't)")
    p.add_argument("--connect-timeout", type=float, default=5.0,
                   help="seconds to wait for the raw REPL (tried twice)")


def run(args):
    if not args.dry_run and not args.port:
        print("cabctl flash: --port is required (or use --dry-run)", file=sys.stderr)
        return EXIT_INPUT
    try:
        r = flash(args.board, args.port, config=args.config, key_file=args.key_file,
                  dry_run=args.dry_run, wait_s=args.wait, connect_timeout=args.connect_timeout)
    except FlashError as e:
        print(f"cabctl flash: {e}", file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": False, "error": str(e), "exit_code": e.code}))
        return e.code
    except KeyboardInterrupt:
        print("cabctl flash: interrupted", file=sys.stderr)
        return EXIT_FAIL
    r["ok"] = True
    if args.json:
        print(json.dumps(r))
    elif args.dry_run:
        print(f"dry run: board {r['board']} ({r['arch']}), {len(r['files'])} files, "
              f"{r['total_bytes']} bytes ({r['mpy_bytes']} bytes of .mpy); nothing written")
        for f in r["files"]:
            print(f"  {f['path']:<28} {f['size']:>7} B  from {f['source']}")
    else:
        print(f"flashed {r['board']} on {r['port']}: {r['written']} written "
              f"({r['bytes_written']} bytes), {r['unchanged']} unchanged, all verified, "
              f"{r['seconds']:.1f} s")
    return EXIT_OK
