"""Host Registers (the plant's encoder) against the firmware Device (decoder),
for every map in firmware/maps: two independent implementations must agree."""
import random

import pytest

from cabctl import regmap
from cabctl.paths import MAPS
from cabctl.plant.server import METER_SF, PCS_SF
from cabinet import devmap as dm           # the firmware module (tests/conftest.py)
from cabinet.crc16 import crc

NAMES = sorted(p.stem for p in MAPS.glob("*.json"))
MW = 1_000_000
LIMIT = 1 << 29


def pair(name):
    """(host Registers with the plant's scale factors, firmware Device) for one map."""
    m = regmap.load(name)
    sf = PCS_SF if m["kind"] == "pcs" else METER_SF
    regs = regmap.Registers(m, {k: v for k, v in sf.items() if k in m["points"]})
    return regs, dm.Device(None, 1, dm.load_map(str(MAPS / f"{name}.json")))


def transfer(regs, dev):
    """Host words -> firmware read responses, as the wire would carry them."""
    for t in dev.reads:
        r = t.resp
        r[0], r[1], r[2] = 1, t.fc, 2 * t.count
        for i in range(t.count):
            w = regs.words[t.addr + i]
            r[3 + 2 * i], r[4 + 2 * i] = w >> 8, w & 0xFF
        c = crc(r, 0, len(r) - 2)
        r[-2], r[-1] = c & 0xFF, c >> 8


def data_points(regs):
    sfs = {p["sf"] for p in regs.points.values() if "sf" in p}
    return [n for n in regs.points if n not in sfs]


def span(regs, name):
    """Firmware-unit range the point can carry: register range x 10**e, inside +/-2**29."""
    p, e = regs.points[name], regs.exponent(name)
    if p["type"] == "float32":
        lo, hi = -5e8, 5e8
    else:
        lo, hi = (x * 10 ** e for x in regmap.RANGE[p["type"]])
    return max(lo, -(LIMIT - 1)), min(hi, LIMIT - 1)


def tolerance(regs, name, v):
    p, e = regs.points[name], regs.exponent(name)
    if p["type"] == "float32":            # float32 rounding, then the firmware's rounding
        return abs(v) * 2 ** -24 + 0.5 + 10 ** e / 2 ** 19
    return 10 ** e / 2 if e > 0 else 0        # host rounds to the register's resolution


def values_for(regs, name, rng):
    lo, hi = span(regs, name)
    edges = [lo, hi, 0, 1, -1, lo / 2, hi / 2, 12345, -12345]
    return [int(v) for v in edges + [rng.uniform(lo, hi) for _ in range(200)] if lo <= v <= hi]


@pytest.mark.parametrize("name", NAMES)
def test_read_spans_agree(name):
    regs, dev = pair(name)
    spans = {t.fc: list(range(t.addr, t.addr + t.count)) for t in dev.reads}
    assert spans == {fc: regs.addresses(fc) for fc in (3, 4) if regs.addresses(fc)}


@pytest.mark.parametrize("name", NAMES)
def test_values_agree(name):
    rng = random.Random(name)
    regs, dev = pair(name)
    for point in data_points(regs):
        i = dev.index(point)
        for v in values_for(regs, point, rng):
            regs.set(point, v)
            transfer(regs, dev)
            got = dev.value(i)
            assert abs(got - v) <= tolerance(regs, point, v), \
                f"{name}.{point} = {v}: firmware reads {got} (exp {regs.exponent(point)})"


# Physical ranges the plant drives: (map, point, values in firmware units, resolution)
RANGES = [
    ("meter_sunspec", "grid_w", range(-30 * MW, 30 * MW + 1, 999_999), 1000),   # W_SF 3
    ("meter_sdm630", "grid_w", range(-30 * MW, 30 * MW + 1, 999_999), 1),
    ("meter_sunspec", "voltage_dv", range(0, 5000, 7), 0),
    ("meter_sunspec", "freq_mhz", range(45000, 65001, 13), 10),                # Hz_SF -2
    ("meter_sdm630", "freq_mhz", range(45000, 65001, 13), 1),
    ("pcs_sunspec", "W", range(-30 * MW, 30 * MW + 1, 999_983), 0),
    ("pcs_sunspec", "SoC", range(0, 10001), 10),                               # SoC_SF -1
    ("pcs_sunspec", "WChaMax", range(0, 50 * MW, 999_983), 0),
    ("pcs_sunspec", "WDisChaMax", range(0, 50 * MW, 999_983), 0),
]


@pytest.mark.parametrize("name, point, values, res", RANGES,
                         ids=[f"{m}.{p}" for m, p, _, _ in RANGES])
def test_plant_ranges(name, point, values, res):
    regs, dev = pair(name)
    i = dev.index(point)
    for v in values:
        regs.set(point, v)
        transfer(regs, dev)
        got = dev.value(i)
        assert abs(got - v) <= max(res / 2, 1 if res else 0), f"{point} = {v}: got {got}"


# Out of range on the host side: (map, point, set, firmware reads)
SATURATE = [
    ("meter_sunspec", "grid_w", 40 * MW, 32767 * 1000),        # int16 at W_SF 3: 32.767 MW
    ("meter_sunspec", "grid_w", -40 * MW, -32767 * 1000),
    ("meter_sunspec", "freq_mhz", -5, 0),                       # uint16
    ("pcs_sunspec", "SoC", -100, 0),
    ("pcs_sunspec", "SoC", 10 ** 6, 65535 * 10),
    ("pcs_sunspec", "Evt1", 1 << 20, 0xFFFF),
    ("pcs_sunspec", "WChaMax", -1, 0),                          # uint32
    ("pcs_sunspec", "WChaMax", 1 << 33, dm.INVALID),            # 2**32-1: over 2**29
    ("pcs_sunspec", "WChaMax", LIMIT, dm.INVALID),
    ("pcs_sunspec", "W", 3_000_000_000, dm.INVALID),            # int32 saturates at 2**31-1
    ("pcs_sunspec", "W", -3_000_000_000, dm.INVALID),
    ("pcs_sunspec", "W", LIMIT, dm.INVALID),                    # fits int32, not the firmware
    ("meter_sdm630", "grid_w", 6e8, dm.INVALID),
    ("meter_sdm630", "freq_mhz", 1e9, dm.INVALID),
]


@pytest.mark.parametrize("name, point, v, want", SATURATE)
def test_out_of_range(name, point, v, want):
    regs, dev = pair(name)
    regs.set(point, v)
    p = regs.points[point]
    if p["type"] != "float32":
        lo, hi = regmap.RANGE[p["type"]]
        assert lo <= regs._load(point) <= hi
    transfer(regs, dev)
    assert dev.value(dev.index(point)) == want


@pytest.mark.parametrize("name", NAMES)
def test_writes_agree(name):
    """Firmware set() -> fc 16 request words -> host Registers.get()."""
    rng = random.Random(name)
    regs, dev = pair(name)
    t = dev.write_txn
    writable = [n for n, p in regs.points.items() if p.get("access") == "rw"]
    if not writable:
        assert t is None
        return
    for point in writable:
        i = dev.index(point)
        for v in values_for(regs, point, rng):
            dev.set(i, v)
            t._seal()
            assert crc(t.req, 0, len(t.req)) == 0
            for k in range(t.count):
                regs.words[t.addr + k] = (t.req[7 + 2 * k] << 8) | t.req[8 + 2 * k]
            assert regs.get(point) == v, f"{name}.{point} = {v}"
