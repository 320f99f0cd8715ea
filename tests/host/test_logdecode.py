"""The logger's fast decoder gives exactly what StreamDecoder gives: frames, counters, errors."""
import random

import cbor2
import pytest

from cabctl import logdecode
from cabctl import telemetry as ht
from cabctl.logdecode import FastDecoder
from cabctl.paths import TELEMETRY_SCHEMA
from cabinet import telemetry as ft          # the firmware module (tests/conftest.py)

SCHEMA = ht.load_schema()
FW_SCHEMA = ft.load_schema(str(TELEMETRY_SCHEMA))
FIELDS = FW_SCHEMA["fields"]
V = FW_SCHEMA["version"]


def frame(seq, version=V, **values):
    f = ft.Frame(FW_SCHEMA)
    f.put(f.index("version"), version)
    f.put(f.index("seq"), seq)
    for name, v in values.items():
        f.put(f.index(name), v)
    return bytes(f.seal())


def wire(raw):
    c = ht.crc16(raw)
    raw = raw + bytes((c & 0xFF, c >> 8))
    dst = bytearray(len(raw) + 2)
    return bytes(dst[:ft.cobs_encode(raw, len(raw), dst)])


def random_frame(rng, seq):
    vals = {}
    for fd in FIELDS[2:]:
        lo = 0 if fd["type"] == "uint" else -(1 << 30)
        vals[fd["name"]] = rng.choice([lo, (1 << 30) - 1, 0, -1 if lo else 1,
                                       rng.randint(lo, (1 << 30) - 1)])
    return frame(seq, **vals)


def both(data, chunk):
    out = []
    for cls in (ht.StreamDecoder, FastDecoder):
        d = cls(schema=SCHEMA)
        recs = []
        for i in range(0, len(data), chunk):
            recs += d.feed(data[i:i + chunk])
        out.append((recs, d.stats(), d.last_error))
    return out


@pytest.fixture(params=["c", "python"])
def crc_impl(request, monkeypatch):
    """Run with crcmod's C CRC and with the pure-Python table."""
    if request.param == "python":
        monkeypatch.setattr(logdecode, "_C_CRC", None)
        logdecode._tables()
    elif logdecode._C_CRC is None:
        pytest.skip("crcmod's C extension is not installed")
    return request.param


def test_crc16_fast_matches(crc_impl):
    rng = random.Random(3)
    for n in (0, 1, 2, 3, 9, 124, 125, 300):
        data = rng.randbytes(n)
        assert logdecode.crc16_fast(data) == ht.crc16(data)


def test_same_frames_as_stream_decoder(crc_impl):
    rng = random.Random(7)
    data = b"".join(random_frame(rng, s) for s in range(1, 400))
    (a, sa, _), (b, sb, _) = both(data, 4096)
    assert a == b and len(a) == 399 and sa == sb
    assert any(v < 0 for r in b for v in r.values())          # negatives went the fast way too


def test_fast_path_is_taken():
    d = FastDecoder(schema=SCHEMA)
    assert d._fast
    w = frame(5, grid_w=-123, battery_w=456)
    rec = d._decode_fixed(w[:-1])
    assert rec == ht.decode_frame(w[:-1], SCHEMA)
    assert list(rec) == [f["name"] for f in FIELDS]


def test_fuzz_same_as_stream_decoder(crc_impl):
    rng = random.Random(99)
    good = [random_frame(rng, s) for s in range(1, 8)]
    others = [frame(1, version=0), frame(2, version=V + 1), wire(cbor2.dumps({0: V, 1: "x"})),
              wire(cbor2.dumps({0: V, 1: 2}))]
    for _ in range(300):
        parts = []
        for _ in range(rng.randint(1, 8)):
            kind = rng.random()
            if kind < 0.4:
                parts.append(rng.choice(good))
            elif kind < 0.5:
                parts.append(rng.choice(others))
            elif kind < 0.7:
                parts.append(rng.randbytes(rng.randint(0, 200)))
            else:
                w = bytearray(rng.choice(good))
                for _ in range(rng.randint(1, 3)):
                    w[rng.randrange(len(w))] = rng.randrange(256)
                parts.append(bytes(w))
        data = b"".join(parts)
        chunk = rng.randint(1, 300)
        (a, sa, ea), (b, sb, eb) = both(data, chunk)
        assert a == b and sa == sb and ea == eb


def test_layout_bytes_are_checked():
    """A frame of the right length, CRC and version, but another key or major type, goes the slow way."""
    d = FastDecoder(schema=SCHEMA)
    body = bytearray(ft.Frame(FW_SCHEMA).buf[:-2])
    body[2 + 6] = 0x19                                   # seq's value: a 2-byte CBOR int header
    bad = wire(bytes(body))
    assert d._decode_fixed(bad) is None
    body = bytearray(ft.Frame(FW_SCHEMA).buf[:-2])
    body[1 + 6] = 30                                     # key 1 -> 30
    assert d._decode_fixed(wire(bytes(body))) is None
