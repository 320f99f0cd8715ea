"""`cabctl plant`: serve the emulated meter and PCS on a pty (or a real port)."""
import json
import signal
import sys
import time

from .model import Plant, PlantConfig
from .profile import GpuCluster
from .server import PlantIO, announce, serve


def add_arguments(p):
    p.add_argument("--seconds", type=float, default=0, help="plant time to run (0 = until Ctrl-C)")
    p.add_argument("--truth", default="truth.csv", help="ground-truth CSV written at every step")
    p.add_argument("--port", help="serve on this serial device instead of a new pty")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--meter-map", default="meter_sunspec")
    p.add_argument("--pcs-map", default="pcs_sunspec")
    p.add_argument("--seed", type=int, default=1, help="load profile seed")
    p.add_argument("--config", help="JSON of PlantConfig fields (capacity_wh, pcs_tau_ms, ...)")


def run(args):
    # SIGTERM (how the rig stops us) ends the run like Ctrl-C: threads stop and
    # the ground-truth CSV is closed complete.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    overrides = json.loads(open(args.config).read()) if args.config else {}
    unknown = set(overrides) - set(PlantConfig().to_dict())
    if unknown:
        sys.exit(f"cabctl plant: {args.config}: unknown keys {sorted(unknown)}")
    cfg = PlantConfig(**overrides)
    horizon = args.seconds + 60 if args.seconds else 24 * 3600
    plant = Plant(cfg, GpuCluster(seed=args.seed, seconds=horizon).load_w)
    io = PlantIO(plant, args.meter_map, args.pcs_map)
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
                                           "plant": cfg.to_dict()}))
    print(json.dumps(result), file=sys.stderr)
