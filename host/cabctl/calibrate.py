"""`cabctl calibrate`: CT gain and offset from readings at known currents.

Run the site with the calibration it has, pass known currents through the
CTs (at least two different ones, e.g. none and a test load), and note the
RMS currents the firmware reports per CT (telemetry, mA). Each `--point`
is one known current (mA; one number for every CT, or one per CT) and the
readings of every CT at it:

    cabctl calibrate --point 0:210,180,195 --point 100000:104800,99100,101200 \
        --apply-to site.json

The readings are taken to be made with the calibration in the site file
(--site, default the --apply-to file; neither: gain 1, offset 0), so the
result can be applied on top of an earlier one. A least-squares line per CT,
true = gain * uncalibrated + offset, gives the new gain_ppm (1000000 = 1.0)
and offset_ma; they are checked against the firmware's own limits
(cabinet.ct.validate) and printed as the site config's "ct" object.

`--apply-port PORT --key-file K` sends it to a running cabinet instead (or as
well): the device's own "ct" object is read first (get_config) as the
calibration in use unless --site is given, then `set_config` with the new
"ct" (the command `cabctl cmd set ct=...` would send); the device validates it
and applies it at once, no reboot.
"""
import json
import os
import sys
import time

from . import fw  # noqa: F401  (puts the firmware on sys.path)
from cabinet import ct  # noqa: E402

GAIN_RANGE = (ct.PER_CT["gain_ppm"][1], ct.PER_CT["gain_ppm"][2])


class CalibrationError(ValueError):
    pass


def parse_point(text):
    """'KNOWN:R0,R1,..' or 'K0,K1,..:R0,R1,..' -> ([known mA per CT or one], [readings mA])."""
    try:
        known, readings = text.split(":")
        k = [float(x) for x in known.split(",")]
        r = [float(x) for x in readings.split(",")]
    except ValueError:
        raise CalibrationError(f"--point {text!r}: expected KNOWN_MA:READING_MA,READING_MA,... "
                               "(KNOWN_MA: one number, or one per CT)") from None
    return k, r


def fit(points, gain_ppm=None, offset_ma=None):
    """points: [(known_ma list (1 or per CT), readings_ma list)]; the readings were
    taken with gain_ppm/offset_ma (lists per CT; None: 1.0 and 0).
    Returns (gain_ppm, offset_ma, worst residual mA) per CT, as lists."""
    if len(points) < 2:
        raise CalibrationError("need at least two points (e.g. no load and a known current)")
    nct = len(points[0][1])
    gain_ppm = gain_ppm or [1000000] * nct
    offset_ma = offset_ma or [0] * nct
    gains, offsets, resid = [], [], []
    for i, (known, readings) in enumerate(points):
        if len(readings) != nct or len(known) not in (1, nct):
            raise CalibrationError(f"point {i + 1}: {len(readings)} readings and {len(known)} "
                                   f"known currents; expected {nct} readings, 1 or {nct} currents")
    if len(gain_ppm) != nct or len(offset_ma) != nct:
        raise CalibrationError(f"the site's calibration has {len(gain_ppm)} CTs, readings {nct}")
    for ch in range(nct):
        xs = [(r[ch] - offset_ma[ch]) * 1e6 / gain_ppm[ch] for _, r in points]   # uncalibrated
        ys = [k[ch] if len(k) > 1 else k[0] for k, _ in points]
        n = len(xs)
        mx, my = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx < 1.0 or max(ys) - min(ys) <= 0:
            raise CalibrationError(f"channel {ch}: the points do not differ (readings {xs}, known "
                                   f"{ys}): use two different known currents")
        g = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
        o = my - g * mx
        gains.append(g)
        offsets.append(o)
        resid.append(max(abs(g * x + o - y) for x, y in zip(xs, ys)))
    return gains, offsets, resid


def result(gains, offsets, site_ct=None):
    """The new "ct" object (site_ct updated), checked against the firmware's limits."""
    new = dict(site_ct or {})
    nct = len(gains)
    g_ppm = [int(round(g * 1e6)) for g in gains]
    o_ma = [int(round(o)) for o in offsets]
    for ch, g in enumerate(g_ppm):
        if not GAIN_RANGE[0] <= g <= GAIN_RANGE[1]:
            raise CalibrationError(
                f"channel {ch}: gain {g / 1e6:.4f} (gain_ppm {g}) is outside "
                f"{GAIN_RANGE[0] / 1e6:g}..{GAIN_RANGE[1] / 1e6:g}: wrong known current, "
                "a reversed or wrong-ratio CT, or ma_fs off by more than 2x")
    base = {"i_ch": list(range(nct)), **new}
    base.pop("gain_ppm", None)
    base.pop("offset_ma", None)
    if len(base["i_ch"]) != nct:
        raise CalibrationError(f"the site config has {len(base['i_ch'])} CTs (i_ch), "
                               f"the readings {nct}")
    ma_fs = ct.validate(base)["ma_fs"]
    for ch, o in enumerate(o_ma):
        lim = ma_fs[ch] // 16
        if not -lim <= o <= lim:
            raise CalibrationError(f"channel {ch}: offset {o} mA is outside -{lim}..{lim} mA "
                                   f"(ma_fs / 16 with ma_fs {ma_fs[ch]} mA): check the readings "
                                   "at no load")
    new["gain_ppm"] = g_ppm
    new["offset_ma"] = o_ma
    if "i_ch" not in new and nct != 3:
        new["i_ch"] = list(range(nct))
    try:
        ct.validate(new, "ct")
    except ValueError as e:
        raise CalibrationError(str(e)) from None
    return new


def _load(path):
    try:
        with open(path) as f:
            obj = json.load(f)
    except OSError as e:
        raise CalibrationError(f"{path}: {e.strerror}") from None
    except ValueError as e:
        raise CalibrationError(f"{path}: not JSON: {e}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("ct", {}), dict):
        raise CalibrationError(f"{path}: expected an object with an optional \"ct\" object")
    return obj


def serial_commander(path, baud, key, timeout):
    """command(cmd, args) -> the device's command_result event, over its console."""
    import serial
    from . import cmd as cmdline
    from .telemetry import StreamDecoder, load_schema
    try:
        port = serial.Serial(path, baud, timeout=0.1)
    except serial.SerialException as e:
        raise CalibrationError(f"cannot open {path}: {e}") from None
    dec = StreamDecoder(load_schema())

    def command(cmd, args):
        cid, data = cmdline.line(cmd, args, key)
        port.write(data)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for rec in dec.feed(port.read(4096)):
                if rec.get("event") == "command_result" and rec.get("id") == cid:
                    return rec
        raise CalibrationError(f"no reply from {path} within {timeout:g} s")
    return command


def device_ct(command):
    """The "ct" object the device runs with ({}: none)."""
    rep = command("get_config", None)
    if not rep.get("ok"):
        raise CalibrationError(f"get_config refused: {rep.get('message')}")
    ct_obj = (rep.get("data") or {}).get("ct") or {}
    if not isinstance(ct_obj, dict):
        raise CalibrationError(f"the device's ct is not an object: {ct_obj!r}")
    return ct_obj


def apply_to_device(command, new):
    """set_config with the new "ct" object; the device's reply message."""
    rep = command("set_config", {"ct": new})
    if not rep.get("ok"):
        raise CalibrationError(f"the device refused the calibration: {rep.get('code')}: "
                               f"{rep.get('message')}")
    return rep.get("message", "")


def add_arguments(p):
    p.add_argument("--point", action="append", required=True, metavar="KNOWN_MA:R0,R1,..",
                   help="a known current (mA: one, or one per CT) and each CT's reading (mA); "
                        "at least two")
    p.add_argument("--site", help="site config whose calibration was active during the readings "
                                  "(default: --apply-to)")
    p.add_argument("--apply-to", metavar="SITE_JSON", help="write the result into this site config")
    p.add_argument("--apply-port", metavar="PORT",
                   help="send the result to the cabinet on this console (set_config); without "
                        "--site, the calibration in use is read from the device")
    p.add_argument("--key-file", help="the device key (32 bytes), for --apply-port")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--timeout", type=float, default=5.0, help="--apply-port: reply deadline (s)")


def run(args, command=None):
    """command: replaces the serial console of --apply-port (tests)."""
    try:
        apply_port = getattr(args, "apply_port", None)
        if apply_port and command is None:
            if not args.key_file:
                raise CalibrationError("--apply-port needs --key-file (set_config is authenticated)")
            try:
                with open(args.key_file, "rb") as f:
                    key = f.read()
            except OSError as e:
                raise CalibrationError(f"{args.key_file}: {e.strerror}") from None
            command = serial_commander(apply_port, args.baud, key, args.timeout)
        site_path = args.site or args.apply_to
        site = {}
        if args.site or (site_path and os.path.exists(site_path)):
            site = _load(site_path)             # --site must exist; --apply-to may be new
        elif command is not None:
            site = {"ct": device_ct(command)}
            site_path = apply_port or "the device"
        site_ct = site.get("ct", {})
        points = [parse_point(t) for t in args.point]
        nct = len(points[0][1])
        cur = None
        if site_ct:
            c = ct.validate({"i_ch": list(range(nct)), **site_ct})
            cur = (c["gain_ppm"], c["offset_ma"])
        gains, offsets, resid = fit(points, *(cur or (None, None)))
        new = result(gains, offsets, site_ct)
    except CalibrationError as e:
        print(f"cabctl calibrate: {e}", file=sys.stderr)
        return 2
    except ValueError as e:                        # the firmware's validate on the site's ct
        print(f"cabctl calibrate: {site_path}: {e}", file=sys.stderr)
        return 2
    for ch in range(len(gains)):
        print(f"CT {ch}: gain {gains[ch]:.5f}, offset {offsets[ch]:+.0f} mA, "
              f"worst residual {resid[ch]:.0f} mA", file=sys.stderr)
    print(json.dumps({"ct": new}))
    if args.apply_to:
        obj = _load(args.apply_to) if os.path.exists(args.apply_to) else {}
        obj["ct"] = new
        tmp = f"{args.apply_to}.tmp"
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.replace(tmp, args.apply_to)
        print(f"wrote {args.apply_to}", file=sys.stderr)
    if command is not None:
        try:
            msg = apply_to_device(command, new)
        except CalibrationError as e:
            print(f"cabctl calibrate: {e}", file=sys.stderr)
            return 1
        print(f"sent to {apply_port or 'the device'}: {msg}", file=sys.stderr)
    return 0
