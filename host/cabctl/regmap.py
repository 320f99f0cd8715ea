"""Device register maps (firmware/maps/*.json) on the emulator side.

The firmware decodes these maps; the plant encodes physical values into the
same registers, so both sides always agree on addresses, types and scales.
"""
import json
import struct

from .paths import MAPS

WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
FMT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}
# int16 stops at -32767: 0x8000 is SunSpec's "not implemented" marker.
RANGE = {"int16": (-2**15 + 1, 2**15 - 1), "uint16": (0, 2**16 - 1),
         "int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1)}


def load(name):
    path = MAPS / f"{name}.json"
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in MAPS.glob("*.json")))
        raise ValueError(f"no register map {name!r} (known: {known})") from None
    return m


class Registers:
    """A device's register file: values in firmware units in, 16-bit words out."""

    def __init__(self, mapdef, sf=None):
        self.map = mapdef
        self.points = mapdef["points"]
        # Like a real device, every address between a function's first and last
        # point answers (gaps read as 0), so a master can read the span at once.
        self.words = {a: 0 for fc in (3, 4) for a in self.addresses(fc)}
        # Scale-factor registers hold fixed exponents chosen by the device.
        self.sf = dict(sf or {})
        for name, value in self.sf.items():
            self._store(name, value)

    def addresses(self, fc):
        pts = [p for p in self.points.values() if p["fc"] == fc]
        if not pts:
            return []
        return list(range(min(p["addr"] for p in pts),
                          max(p["addr"] + WIDTH[p["type"]] for p in pts)))

    def exponent(self, name):
        p = self.points[name]
        return p.get("exp", 0) + (self.sf.get(p["sf"], 0) if "sf" in p else 0)

    def set(self, name, value):
        """Store a value given in firmware units (W, 0.01 %, ...)."""
        e = self.exponent(name)
        p = self.points[name]
        if p["type"] == "float32":
            self._store(name, value / 10 ** e)
        else:
            self._store(name, round(value / 10 ** e))

    def get(self, name):
        """Read a value back in firmware units (for writable points)."""
        p = self.points[name]
        raw = self._load(name)
        return raw * 10 ** self.exponent(name)

    def _store(self, name, raw):
        p = self.points[name]
        if p["type"] != "float32":
            lo, hi = RANGE[p["type"]]
            raw = min(max(int(raw), lo), hi)      # a real device saturates
        b = struct.pack(FMT[p["type"]], raw)
        for i in range(0, len(b), 2):
            self.words[p["addr"] + i // 2] = (b[i] << 8) | b[i + 1]

    def _load(self, name):
        p = self.points[name]
        n = WIDTH[p["type"]]
        b = b"".join(struct.pack(">H", self.words[p["addr"] + i]) for i in range(n))
        return struct.unpack(FMT[p["type"]], b)[0]
