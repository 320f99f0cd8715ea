"""Host Registers (the plant's encoder) against the firmware Device (decoder),
for every map in firmware/maps: two independent implementations must agree."""
import random

import pytest

from cabctl import regmap
from cabctl.paths import MAPS
from cabctl.plant.model import Plant, PlantConfig
from cabctl.plant.server import METER_SF, PCS_SF, PlantIO, _by_role
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


def is_rw(p):
    return p.get("access") == "rw"


def data_points(regs):
    """Points the firmware reads and decodes (not scale factors, not rw)."""
    sfs = {p["sf"] for p in regs.points.values() if "sf" in p}
    return [n for n, p in regs.points.items() if n not in sfs and not is_rw(p)]


def write_points(regs):
    return [n for n, p in regs.points.items() if is_rw(p)]


def toward_zero(v, e):
    """What the firmware sends for v at a fixed exp e > 0, back in firmware units."""
    if e <= 0:
        return v
    q = abs(v) // 10 ** e * 10 ** e
    return q if v >= 0 else -q


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
    """The firmware reads exactly the readable points' span, and the host answers all of it."""
    regs, dev = pair(name)
    spans = {t.fc: list(range(t.addr, t.addr + t.count)) for t in dev.reads}
    want = {}
    for fc in (3, 4):
        ps = [p for p in regs.points.values() if p["fc"] == fc and not is_rw(p)]
        if ps:
            want[fc] = list(range(min(p["addr"] for p in ps),
                                  max(p["addr"] + regmap.WIDTH[p["type"]] for p in ps)))
    assert spans == want
    for fc, addrs in spans.items():
        assert set(addrs) <= set(regs.addresses(fc)) <= set(regs.words)
    for n in write_points(regs):                # rw registers are not read
        p = regs.points[n]
        assert all(not t.addr <= p["addr"] < t.addr + t.count for t in dev.reads), n
    if name == "pcs_sunspec":
        assert [(t.addr, t.count) for t in dev.reads] == [(40110, 10)]


@pytest.mark.parametrize("name", NAMES)
def test_roles_agree(name):
    """The firmware's role() and the plant's role table name the same points."""
    regs, dev = pair(name)
    by_role = _by_role(regs)
    assert by_role, name
    for role, point in by_role.items():
        assert dev.names[dev.role(role)] == point, role
    assert sorted(r for r in dev.roles if r) == sorted(by_role)


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
    ("pcs_vendor", "P_act", range(-3_276_700, 3_276_701, 9_973), 100),         # int16 x 100 W
    ("pcs_vendor", "SOC", range(0, 10001), 10),                                # 0.1 %
    ("pcs_vendor", "P_cha_max", range(0, 6_553_501, 9_973), 100),              # uint16 x 100 W
    ("pcs_vendor", "P_dis_max", range(0, 6_553_501, 9_973), 100),
    ("pcs_vendor", "Fault", range(0, 65536, 7), 0),
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
    ("pcs_vendor", "P_act", 4 * MW, 32767 * 100),               # int16 x 100 W: 3.2767 MW
    ("pcs_vendor", "P_act", -4 * MW, -32767 * 100),             # never 0x8000 from the host
    ("pcs_vendor", "P_cha_max", 10 * MW, 65535 * 100),          # the plant's 10 MW default
    ("pcs_vendor", "P_dis_max", -1 * MW, 0),
    ("pcs_vendor", "SOC", 10 ** 6, 65535 * 10),
    ("pcs_vendor", "Fault", -1, 0),
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
    """Firmware set() -> fc 16 request words of its cluster -> host Registers.get()."""
    rng = random.Random(name)
    regs, dev = pair(name)
    writable = write_points(regs)
    if not writable:
        assert dev.writes == [] and dev.always == []
        return
    written = {}
    for point in writable:
        i = dev.index(point)
        t = dev.writes[dev._wc[i]]
        e = regs.exponent(point)
        for v in values_for(regs, point, rng):
            dev.set(i, v)
            t._seal()
            assert crc(t.req, 0, len(t.req)) == 0
            assert (t.unit, t.fc, (t.req[2] << 8) | t.req[3], (t.req[4] << 8) | t.req[5]) == \
                (1, 16, t.addr, t.count)
            for k in range(t.count):
                regs.words[t.addr + k] = t.reg_out(k)
            want = toward_zero(v, e)
            assert abs(want - v) < 10 ** max(e, 0)
            assert regs.get(point) == want, f"{name}.{point} = {v} (exp {e})"
            written[point] = want
            for other, w in written.items():      # the cluster's other points keep theirs
                if dev.writes[dev._wc[dev.index(other)]] is t:
                    assert regs.get(other) == w, f"{name}.{other} after {point} = {v}"


def test_vendor_writes_reach_the_plant():
    """pcs_vendor end to end: firmware writes -> host register file -> the plant's view."""
    regs, dev = pair("pcs_vendor")
    role = _by_role(regs)
    for r, v in (("setpoint_w", -1_234_567), ("start", 1), ("stop", 0), ("revert_s", 5)):
        dev.set(dev.role(r), v)
    # Adjacent rw registers only: 652..659 are not the firmware's to write.
    assert [(t.addr, t.count) for t in dev.writes] == [(135, 1), (650, 2), (660, 1)]
    assert dev.always == [True, False, True] and dev.dirty == [True, True, True]
    before = dict(regs.words)
    for t in dev.writes:
        for k in range(t.count):
            regs.words[t.addr + k] = t.reg_out(k)
    changed = sorted(a for a in regs.words if regs.words[a] != before.get(a))
    assert set(changed) <= {135, 650, 651, 660}, changed
    assert regs.get(role["setpoint_w"]) == -1_234_500
    assert (regs.get(role["start"]), regs.get(role["stop"]), regs.get(role["revert_s"])) == (1, 0, 5)
    # and the plant's readings through the same roles
    for r, v in (("battery_w", -2_500_000), ("soc_cpct", 5550), ("charge_max_w", 3 * MW),
                 ("discharge_max_w", 2_500_000), ("alarms", 1)):
        regs.set(role[r], v)
    transfer(regs, dev)
    for r, v in (("battery_w", -2_500_000), ("soc_cpct", 5550), ("charge_max_w", 3 * MW),
                 ("discharge_max_w", 2_500_000), ("alarms", 1)):
        assert dev.value(dev.role(r)) == v, r


@pytest.mark.parametrize("name", NAMES)
def test_writes_cover_only_mapped_registers(name):
    """Every register an fc-16 write carries is a rw point's register in the host map."""
    regs, dev = pair(name)
    rw = {}
    for n in write_points(regs):
        p = regs.points[n]
        for k in range(regmap.WIDTH[p["type"]]):
            rw[p["addr"] + k] = n
    written = [t.addr + k for t in dev.writes for k in range(t.count)]
    assert sorted(written) == sorted(rw), (name, [(t.addr, t.count) for t in dev.writes])
    for a, b in zip(dev.writes, dev.writes[1:]):     # clusters are maximal runs
        assert b.addr > a.addr + a.count, (name, a.addr, b.addr)


def _int_write_points(regs):
    return [n for n in write_points(regs) if regs.points[n]["type"] != "float32"]


@pytest.mark.parametrize("name", [n for n in NAMES if _int_write_points(pair(n)[0])])
def test_writes_clamp_out_of_range(name):
    """Firmware set() of values the register cannot carry -> the host reads the
    nearest end of the range (same sign, never 0x8000 in an int16), not a wrap."""
    regs, dev = pair(name)
    for point in _int_write_points(regs):
        i = dev.index(point)
        t = dev.writes[dev._wc[i]]
        e = max(regs.exponent(point), 0)
        typ = regs.points[point]["type"]
        lo, hi = regmap.RANGE[typ]
        lo = max(lo, -LIMIT)                  # the firmware stays inside its 2**29 limit
        hi = min(hi, LIMIT - 1)
        for v, want in ((hi * 10 ** e + 10 ** e, hi), ((hi + 12345) * 10 ** e, hi),
                        (LIMIT * 10 ** e, hi), (1 << 40, hi), (-(1 << 40), lo),
                        ((lo - 1) * 10 ** e, lo), ((lo - 12345) * 10 ** e, lo),
                        (-LIMIT * 10 ** e - 1, lo), (hi * 10 ** e, hi), (lo * 10 ** e, lo)):
            dev.set(i, v)
            for k in range(t.count):
                regs.words[t.addr + k] = t.reg_out(k)
            assert regs._load(point) == want, f"{name}.{point} = {v}: {regs._load(point)} != {want}"
            assert regs.get(point) == want * 10 ** e
            if typ == "int16":
                assert t.reg_out(dev._reg[i]) != 0x8000, (point, v)


def test_vendor_setpoint_saturates_at_the_plant():
    """A 4 MW request through pcs_vendor's int16 x 100 W register: the plant
    sees 3.2767 MW the same way round (wrapped, a discharge became a charge)."""
    plant = Plant(PlantConfig(), lambda t: 1e6)
    io = PlantIO(plant, pcs_map="pcs_vendor", pcs_unit=1)
    dev = dm.Device(None, 1, dm.load_map(str(MAPS / "pcs_vendor.json")))
    for v, want in ((4 * MW, 3_276_700), (-4 * MW, -3_276_700), (-3_276_800, -3_276_700),
                    (10 * MW, 3_276_700), (-2_500_099, -2_500_000)):
        dev.set(dev.role("setpoint_w"), v)
        for t in dev.writes:
            for k in range(t.count):
                io.pcs.words[t.addr + k] = t.reg_out(k)
        io.apply(bytes((1, 16)))
        assert plant.setpoint_w == want, v


@pytest.mark.parametrize("name", ["pcs_sunspec", "pcs_vendor"])
def test_plant_io_and_firmware_agree(name):
    """The plant's PlantIO (by role, with PCS_SF) against the firmware Device on one map."""
    plant = Plant(PlantConfig(), lambda t: 1e6)
    io = PlantIO(plant, pcs_map=name, pcs_unit=1)
    dev = dm.Device(None, 1, dm.load_map(str(MAPS / f"{name}.json")))
    io.refresh()
    transfer(io.pcs, dev)
    cha, dis = plant.limits()
    top = float("inf") if name == "pcs_sunspec" else 65535 * 100   # uint16 x 100 W saturates
    assert dev.value(dev.role("battery_w")) == 0
    assert dev.value(dev.role("soc_cpct")) == plant.soc_cpct
    assert dev.value(dev.role("charge_max_w")) == min(cha, top)
    assert dev.value(dev.role("discharge_max_w")) == min(dis, top)
    assert dev.value(dev.role("alarms")) == 0
    plant.faulted = True
    io.refresh()
    transfer(io.pcs, dev)
    assert dev.value(dev.role("alarms")) & 1

    def send(**roles):
        for r, v in roles.items():
            dev.set(dev.role(r), v)
        for t in dev.writes:
            for k in range(t.count):
                io.pcs.words[t.addr + k] = t.reg_out(k)
        io.apply(bytes((1, 16)))

    cmd = {"enable": 1} if name == "pcs_sunspec" else {"start": 1, "stop": 0}
    hb = {"heartbeat": 41} if name == "pcs_sunspec" else {}
    send(setpoint_w=2_000_049, revert_s=7, **cmd, **hb)
    step = 1 if name == "pcs_sunspec" else 100
    assert plant.setpoint_w == 2_000_049 // step * step
    assert plant.enabled and plant.revert_s == 7
    if hb:
        assert plant.heartbeat == 41
    send(setpoint_w=-3_000_000)
    assert plant.setpoint_w == -3_000_000 and plant.enabled
    cmd = {"enable": 0} if name == "pcs_sunspec" else {"start": 0, "stop": 1}
    send(**cmd)
    assert not plant.enabled
