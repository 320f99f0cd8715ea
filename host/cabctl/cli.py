"""cabctl: the cabinet's host tool."""
import argparse
import sys


def main(argv=None):
    ap = argparse.ArgumentParser(prog="cabctl", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    from .plant import cli as plant_cli
    p = sub.add_parser("plant", help="emulated meter + PCS + GPU-cluster load on a Modbus RTU bus")
    plant_cli.add_arguments(p)
    p.set_defaults(run=plant_cli.run)

    from . import log
    p = sub.add_parser("log", help="decode telemetry from a serial port or a command's stdout")
    log.add_arguments(p)
    p.set_defaults(run=log.run)

    from . import ingest
    p = sub.add_parser("ingest", help="fleet telemetry: MQTT (cabctl log --mqtt) into PostgreSQL")
    ingest.add_arguments(p)
    p.set_defaults(run=ingest.run)

    from . import logplot
    p = sub.add_parser("plot", help="PNG of grid/battery/load/SoC/cap from a run's telemetry")
    logplot.add_arguments(p)
    p.set_defaults(run=logplot.run)

    from . import demo
    p = sub.add_parser("demo", help="plant + firmware on MicroPython (SIL), live view, summary and plot")
    demo.add_arguments(p)
    p.set_defaults(run=demo.run)

    from . import flash
    p = sub.add_parser("flash", help="compile the firmware for a board and install it with mpremote")
    flash.add_arguments(p)
    p.set_defaults(run=flash.run)

    from . import cmd
    p = sub.add_parser("cmd", help="status, config and authenticated commands over the console")
    cmd.add_arguments(p)
    p.set_defaults(run=cmd.run)

    from . import vboard
    p = sub.add_parser("vboard", help="a virtual board: MicroPython unix port behind a pty, "
                                      "flashable like a real one")
    vboard.add_arguments(p)
    p.set_defaults(run=vboard.run)

    from .profiles import cli as profile_cli
    p = sub.add_parser("profile", help="load profiles: generate, import GPU power logs, stats, plot")
    profile_cli.add_arguments(p)
    p.set_defaults(run=profile_cli.run)

    from .sim import cli as sim_cli
    p = sub.add_parser("sim", help="the dispatch engine vs baselines over a load profile, offline")
    sim_cli.add_arguments(p)
    p.set_defaults(run=sim_cli.run_cli)

    from . import calibrate
    p = sub.add_parser("calibrate", help="CT gain and offset per channel from readings at known "
                                         "currents, for the site config")
    calibrate.add_arguments(p)
    p.set_defaults(run=calibrate.run)

    from . import soak
    p = sub.add_parser("soak", help="firmware vs plant for N minutes with random faults of every "
                                    "kind: cycles, heap, recoveries, safety-monitor violations")
    soak.add_arguments(p)
    p.set_defaults(run=soak.run_cli)

    from . import hint
    p = sub.add_parser("hint", help="job events (start, checkpoint, end, maintenance) as "
                                    "feed-forward: send, post, or serve a local endpoint")
    hint.add_arguments(p)
    p.set_defaults(run=hint.run)

    from . import site
    p = sub.add_parser("site", help="site coordinator: shares of one site cap for N cabinets "
                                    "(authenticated share commands, SoC balancing)")
    site.add_arguments(p)
    p.set_defaults(run=site.run)

    args = ap.parse_args(argv)
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
