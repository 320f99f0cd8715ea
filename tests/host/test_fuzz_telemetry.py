"""Fuzz: the COBS/CBOR telemetry decoders (StreamDecoder, FastDecoder).

Arbitrary bytes and structured mutations of real firmware streams, in any
chunking: the decoders never raise and never hang; whatever they return is a
frame the firmware really sent (nothing invented from garbage), untouched
frames always come through, and everything else is counted (corrupt, lost,
resets). The fast decoder must agree with the reference decoder exactly,
records and counters alike.
"""
import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cabctl import telemetry as ht
from cabctl.logdecode import FastDecoder
from cabctl.paths import TELEMETRY_SCHEMA
from cabinet import events
from cabinet import telemetry as ft          # the firmware module (tests/conftest.py)

SCHEMA = ht.load_schema()
FW_SCHEMA = ft.load_schema(str(TELEMETRY_SCHEMA))
FIELDS = FW_SCHEMA["fields"]
# CI-sized by default; FUZZ_EXAMPLES=N (what `make fuzz` sets) for a long run.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 100)), deadline=1000,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def cycle_frame(seq, values):
    f = ft.Frame(FW_SCHEMA)
    f.put(f.index("version"), FW_SCHEMA["version"])
    f.put(f.index("seq"), seq)
    for name, v in values.items():
        f.put(f.index(name), v)
    return bytes(f.seal())


def event_frame(seq, code, text):
    return bytes(events.frame({0: FW_SCHEMA["version"], 1: seq, 2: 1234,
                               events.K_EVENT: code, 41: 7, 44: text}))


field_value = st.integers(min_value=-(1 << 30), max_value=(1 << 30) - 1)


@st.composite
def streams(draw):
    """A real firmware stream: cycle frames with random values, some events."""
    n = draw(st.integers(min_value=1, max_value=12))
    seq0 = draw(st.integers(min_value=1, max_value=(1 << 30) - 20))
    out = []
    for i in range(n):
        if draw(st.integers(0, 9)) == 0:
            code = draw(st.sampled_from([events.BOOT, events.CONFIG_CHANGED,
                                         events.COMMAND_RESULT]))
            out.append(event_frame(seq0 + i, code, draw(st.text(max_size=300))))
        else:
            vals = {}
            for fd in FIELDS[2:]:
                if draw(st.booleans()):
                    v = draw(field_value)
                    vals[fd["name"]] = abs(v) if fd["type"] == "uint" else v
            out.append(cycle_frame(seq0 + i, vals))
    return out


def run_both(data, cuts):
    """Feed data to both decoders in the same chunks; return (records, stats) of each."""
    ref, fast = ht.StreamDecoder(schema=SCHEMA), FastDecoder(SCHEMA)
    got_ref, got_fast = [], []
    prev = 0
    for c in sorted(set(cuts)) + [len(data)]:
        c = min(max(c, prev), len(data))
        got_ref += ref.feed(data[prev:c])
        got_fast += fast.feed(data[prev:c])
        prev = c
    return (got_ref, ref.stats(), ref), (got_fast, fast.stats(), fast)


def reference_records(frames):
    d = ht.StreamDecoder(schema=SCHEMA)
    return [d.feed(f)[0] for f in frames]


@FUZZ
@given(st.binary(max_size=4000), st.lists(st.integers(0, 4000), max_size=8))
def test_arbitrary_bytes(data, cuts):
    (r1, s1, d1), (r2, s2, _) = run_both(data, cuts)
    assert r1 == r2 and s1 == s2
    for rec in r1:
        assert isinstance(rec, dict) and ("seq" in rec)
    assert all(v >= 0 for v in s1.values())


@FUZZ
@given(streams(), st.lists(st.integers(0, 5000), max_size=6))
def test_intact_streams_decode_exactly(frames, cuts):
    data = b"".join(frames)
    (r1, s1, _), (r2, s2, _) = run_both(data, cuts)
    assert r1 == r2 == reference_records(frames)
    assert s1 == s2
    assert s1["frames_received"] == len(frames)
    assert s1["frames_lost"] == s1["frames_corrupt"] == s1["device_resets"] == 0


MUTATIONS = ("flip", "delete", "insert", "truncate", "duplicate", "zero", "splice_garbage",
             "drop_delimiter", "swap")


@st.composite
def mutated(draw):
    frames = draw(streams())
    data = bytearray(b"".join(frames))
    touched = set()
    bounds, at = [], 0
    for f in frames:
        bounds.append((at, at + len(f)))
        at += len(f)

    def frame_of(pos):
        for i, (a, b) in enumerate(bounds):
            if a <= pos < b:
                return i
        return len(frames) - 1

    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(MUTATIONS))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        i = frame_of(pos)
        touched.update({i, max(0, i - 1), min(len(frames) - 1, i + 1)})
        if kind == "flip":
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 40))]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=40))
        elif kind == "truncate":
            del data[pos:]
            touched.update(range(i, len(frames)))
        elif kind == "duplicate":
            a, b = bounds[i]
            data[pos:pos] = bytes(frames[i])
        elif kind == "zero":
            data[pos] = 0
        elif kind == "splice_garbage":
            data[pos:pos] = bytes(random.Random(pos).randrange(256) for _ in range(300))
        elif kind == "drop_delimiter":
            a, b = bounds[i]
            if b - 1 < len(data) and data[b - 1] == 0:
                del data[b - 1]
        elif kind == "swap":
            j = draw(st.integers(0, len(data) - 1))
            data[pos], data[j] = data[j], data[pos]
            touched.add(frame_of(j))
        # After a length change the old bounds are stale: everything after is suspect.
        if kind in ("delete", "insert", "duplicate", "splice_garbage", "drop_delimiter"):
            touched.update(range(i, len(frames)))
    return frames, bytes(data), touched


@FUZZ
@given(mutated(), st.lists(st.integers(0, 5000), max_size=6))
def test_mutated_streams_never_invent_frames(case, cuts):
    frames, data, touched = case
    (r1, s1, _), (r2, s2, _) = run_both(data, cuts)
    assert r1 == r2 and s1 == s2
    originals = reference_records(frames)
    # Nothing invented: every record is one the firmware sent (a CRC-16 collision
    # of a mutated frame would be the one exception: 1 in 65,536 per frame).
    for rec in r1:
        assert rec in originals, rec
    # Frames before the first touched one come through untouched.
    first = min(touched) if touched else len(frames)
    assert r1[:first] == originals[:first]
    assert all(v >= 0 for v in s1.values())


@settings(max_examples=60, deadline=1000, database=None)
@given(st.binary(min_size=1, max_size=300).filter(lambda b: 0 not in b))
def test_single_payload_decode_is_total(payload):
    # decode_frame on any delimiter-free payload: a dict or a FrameError, nothing else.
    for dec in (ht.StreamDecoder(schema=SCHEMA), FastDecoder(SCHEMA)):
        try:
            rec = dec._decode(payload)
        except ht.FrameError as e:
            assert str(e)
        else:
            assert isinstance(rec, dict)


def test_fixed_length_payload_without_delimiters_is_bounded():
    # The fast path walks COBS codes in a frame-sized payload; a code of 0 can
    # never reach it (0 is the delimiter), and any other code makes progress.
    n = SCHEMA["payload_len"]
    rng = random.Random(12)
    dec = FastDecoder(SCHEMA)
    for _ in range(2000):
        payload = bytes(rng.randrange(1, 256) for _ in range(n))
        dec.feed(payload + b"\x00")
    assert dec.frames + dec.corrupt == 2000
