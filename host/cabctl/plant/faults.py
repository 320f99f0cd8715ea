"""Fault injection for the plant: what a real RS-485 bus and its devices do wrong.

A fault is `KIND[@START[+DURATION]]` in plant seconds, e.g. `meter-timeout@5+3`
(from 5 s for 3 s), `pcs-fault@10` (from 10 s on), `bus-garbage` (always).
"""
import re
from dataclasses import dataclass

# kind: (device it affects or None for the whole bus, effect, what it models)
KINDS = {
    "meter-timeout": ("meter", "silent", "the meter does not answer"),
    "pcs-timeout": ("pcs", "silent", "the PCS does not answer"),
    "meter-crc": ("meter", "crc", "meter replies with a corrupted CRC"),
    "pcs-crc": ("pcs", "crc", "PCS replies with a corrupted CRC"),
    "meter-wrong-unit": ("meter", "wrong_unit", "another unit id answers the meter's requests"),
    "meter-exception": ("meter", "exception", "meter answers with exception 4 (device failure)"),
    "meter-late": ("meter", "late", "meter replies after the master's timeout"),
    "meter-frozen": ("meter", "frozen", "meter answers, but its value no longer changes"),
    "bus-garbage": (None, "garbage", "random bytes on the bus between frames"),
    "pcs-fault": ("pcs", "fault_bit", "PCS/BMS fault bit set; the PCS trips to 0 W"),
    "pcs-stuck": ("pcs", "stuck", "PCS answers but no longer follows its setpoint"),
    "bus-disconnect": (None, "disconnect", "cable pulled: nothing answers, then it is back"),
    "grid-outage": (None, "outage", "the utility grid is lost: the PCS islands, the meter reads 0 V"),
}
SPEC = re.compile(r"^([a-z-]+)(?:@([0-9.]+)(?:\+([0-9.]+))?)?$")
# Faults that leave the controller without a usable meter reading. A late
# reply is not among them: RTU has no transaction ids, so a reply that comes
# after its timeout may be taken as the answer to the next request - a real
# reading, one cycle old.
METER_BLIND = {"silent", "crc", "wrong_unit", "exception", "frozen", "disconnect"}


@dataclass
class Fault:
    kind: str
    start_s: float = 0.0
    duration_s: float | None = None

    @property
    def device(self):
        return KINDS[self.kind][0]

    @property
    def effect(self):
        return KINDS[self.kind][1]

    def active(self, t):
        return t >= self.start_s and (self.duration_s is None or t < self.start_s + self.duration_s)


def parse(spec):
    m = SPEC.match(spec.strip())
    if not m or m.group(1) not in KINDS:
        raise ValueError(f"fault {spec!r}: expected KIND[@START[+DURATION]] with KIND one of "
                         f"{', '.join(KINDS)}")
    return Fault(m.group(1), float(m.group(2) or 0), float(m.group(3)) if m.group(3) else None)


class Schedule:
    def __init__(self, faults=()):
        self.faults = list(faults)

    def active(self, effect, t, device=None):
        """Is a fault with this effect active now (for this device, or bus-wide)?"""
        return any(f.effect == effect and f.active(t) and (f.device in (None, device))
                   for f in self.faults)

    def meter_blind(self, t):
        """For the judge: 0 the controller can see the meter, 1 it cannot
        (no or bad replies), 2 the meter answers with a frozen value."""
        blind = [f.effect for f in self.faults
                 if f.active(t) and f.effect in METER_BLIND and f.device in (None, "meter")]
        if not blind:
            return 0
        return 2 if blind == ["frozen"] else 1
