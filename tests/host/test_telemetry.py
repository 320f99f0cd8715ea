"""Host decoder against the firmware's own frames: round trip, stream resync,
loss / reset / version accounting, fuzz."""
import random

import cbor2
import pytest

from cabctl import telemetry as ht
from cabctl.paths import TELEMETRY_SCHEMA
from cabinet import telemetry as ft          # the firmware module (tests/conftest.py)

SCHEMA = ht.load_schema()
FW_SCHEMA = ft.load_schema(str(TELEMETRY_SCHEMA))
FIELDS = FW_SCHEMA["fields"]
SEQ_WRAP = 1 << 30


def frame(seq, version=None, **values):
    """Wire bytes of one firmware frame (0x00 delimiter included)."""
    f = ft.Frame(FW_SCHEMA)
    f.put(f.index("version"), FW_SCHEMA["version"] if version is None else version)
    f.put(f.index("seq"), seq)
    for name, v in values.items():
        f.put(f.index(name), v)
    return bytes(f.seal())


def frames(*seqs):
    return b"".join(frame(s) for s in seqs)


def cobs(raw):
    dst = bytearray(len(raw) + 2)
    return bytes(dst[:ft.cobs_encode(raw, len(raw), dst)])


def wire(raw):
    """COBS-wrap arbitrary bytes with their CRC (for hand-made payloads)."""
    c = ht.crc16(raw)
    return cobs(raw + bytes((c & 0xFF, c >> 8)))


def decode(data, chunk=None):
    d = ht.StreamDecoder(schema=SCHEMA)
    if chunk is None:
        out = d.feed(data)
    else:
        out = []
        for i in range(0, len(data), chunk):
            out += d.feed(data[i:i + chunk])
    return [r["seq"] for r in out], d


def random_values(rng):
    vals = {}
    for fd in FIELDS[1:]:
        lo = 0 if fd["type"] == "uint" else -(1 << 30)
        vals[fd["name"]] = rng.choice([lo, (1 << 30) - 1, 0, rng.randint(lo, (1 << 30) - 1)])
    return vals


def test_round_trip():
    rng = random.Random(1)
    for _ in range(300):
        vals = random_values(rng)
        seq = vals.pop("seq")
        w = frame(seq, **vals)
        want = dict(vals, version=FW_SCHEMA["version"], seq=seq)
        assert w[-1] == 0 and w.count(0) == 1
        assert ht.decode_frame(w[:-1], SCHEMA) == want
        out = ht.StreamDecoder(schema=SCHEMA).feed(w)
        assert out == [want]


def test_schema_is_shared():
    assert SCHEMA["version"] == FW_SCHEMA["version"]
    assert SCHEMA["by_key"] == {fd["key"]: fd["name"] for fd in FIELDS}


def test_host_crc_matches_firmware():
    from cabinet.crc16 import crc
    for data in (b"", b"123456789", bytes(range(256))):
        assert ht.crc16(data) == crc(data, 0, len(data))


GARBAGE = b"\x13\x37\xff\x42"
NOISE = bytes(random.Random(2).randrange(1, 256) for _ in range(50))   # no zeros

# stream -> (seqs that must decode, seqs that may: a whole frame glued behind
# garbage can be recovered or dropped, corrupt count)
STREAMS = [
    (frames(1, 2, 3), [1, 2, 3], [], 0),
    (GARBAGE + b"\x00" + frames(1, 2), [1, 2], [], 1),         # joined mid-frame
    (GARBAGE + frames(1, 2, 3), [2, 3], [1], 1),                # garbage glued to frame 1
    (frame(1) + frame(2)[:30] + frames(3, 4), [1, 4], [3], 1),  # 2 cut, glued to 3
    (frame(1) + frame(2)[:30] + b"\x00" + frame(3), [1, 3], [], 1),
    (frame(1) + NOISE + b"\x00" + frames(2, 3), [1, 2, 3], [], 1),
    (frame(1) + NOISE + frames(2, 3), [1, 3], [2], 1),
    (frame(1) + b"\x00\x00\x00" + frame(2), [1, 2], [], 0),    # idle delimiters
    (frame(1) + frame(2)[:10] + bytes((frame(2)[10] ^ 0x40,)) + frame(2)[11:] + frame(3),
     [1, 3], [], 1),                                            # one byte flipped
]


@pytest.mark.parametrize("chunk", [None, 1, 7])
@pytest.mark.parametrize("i", range(len(STREAMS)))
def test_resync(i, chunk):
    data, must, may, corrupt = STREAMS[i]
    seqs, d = decode(data, chunk)
    assert seqs == sorted(seqs) and set(must) <= set(seqs) <= set(must + may), seqs
    assert d.corrupt == corrupt
    assert d.lost == seqs[-1] - seqs[0] + 1 - len(seqs)           # every gap counted
    assert d.frames == len(seqs) and d.newer_version == 0 and d.resets == 0


def test_corrupt_byte_reports_crc():
    w = bytearray(frame(5))
    w[20] ^= 0x01 if w[20] != 0x01 else 0x02
    _, d = decode(bytes(w))
    assert d.corrupt == 1 and "CRC mismatch" in d.last_error


def test_long_garbage_without_delimiter_is_dropped():
    seqs, d = decode(b"\x55" * 5000 + b"\x00" + frame(9))
    assert seqs == [9] and d.corrupt >= 1


# seqs sent -> (lost, resets)
SEQUENCES = [
    ([1, 2, 3, 4], 0, 0),
    ([1, 2, 5, 6, 10], 5, 0),
    ([SEQ_WRAP - 3, SEQ_WRAP - 1, 2], 3, 0),         # lost 2**30-2, 0 and 1 over the wrap
    ([SEQ_WRAP - 2, SEQ_WRAP - 1, 2], 2, 0),
    ([5, 6, 7, 1, 2], 0, 1),                         # device restarted at 1
    ([5, 6, 7, 1, 3], 1, 1),
    ([100, 1, 2, 200, 1], 197, 2),
]


@pytest.mark.parametrize("seqs, lost, resets", SEQUENCES)
def test_sequence_accounting(seqs, lost, resets):
    got, d = decode(frames(*seqs))
    assert got == seqs
    assert (d.lost, d.resets, d.corrupt) == (lost, resets, 0)
    assert d.stats() == {"frames_received": len(seqs), "frames_lost": lost, "frames_corrupt": 0,
                         "frames_newer_version": 0, "device_resets": resets}


def test_wrap_without_loss_is_not_a_reset():
    got, d = decode(frames(SEQ_WRAP - 2, SEQ_WRAP - 1, 0, 1, 2))
    assert got == [SEQ_WRAP - 2, SEQ_WRAP - 1, 0, 1, 2]
    assert (d.lost, d.resets) == (0, 0)


def test_reset_after_first_frame():
    got, d = decode(frames(1, 1, 2))
    assert (d.lost, d.resets) == (0, 1)


def test_newer_version_is_counted_not_decoded():
    newer = frame(2, version=FW_SCHEMA["version"] + 1, grid_w=-777)
    with pytest.raises(ht.FrameError, match="newer.*update cabctl"):
        ht.decode_frame(newer[:-1], SCHEMA)
    seqs, d = decode(frame(1) + newer + frame(3))
    assert seqs == [1, 3]
    assert (d.newer_version, d.corrupt, d.frames) == (1, 0, 2)
    assert "newer" in d.last_error
    old = frame(4, version=0)                         # older frames still decode
    assert ht.decode_frame(old[:-1], SCHEMA)["version"] == 0


# COBS payload -> message naming the offset
COBS_ERRORS = [
    (b"\x05\x11\x22", "bad COBS code 5 at byte 0 of 3"),
    (b"\x02\x11\x00\x33", "bad COBS code 0 at byte 2 of 4"),
    (b"\x02\x11\x03\x22", "bad COBS code 3 at byte 2 of 4"),
]


@pytest.mark.parametrize("data, msg", COBS_ERRORS, ids=["past-end", "zero", "past-end-2"])
def test_cobs_errors_name_the_offset(data, msg):
    with pytest.raises(ValueError, match=msg):
        ht.cobs_decode(data)
    with pytest.raises(ht.FrameError, match=msg):
        ht.decode_frame(data, SCHEMA)


def test_cobs_decode_vectors():
    for enc, raw in ((b"\x01\x01", b"\x00"), (b"\x03\x11\x22\x02\x33", b"\x11\x22\x00\x33"),
                     (b"\x02\x11\x01\x01\x01", b"\x11\x00\x00\x00")):
        assert ht.cobs_decode(enc) == raw


@pytest.mark.parametrize("payload, msg", [
    (b"\x02\x11", "too short"),
    (cobs(b"\x11\x22\x33\x12\x34")[:-1], "CRC mismatch: computed 0x7079, frame says 0x3412"),
    (wire(b"\xff\xff")[:-1], "not CBOR"),
    (wire(cbor2.dumps([1, 2]))[:-1], "integer version at key 0"),
    (wire(cbor2.dumps({1: 5}))[:-1], "integer version at key 0"),
], ids=["short", "crc", "not-cbor", "list", "no-version"])
def test_decode_frame_errors(payload, msg):
    with pytest.raises(ht.FrameError, match=msg):
        ht.decode_frame(payload, SCHEMA)


def test_fuzz_never_raises():
    rng = random.Random(12345)
    good = [frame(s) for s in range(1, 6)]
    for _ in range(500):
        parts = []
        for _ in range(rng.randint(1, 6)):
            kind = rng.random()
            if kind < 0.3:
                parts.append(rng.choice(good))
            elif kind < 0.6:
                parts.append(rng.randbytes(rng.randint(0, 300)))
            else:                                     # a real frame with bytes hit
                w = bytearray(rng.choice(good))
                for _ in range(rng.randint(1, 4)):
                    w[rng.randrange(len(w))] = rng.randrange(256)
                parts.append(bytes(w))
        data = b"".join(parts)
        d = ht.StreamDecoder(schema=SCHEMA)
        i = 0
        while i < len(data):
            n = rng.randint(1, 64)
            for rec in d.feed(data[i:i + n]):
                assert rec["version"] == SCHEMA["version"] and isinstance(rec["seq"], int)
            i += n
        assert all(isinstance(v, int) and v >= 0 for v in d.stats().values())


def test_odd_cbor_with_valid_crc_is_counted_corrupt():
    d = ht.StreamDecoder(schema=SCHEMA)
    data = wire(cbor2.dumps({0: "x"})) + frame(1) + wire(cbor2.dumps({0: 1, 1: "x"}))
    d.feed(data)
    assert d.frames == 1 and d.corrupt == 2
