"""Telemetry frames from the firmware: COBS split on 0x00, CRC-16, CBOR.

The schema (firmware/telemetry.json) is the one the firmware builds its frame
from. A stream decoder resynchronises on the next 0x00 after garbage or a
partial frame, and counts what it could not use.
"""
import json
from dataclasses import dataclass, field

import cbor2

from .paths import TELEMETRY_SCHEMA

SEQ_MOD = 1 << 30          # the firmware's sequence counter wraps here


def load_schema(path=TELEMETRY_SCHEMA):
    s = json.loads(open(path).read())
    s["by_key"] = {f["key"]: f["name"] for f in s["fields"]}
    s["payload_len"] = payload_len(s)
    return s


def payload_len(schema):
    """COBS payload length of a frame (the firmware's layout is fixed)."""
    n = len(schema["fields"])
    cbor = (1 if n < 24 else 2) + sum((1 if f["key"] < 24 else 2) + 5 for f in schema["fields"])
    return cbor + 2 + 1                     # + CRC + COBS overhead byte


def crc16(data: bytes) -> int:
    c = 0xFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return c


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0 or i + code > len(data):
            raise ValueError(f"bad COBS code {code} at byte {i} of {len(data)}")
        out += data[i + 1:i + code]
        i += code
        if code < 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


class FrameError(ValueError):
    pass


def decode_frame(payload: bytes, schema) -> dict:
    """One COBS payload (without the 0x00) -> {name: value}. Raises FrameError."""
    try:
        raw = cobs_decode(payload)
    except ValueError as e:
        raise FrameError(str(e)) from None
    if len(raw) < 3:
        raise FrameError(f"frame of {len(raw)} bytes is too short")
    body, got = raw[:-2], raw[-2] | (raw[-1] << 8)
    if crc16(body) != got:
        raise FrameError(f"CRC mismatch: computed {crc16(body):#06x}, frame says {got:#06x}")
    try:
        m = cbor2.loads(body)
    except Exception as e:              # cbor2 raises several types
        raise FrameError(f"not CBOR: {e}") from None
    if not isinstance(m, dict) or not isinstance(m.get(0), int):
        raise FrameError("CBOR is not a map with an integer version at key 0")
    if m[0] > schema["version"]:
        raise FrameError(f"frame version {m[0]} is newer than this host's schema "
                         f"version {schema['version']}: update cabctl")
    if not all(isinstance(k, int) for k in m):
        raise FrameError("frame holds a non-integer key")
    ev = schema.get("events", {})
    if ev.get("key") in m:
        return decode_event(m, schema)
    if not all(isinstance(v, int) for v in m.values()):
        raise FrameError("cycle frame holds a non-integer value")
    names = schema["by_key"]
    return {names.get(k, f"key_{k}"): v for k, v in m.items()}


def decode_event(m, schema):
    """An event frame -> {"event": name, field: value, ...}."""
    ev = schema["events"]
    code = m[ev["key"]]
    spec = ev.get(str(code))
    if not isinstance(code, int) or spec is None:
        raise FrameError(f"unknown event code {code!r}")
    names = {int(k): v for k, v in spec["fields"].items()}
    names.update({0: "version", 1: "seq", 2: "uptime_ms"})
    rec = {"event": spec["name"]}
    for k, v in m.items():
        if k != ev["key"]:
            rec[names.get(k, f"key_{k}")] = v
    if not isinstance(rec.get("seq"), int):
        raise FrameError("event without an integer seq")
    enums = schema.get("enums", {})
    for f, enum in (("from_state", "state"), ("to_state", "state"), ("cause", "cause")):
        if spec["name"] == "transition" and isinstance(rec.get(f), int) and rec[f] < len(enums.get(enum, [])):
            rec[f] = enums[enum][rec[f]]
    return rec


@dataclass
class StreamDecoder:
    """Feed bytes as they arrive; get complete frames back."""
    schema: dict = field(default_factory=load_schema)
    frames: int = 0
    lost: int = 0
    corrupt: int = 0
    newer_version: int = 0
    resets: int = 0
    last_error: str = ""
    _buf: bytearray = field(default_factory=bytearray)
    _seq: int | None = None

    def feed(self, data: bytes):
        self._buf += data
        out = []
        while True:
            end = self._buf.find(0)
            if end < 0:
                if len(self._buf) > 4096:     # no delimiter for ages: garbage
                    self.corrupt += 1
                    del self._buf[:]
                return out
            payload = bytes(self._buf[:end])
            del self._buf[:end + 1]
            if not payload:
                continue
            try:
                rec = self._decode(payload)
            except FrameError as e:
                self.last_error = str(e)
                if "newer" in str(e):
                    self.newer_version += 1
                else:
                    self.corrupt += 1
                continue
            if "seq" in rec:
                self._count(rec["seq"])
            self.frames += 1
            out.append(rec)

    def _decode(self, payload):
        try:
            return decode_frame(payload, self.schema)
        except FrameError:
            # Text or a cut frame glued in front of a whole one (boot output,
            # a reset mid-frame): the frame's length is fixed, so try its tail.
            n = self.schema["payload_len"]
            if len(payload) > n:
                try:
                    rec = decode_frame(payload[-n:], self.schema)
                except FrameError:
                    pass
                else:
                    self.corrupt += 1       # the garbage in front still counts
                    return rec
            raise

    def _count(self, seq: int):
        # The firmware counts 1, 2, ... 2**30 - 1, 0, 1, ...; after a boot it
        # starts again at 1. A step back (or a repeat) is a restart, not loss.
        prev = self._seq
        self._seq = seq
        if prev is None:
            return
        if seq == 1 and prev != 0:
            self.resets += 1
            return
        gap = (seq - prev - 1) % SEQ_MOD
        if gap >= SEQ_MOD // 2:
            self.resets += 1
        else:
            self.lost += gap

    def stats(self):
        return {"frames_received": self.frames, "frames_lost": self.lost,
                "frames_corrupt": self.corrupt, "frames_newer_version": self.newer_version,
                "device_resets": self.resets}
