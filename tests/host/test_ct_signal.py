"""cabctl.ct_signal: the CT sample blocks of the SIL, decoded by the firmware's
own cabinet.ct (plain path on CPython), agree with the plant's power."""
from array import array

import numpy as np
import pytest

from cabctl import fw  # noqa: F401  (firmware on sys.path)
from cabctl.ct_signal import CtSignal, CtSignalConfig
from cabctl.plant.model import Plant, PlantConfig
from cabinet import ct

MW = 1e6


def meter(sig):
    return ct.Ct(ct.validate(sig.ct_config()))


@pytest.mark.parametrize("kw", [{}, {"v_channels": 3}, {"pf": 0.8, "ct_phase_deg": 2.0, "skew_us": 20.0},
                                {"hz": 60.03, "bias_drift_v_per_s": 0.01}, {"nominal_hz": 50, "hz": 50.0, "n": 50},
                                {"imbalance": (1.0, 0.7, 1.3)}])
def test_firmware_reads_the_generated_power_within_1_percent(kw):
    sig = CtSignal(CtSignalConfig(**kw), seed=5)
    m = meter(sig)
    m.process(sig.next_array(10 * MW))
    for grid_w in (25 * MW, 18 * MW, 8 * MW, 3 * MW, -3 * MW):
        for _ in range(4):
            m.process(sig.next_array(grid_w))
            assert m.total_w == pytest.approx(grid_w, rel=0.01), (grid_w, m.total_w)
        i_rms = np.abs(sig.currents(grid_w)) * 1000
        h = np.sqrt(1 + sum(f * f for f, _ in sig.cfg.harmonics.values()))
        assert list(m.rms_ma) == pytest.approx(i_rms * h, rel=0.01)
    if sig.cfg.v_channels:
        assert m.v_mv == pytest.approx(sig.cfg.v_ln_rms * 1000 * np.sqrt(1 + 0.015 ** 2), rel=0.003)


def test_without_a_voltage_channel_power_is_apparent():
    sig = CtSignal(CtSignalConfig(v_channels=0, pf=0.95), seed=2)
    m = meter(sig)
    for _ in range(3):
        m.process(sig.next_array(-12 * MW))
    h = np.sqrt(1 + sum(f * f for f, _ in sig.cfg.harmonics.values()))
    assert m.total_w == pytest.approx(12 * MW / 0.95 * h, rel=0.01)     # no sign, no pf


def test_ct_power_follows_the_plant_and_its_meter():
    # The plant without a controller: grid = load, a 12 -> 22 MW step at 1 s.
    load = lambda t: 12 * MW if t < 1.0 else 22 * MW
    plant = Plant(PlantConfig(), load)
    sig = CtSignal(seed=9)
    m = meter(sig)
    cycle_s = sig.cfg.n * sig.sample_s
    step_seen = None
    for k in range(120):                        # 2 s of mains cycles
        t_end = (k + 1) * cycle_s
        while plant.t < t_end - 1e-9:
            plant.step(min(plant.cfg.step_ms / 1000, t_end - plant.t))
        m.process(sig.next_array(lambda t: plant.load(t) - plant.battery_w))
        if k > 0 and abs(t_end - 1.0) > cycle_s:   # not the block holding the step
            assert m.total_w == pytest.approx(plant.grid_w, rel=0.01), (k, m.total_w, plant.grid_w)
        if step_seen is None and m.total_w > 21.5 * MW:
            step_seen = t_end
    # The step shows in the first whole cycle after it; the meter lags up to its interval.
    assert 1.0 < step_seen <= 1.0 + 2 * cycle_s
    assert plant.meter_grid_w == pytest.approx(22 * MW) and m.total_w == pytest.approx(22 * MW, rel=0.01)


def test_deterministic_from_the_seed_and_the_block_formats():
    a, b, c = CtSignal(seed=4), CtSignal(seed=4), CtSignal(seed=5)
    blocks = [s.next_block(15 * MW) for s in (a, b, c)]
    assert np.array_equal(blocks[0], blocks[1]) and not np.array_equal(blocks[0], blocks[2])
    assert blocks[0].dtype == np.uint16 and blocks[0].size == 64 * 4
    arr = a.next_array(15 * MW)
    assert isinstance(arr, array) and arr.typecode == "H" and len(arr) == 256
    raw = b.block_bytes(15 * MW)
    assert len(raw) == 512 and array("H", raw) == arr
    # 12-bit ADC scaled like read_u16(): every value is (r << 4) | (r >> 8).
    r = blocks[0].astype(np.uint32) >> 4
    assert np.array_equal(blocks[0], (r << 4) | (r >> 8))
    # Around the mid-rail bias (+ its error), not clipped.
    assert 1000 < blocks[0].min() and blocks[0].max() < 64500


def test_firmware_config_matches_the_analogue_chain():
    sig = CtSignal(CtSignalConfig(ct_ratio=2000, burden_ohm=22, vt_ratio=1, vt_div=250))
    c = ct.validate(sig.ct_config())
    assert c["ma_fs"] == [150000] * 3                 # 1.65 V / 22 ohm * 2000
    assert c["mv_fs"] == 412500 and c["v_ch"] == [3, 3, 3]
    assert c["phase_cdeg"] == [0, 12000, 24000]
    with pytest.raises(ValueError):
        CtSignal(CtSignalConfig(phases=2, v_channels=3))
