# Event frames: state transitions, boot, config changes, command results.
#
# They share the cycle frames' sequence counter, CRC and COBS framing, and
# carry key 40 (the event code) so the host tells them apart. Transitions and
# site changes happen inside the control loop, so their frames have a fixed
# layout patched in place (no allocation); the rarer events may carry text and data and are
# encoded as they come (they allocate; they are not the steady state).
from cabinet.crc16 import crc

TRANSITION = 1
BOOT = 2
CONFIG_CHANGED = 3
COMMAND_RESULT = 4
SITE = 5                  # outage / shed / genset / curtail flags changed
SHARE_LAPSED = 6          # the coordinator's fleet shares lapsed (cabinet/fleet.py)

K_EVENT = 40


def _head(out, major, n):
    if n < 24:
        out.append((major << 5) | n)
    elif n < 256:
        out.append((major << 5) | 24)
        out.append(n)
    elif n < 65536:
        out.append((major << 5) | 25)
        out.append(n >> 8)
        out.append(n & 0xFF)
    else:
        out.append((major << 5) | 26)
        for s in (24, 16, 8, 0):
            out.append((n >> s) & 0xFF)


def cbor(out, v):
    """Append the CBOR of v (int, str, bool, None, list, dict) to bytearray out."""
    if v is True or v is False:
        out.append(0xF5 if v else 0xF4)
    elif v is None:
        out.append(0xF6)
    elif isinstance(v, int):
        if v >= 0:
            _head(out, 0, v)
        else:
            _head(out, 1, -1 - v)
    elif isinstance(v, str):
        b = v.encode()
        _head(out, 3, len(b))
        out.extend(b)
    elif isinstance(v, (list, tuple)):
        _head(out, 4, len(v))
        for x in v:
            cbor(out, x)
    elif isinstance(v, dict):
        _head(out, 5, len(v))
        for k in v:
            cbor(out, k)
            cbor(out, v[k])
    else:
        raise TypeError('cannot encode %r' % (v,))


def frame(pairs):
    """COBS(CBOR map + CRC) + 0x00 for a dict with int keys, of any length."""
    body = bytearray()
    cbor(body, pairs)
    c = crc(body, 0, len(body))
    body.append(c & 0xFF)
    body.append(c >> 8)
    out = bytearray(1)                   # the first code byte, patched below
    at = 0
    code = 1
    for b in body:
        if b:
            out.append(b)
            code += 1
        if not b or code == 0xFF:        # a zero, or a full 254-byte block
            out[at] = code
            at = len(out)
            out.append(0)
            code = 1
    out[at] = code
    out.append(0)
    return out


def fixed_schema(version, names):
    """The fixed layout of an event sent from inside the loop (patched in
    place): version, seq, uptime_ms, event code, then `names` at keys 41...
    (field indexes 4, 5, ...)."""
    names = ('version', 'seq', 'uptime_ms', 'event') + tuple(names)
    keys = (0, 1, 2, K_EVENT) + tuple(range(41, 41 + len(names) - 4))
    return {'version': version,
            'fields': [{'key': k, 'name': n} for k, n in zip(keys, names)]}


def transition_schema(version):
    return fixed_schema(version, ('from_state', 'to_state', 'cause'))


def site_schema(version):
    return fixed_schema(version, ('site_flags', 'changed', 'soc_cpct'))
