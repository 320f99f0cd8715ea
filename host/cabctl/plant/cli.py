"""`cabctl plant`: serve the emulated meter and PCS on a pty (or a real port).

With --ct, or a "ct" object in the --config file (CtSignalConfig fields, plus
"reverse": [CT indexes mounted backwards] and "seed"), the plant also writes
CT sample blocks to a second pty; its ready line then names it ("ct") with the
matching firmware config ("ct_config"). The unix board reads it from the
CABINET_CT environment variable.
"""
import json
import signal
import sys
import time

from .. import profiles
from . import faults
from .model import Plant, PlantConfig
from .server import CtFeed, PlantIO, announce, serve


def add_arguments(p):
    p.add_argument("--seconds", type=float, default=0, help="plant time to run (0 = until Ctrl-C)")
    p.add_argument("--truth", default="truth.csv", help="ground-truth CSV written at every step")
    p.add_argument("--port", help="serve on this serial device instead of a new pty")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--meter-map", default="meter_sunspec")
    p.add_argument("--pcs-map", default="pcs_sunspec")
    p.add_argument("--profile", default="demo",
                   help="load profile: built-in scenario (cabctl profile list) or profile file")
    p.add_argument("--seed", type=int, default=1, help="load profile seed (generated scenarios)")
    p.add_argument("--config", help="JSON of PlantConfig fields (capacity_wh, pcs_tau_ms, ...), "
                                    "and optionally \"ct\": CT signal settings (see --ct)")
    p.add_argument("--ct", action="store_true",
                   help="serve CT sample blocks on a second pty (default signal settings "
                        "unless the --config file has a \"ct\" object)")
    p.add_argument("--pcs", type=int, default=1, metavar="N",
                   help="a site of N PCS behind one site meter, one bus (pty) per cabinet; the "
                        "ready line lists them (\"buses\"); --config may hold \"pcs\": "
                        "[per-PCS PlantConfig overrides]")
    p.add_argument("--fault", action="append", default=[], metavar="KIND[@START[+DURATION]]",
                   help="inject a fault (repeatable): " + ", ".join(faults.KINDS))


def run(args):
    # SIGTERM (how the rig stops us) ends the run like Ctrl-C: threads stop and
    # the ground-truth CSV is closed complete.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    overrides = json.loads(open(args.config).read()) if args.config else {}
    ct_cfg = overrides.pop("ct", {} if args.ct else None)
    per_pcs = overrides.pop("pcs", [])
    unknown = set(overrides) - set(PlantConfig().to_dict())
    if unknown:
        sys.exit(f"cabctl plant: {args.config}: unknown keys {sorted(unknown)}")
    cfg = PlantConfig(**overrides)
    # Generated once up front; the physics loop only indexes it (sample-and-hold,
    # wrapping past the end when the plant runs longer than the profile).
    try:
        profile = profiles.load(args.profile, seed=args.seed,
                                seconds=args.seconds + 60 if args.seconds else None)
    except profiles.ProfileError as e:
        sys.exit(f"cabctl plant: {e}")
    try:
        schedule = faults.Schedule(faults.parse(f) for f in args.fault)
    except ValueError as e:
        sys.exit(f"cabctl plant: {e}")
    if args.pcs > 1:
        return _run_fleet(args, cfg, per_pcs, profile)
    plant = Plant(cfg, profile.at)
    io = PlantIO(plant, args.meter_map, args.pcs_map, faults=schedule)
    extra = {}
    if ct_cfg is not None:
        try:
            io.ct = CtFeed(ct_cfg)
        except (TypeError, ValueError) as e:
            sys.exit(f"cabctl plant: ct: {e}")
        extra = {"ct": io.ct.path, "ct_config": io.ct.firmware_config()}
    if args.port:
        import serial
        port = serial.Serial(args.port, args.baud)
        path = args.port
    else:
        from .bus import PtyPort
        port = PtyPort(args.baud)
        path = port.path
    result = serve(io, port, args.seconds, args.truth,
                   ready=lambda: announce({"bus": path, "truth": args.truth,
                                           "t0_monotonic": time.monotonic(),
                                           "plant": cfg.to_dict(),
                                           "profile": profile.name,
                                           "profile_s": profile.duration_s,
                                           "faults": args.fault, **extra}))
    print(json.dumps(result), file=sys.stderr)


def _run_fleet(args, cfg, per_pcs, profile):
    from . import fleet
    from .bus import PtyPort
    if args.port or args.fault or args.ct or args.meter_map != "meter_sunspec" \
            or args.pcs_map != "pcs_sunspec":
        sys.exit("cabctl plant: --pcs N serves the SunSpec meter and PCS on ptys only "
                 "(no --port, --fault, --ct, other maps)")
    try:
        cfgs = fleet.fleet_configs(cfg, args.pcs, per_pcs)
    except TypeError as e:
        sys.exit(f"cabctl plant: {args.config}: pcs: {e}")
    site = fleet.FleetPlant(cfgs, profile.at)
    ports = [PtyPort(args.baud) for _ in range(args.pcs)]
    result = fleet.serve(site, ports, args.seconds, args.truth,
                         ready=lambda: announce({"buses": [p.path for p in ports],
                                                 "bus": ports[0].path,
                                                 "pcs_units": [fleet.FIRST_PCS_UNIT + k for k in range(args.pcs)],
                                                 "truth": args.truth,
                                                 "t0_monotonic": time.monotonic(),
                                                 "plant": [c.to_dict() for c in cfgs],
                                                 "profile": profile.name,
                                                 "profile_s": profile.duration_s,
                                                 "faults": []}))
    print(json.dumps(result), file=sys.stderr)
