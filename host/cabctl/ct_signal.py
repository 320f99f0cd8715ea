"""ADC sample blocks for the CT inputs of a unix-board (SIL) firmware.

What a board's ADC would read on the cluster feeder: per phase a current
through a CT (ratio, burden resistor) and the phase voltage through a VT and
divider, both riding on the ~1.65 V mid-rail bias, with 3rd/5th harmonics,
a CT phase error, Gaussian noise and a 12-bit ADC whose value is scaled to
u16 as MicroPython's `ADC.read_u16()` does. The plant's grid power sets the
currents, so the firmware's CT power agrees with the emulated meter; the
whole stream is deterministic for a given seed.

Block layout (as `cabinet.ct` expects): n samples per nominal mains cycle,
channels interleaved, sample j of channel c at j * channels + c; channels
0..phases-1 are the CTs, then the voltage channel(s). `ct_config()` gives the
firmware's matching "ct" site-config object.
"""
import math
from array import array
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class CtSignalConfig:
    nominal_hz: int = 60          # sampling: n per nominal cycle
    hz: float = 60.0              # actual grid frequency
    n: int = 64
    phases: int = 3
    v_channels: int = 1           # 0: none, 1: phase A only, 3: one per phase
    v_ln_rms: float = 7967.0      # phase-to-neutral, a 13.8 kV feeder
    pf: float = 0.97              # displacement power factor, lagging
    imbalance: tuple = (1.0, 1.0, 1.0)      # per-phase share of the power (normalised)
    harmonics: dict = field(default_factory=lambda: {3: (0.06, 0.4), 5: (0.04, 1.9)})
    v_harmonics: dict = field(default_factory=lambda: {5: (0.015, 0.3)})   # order: (fraction, rad)
    ct_ratio: float = 3000.0      # primary : secondary amperes (3000 A : 1 A)
    burden_ohm: float = 2.2       # 1.65 V peak at 2250 A peak primary
    ct_phase_deg: float = 0.0     # CT phase error: secondary leads primary by this
    vt_ratio: float = 120.0       # 14.4 kV : 120 V
    vt_div: float = 70.0          # VT secondary volts per ADC volt (divider)
    adc_vref: float = 3.3
    adc_bits: int = 12
    bias_v: float = 1.65          # the mid-rail divider (10k/10k from 3.3 V)
    bias_err_v: float = 0.012     # resistor tolerance: the real bias is off by this
    bias_drift_v_per_s: float = 0.0
    noise_counts: float = 4.0     # Gaussian, in 12-bit ADC counts (before scaling)
    skew_us: float = 0.0          # round-robin ADC: channel c sampled c * skew_us late

    def to_dict(self):
        return asdict(self)


class CtSignal:
    def __init__(self, cfg: CtSignalConfig | None = None, seed: int = 1):
        self.cfg = cfg or CtSignalConfig()
        c = self.cfg
        if c.v_channels not in (0, 1, 3) or not 1 <= c.phases <= 3:
            raise ValueError("phases must be 1..3 and v_channels 0, 1 or 3")
        if c.v_channels == 3 and c.phases != 3:
            raise ValueError("v_channels=3 needs phases=3")
        self.rng = np.random.default_rng(seed)
        self.channels = c.phases + c.v_channels
        self.sample_s = 1.0 / (c.nominal_hz * c.n)
        self.t = 0.0                  # time of the next block's first sample
        w = np.asarray(c.imbalance[:c.phases], dtype=float)
        self.share = w / w.sum()

    # Scale of the analogue chain, as the firmware config expresses it.
    def ma_fs(self):
        """Peak primary mA that swings the ADC from the bias to the rail."""
        return self.cfg.adc_vref / 2 / self.cfg.burden_ohm * self.cfg.ct_ratio * 1000

    def mv_fs(self):
        return self.cfg.adc_vref / 2 * self.cfg.vt_div * self.cfg.vt_ratio * 1000

    def ct_config(self):
        """The firmware's "ct" object for this hardware (ideal calibration)."""
        c = self.cfg
        nv = c.v_channels
        v_ch = ([c.phases] * c.phases if nv == 1 else
                [c.phases + k for k in range(c.phases)] if nv == 3 else [-1] * c.phases)
        # Phase: B and C against phase A's voltage (+120/+240 deg), undo the
        # CT's lead (delay the current), and the round-robin skew between the
        # current channel and its voltage channel.
        phase = []
        for k in range(c.phases):
            deg = (120.0 * k if nv == 1 else 0.0) - c.ct_phase_deg
            if nv:
                deg += (v_ch[k] - k) * c.skew_us * 1e-6 * c.nominal_hz * 360
            phase.append(int(round(deg * 100)))
        return {"hz": c.nominal_hz, "n": c.n, "channels": self.channels,
                "i_ch": list(range(c.phases)), "v_ch": v_ch,
                "ma_fs": [int(round(self.ma_fs()))] * c.phases, "mv_fs": int(round(self.mv_fs())),
                "v_nom_mv": int(round(c.v_ln_rms * 1000)), "phase_cdeg": phase}

    def currents(self, grid_w):
        """Per-phase fundamental current, A rms (signed: < 0 is export)."""
        c = self.cfg
        phi = math.acos(c.pf)
        p_per_v = c.v_ln_rms * c.pf          # W per A of fundamental, plus harmonic power
        for h, (fi, ph) in c.harmonics.items():
            if h in c.v_harmonics:
                fv, pv = c.v_harmonics[h]
                p_per_v += c.v_ln_rms * fv * fi * math.cos(h * -phi + ph - pv)
        return grid_w * self.share / p_per_v

    def next_block(self, grid_w):
        """One cycle of samples (np.uint16, interleaved); grid_w: W, or a callable t -> W."""
        c = self.cfg
        n, nch = c.n, self.channels
        j = np.arange(n)
        out = np.empty((n, nch))
        lsb = c.adc_vref / (1 << c.adc_bits)
        p = np.array([grid_w(self.t + k * self.sample_s) for k in range(n)]) \
            if callable(grid_w) else np.full(n, float(grid_w))
        phi = math.acos(c.pf)
        w = 2 * math.pi * c.hz
        for ch in range(nch):
            t = self.t + j * self.sample_s + ch * c.skew_us * 1e-6
            if ch < c.phases:
                k = ch
                i_rms = np.array([self.currents(x)[k] for x in p]) if callable(grid_w) \
                    else self.currents(p[0])[k]
                th = w * t - k * 2 * math.pi / 3 - phi + math.radians(c.ct_phase_deg)
                i = math.sqrt(2) * i_rms * (np.sin(th) + sum(
                    fi * np.sin(h * th + ph) for h, (fi, ph) in c.harmonics.items()))
                volts = i / c.ct_ratio * c.burden_ohm
            else:
                k = ch - c.phases
                th = w * t - k * 2 * math.pi / 3
                v = math.sqrt(2) * c.v_ln_rms * (np.sin(th) + sum(
                    fv * np.sin(h * th + pv) for h, (fv, pv) in c.v_harmonics.items()))
                volts = v / c.vt_ratio / c.vt_div
            bias = c.bias_v + c.bias_err_v + c.bias_drift_v_per_s * t
            out[:, ch] = (bias + volts) / lsb + self.rng.normal(0.0, c.noise_counts, n)
        raw = np.clip(np.rint(out), 0, (1 << c.adc_bits) - 1).astype(np.uint32)
        # read_u16() on a 12-bit ADC: the value shifted up, its top bits repeated below.
        sh = 16 - c.adc_bits
        u16 = (raw << sh) | (raw >> (c.adc_bits - sh)) if sh else raw
        self.t += n * self.sample_s
        return u16.astype(np.uint16).reshape(-1)

    def next_array(self, grid_w):
        """The same as an array('H'), the type the firmware's ct module takes."""
        return array("H", self.next_block(grid_w).tobytes())

    def block_bytes(self, grid_w):
        """The same as little-endian bytes (for a HAL reading it over a pipe)."""
        return self.next_block(grid_w).astype("<u2").tobytes()
