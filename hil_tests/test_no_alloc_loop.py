"""The steady-state loop, real I/O included, runs with the heap locked: any
allocation would raise MemoryError and end the firmware."""
from cabctl import truth


def test_loop_runs_with_heap_locked(make_rig, unix_only):
    rig = make_rig(site={"lock_heap": True})
    s = rig.run(5)
    log = (rig.dir / "firmware.log").read_text()
    assert "MemoryError" not in log, log
    assert s["ok"], s["errors"]
    assert s["frames_received"] >= 80, s
    assert s["meter_errors"] == 0 and s["pcs_errors"] == 0, s
    # It really dispatched while locked (not a loop that did nothing).
    tr = truth.load(rig.dir / "truth.csv")
    assert tr["battery_w"].max() > 1_000_000
