"""`cabctl calibrate`: gain/offset per CT from readings at known currents."""
import json
from dataclasses import replace

import numpy as np
import pytest

from cabctl import calibrate
from cabctl.cli import main
from cabctl.ct_signal import CtSignal, CtSignalConfig
from cabinet import ct


def cabctl(capsys, *argv):
    rc = main(["calibrate", *[str(a) for a in argv]])
    out, err = capsys.readouterr()
    return rc, out, err


def point(known, readings):
    return f"{known}:{','.join(str(r) for r in readings)}"


def test_fit_recovers_a_known_gain_and_offset():
    gains, offsets = [1.0375, 0.912, 1.5], [-420.0, 130.0, 0.0]
    # The firmware at gain 1, offset 0 reads u where true = gain * u + offset.
    pts = [([k], [(k - o) / g for g, o in zip(gains, offsets)]) for k in (0, 40000, 100000)]
    g, o, resid = calibrate.fit(pts)
    assert g == pytest.approx(gains, rel=1e-9) and o == pytest.approx(offsets, abs=1e-6)
    assert max(resid) < 1e-6
    # Readings made with a calibration already in place give the same result.
    old_g, old_o = [1100000, 950000, 1000000], [50, -20, 0]
    pts2 = [(k, [u * gp / 1e6 + op for u, gp, op in zip(r, old_g, old_o)]) for k, r in pts]
    g2, o2, _ = calibrate.fit(pts2, old_g, old_o)
    assert g2 == pytest.approx(gains, rel=1e-9) and o2 == pytest.approx(offsets, abs=1e-6)


def test_end_to_end_with_generated_samples(tmp_path, capsys):
    # The hardware's burdens are 5 %, -3 % and 8 % off the nominal 2.2 ohm the
    # site config assumes: the firmware reads that much high/low until calibrated.
    nominal = CtSignal(CtSignalConfig(noise_counts=2.0))
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"cap_w": 18000000, "ct": nominal.ct_config()}))
    errs = (1.05, 0.97, 1.08)

    def readings(grid_w, cfg_ct):
        out = []
        for k, e in enumerate(errs):             # one CT per run: its own burden error
            sig = CtSignal(replace(nominal.cfg, burden_ohm=2.2 * e), seed=k)
            m = ct.Ct(ct.validate(cfg_ct))
            for _ in range(8):
                m.process(sig.next_array(grid_w))
            out.append(m.rms_ma[k])
        return out

    h = np.sqrt(1 + sum(f * f for f, _ in nominal.cfg.harmonics.values()))
    known = lambda grid_w: int(round(abs(nominal.currents(grid_w)[0]) * h * 1000))
    cfg_ct = json.loads(site.read_text())["ct"]
    r0, r1 = readings(0, cfg_ct), readings(20e6, cfg_ct)
    assert r1[0] == pytest.approx(known(20e6) * 1.05, rel=0.003)        # uncalibrated: 5 % high
    rc, out, err = cabctl(capsys, "--point", point(0, r0), "--point", point(known(20e6), r1),
                          "--apply-to", site)
    assert rc == 0, err
    res = json.loads(out)["ct"]
    assert [g / 1e6 for g in res["gain_ppm"]] == pytest.approx([1 / e for e in errs], rel=0.003)
    obj = json.loads(site.read_text())
    assert obj["cap_w"] == 18000000 and obj["ct"]["gain_ppm"] == res["gain_ppm"]
    assert obj["ct"]["ma_fs"] == nominal.ct_config()["ma_fs"]            # the rest kept
    assert "CT 0: gain" in err and "wrote" in err
    # Calibrated: another current reads right on every CT.
    got = readings(9e6, obj["ct"])
    assert got == pytest.approx([known(9e6)] * 3, rel=0.005)


def test_errors_name_channel_and_value(tmp_path, capsys):
    rc, _, err = cabctl(capsys, "--point", "0:0,0", "--point", "100000:100000,45000")
    assert rc == 2 and "channel 1: gain 2.2222 (gain_ppm 2222222) is outside 0.5..2" in err
    # Default ma_fs 150 A: the offset may be up to 1/16 of it.
    rc, _, err = cabctl(capsys, "--point", "0:-10000,0", "--point", "100000:90000,100000")
    assert rc == 2 and "channel 0: offset 10000 mA is outside -9375..9375 mA" in err
    rc, _, err = cabctl(capsys, "--point", "0:0,0")
    assert rc == 2 and "at least two points" in err
    rc, _, err = cabctl(capsys, "--point", "0:0,0", "--point", "0:10,10")
    assert rc == 2 and "channel 0: the points do not differ" in err
    rc, _, err = cabctl(capsys, "--point", "0:0,0", "--point", "1000:1000")
    assert rc == 2 and "point 2: 1 readings" in err
    rc, _, err = cabctl(capsys, "--point", "zero:0", "--point", "1:1")
    assert rc == 2 and "expected KNOWN_MA:READING_MA" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    rc, _, err = cabctl(capsys, "--point", "0:0", "--point", "1000:1000", "--apply-to", bad)
    assert rc == 2 and "bad.json: not JSON" in err and bad.read_text() == "{"
    rc, _, err = cabctl(capsys, "--point", "0:0", "--point", "1000:1000", "--site", tmp_path / "nope")
    assert rc == 2 and "No such file" in err


def test_new_site_file_and_per_ct_known_currents(tmp_path, capsys):
    site = tmp_path / "new.json"
    rc, out, _ = cabctl(capsys, "--point", "0:0,0", "--point", "50000,80000:50000,40000",
                        "--apply-to", site)
    assert rc == 0
    c = json.loads(site.read_text())["ct"]
    assert c == json.loads(out)["ct"] and c["gain_ppm"] == [1000000, 2000000]
    assert c["i_ch"] == [0, 1] and c["offset_ma"] == [0, 0]
    assert ct.validate(c)["gain_ppm"] == [1000000, 2000000]
