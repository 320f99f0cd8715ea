"""Prediction in real time: the firmware's predictor learns the iteration
rhythm of a training load from the meter and PCS readings and pre-arms the
PCS before each rise. Judged from the plant's ground truth: once the rhythm
is learned, much less energy passes the cap per second than while the
engine was still purely reactive, in the same run on the same load."""
import numpy as np

from cabctl import truth

CAP_W = 18_000_000
LEARN_S = (3.0, 10.0)       # reactive: the predictor needs ~2 x 5 s of history first
ACTIVE_S = (14.0, 23.0)     # learned (acting from ~11 s)


def over_cap_wh_per_s(tr, t0, t1):
    w = truth.window(tr, t0, t1)
    dt = float(np.median(np.diff(w["t_s"])))
    return float(np.clip(w["grid_w"] - CAP_W, 0, None).sum()) * dt / 3600 / (t1 - t0)


def test_learned_rhythm_pre_arms_and_cuts_energy_above_cap(make_rig):
    rig = make_rig(site={"cap_w": CAP_W, "pred_enabled": True})
    rig.profile = "steady"               # one job, 0.9 s iterations, from t = 0
    s = rig.run(ACTIVE_S[1] + 1)
    assert s["ok"], s["errors"]
    tr = truth.load(rig.dir / "truth.csv")
    learn = over_cap_wh_per_s(tr, *LEARN_S)
    active = over_cap_wh_per_s(tr, *ACTIVE_S)
    print(f"\nenergy above cap: {learn:.1f} Wh/s reactive, {active:.1f} Wh/s with the rhythm learned")
    assert learn > 5, learn                      # the steps really crossed the cap
    assert active <= 0.5 * learn, (learn, active)
    assert s["invariant_violations"] == 0, s
    # Telemetry says what the predictor did.
    frames = [f for f in rig.logger.frames if f.get("uptime_ms", 0) >= ACTIVE_S[0] * 1000]
    assert len(frames) > 150, len(frames)
    periods = [f["pred_period_ms"] for f in frames]
    assert abs(np.median(periods) - 900) <= 50, np.median(periods)
    assert np.mean([f["pred_flags"] & 1 for f in frames]) > 0.8
    on = [f["uptime_ms"] for f in rig.logger.frames if f.get("pred_flags", 0) & 1]
    print(f"rhythm acting from {on[0] / 1000 if on else None} s of uptime")
    armed = [f["ff_w"] for f in frames if f["ff_w"] > 0]
    assert len(armed) >= 10, len(armed)          # about one or two cycles per 0.9 s
