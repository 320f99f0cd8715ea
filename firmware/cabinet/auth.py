# Command authentication: HMAC-SHA256 over the exact payload bytes received,
# with the device's secret key (key.bin, provisioned at flash time), and a
# monotonic counter so a recorded command cannot be replayed. The host's
# counter is its clock in ms; what is stored (atomically) is a lease ahead of
# the last accepted one, so a coordinator's command every 0.5 s costs one
# flash write per LEASE_MS, not one per command, and a reboot never reopens
# an old command (at worst, commands signed in the LEASE_MS after the last
# write are refused after a reboot, as stale). Runs only when a command
# arrives; it may allocate.
import hashlib
import os

BLOCK = 64
LEASE_MS = 10000      # counter range stored ahead: flash writes at most every 10 s


def hmac_sha256(key, msg):
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(BLOCK - len(key))
    inner = hashlib.sha256(bytes(k ^ 0x36 for k in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(k ^ 0x5C for k in key))
    outer.update(inner.digest())
    return outer.digest()


def _hex(b):
    return ''.join('%02x' % x for x in b)


def _same(a, b):
    # Bytes, compared without an early exit, so timing says nothing about the
    # MAC (and no str indexing: MicroPython interns each 1-character ASCII str).
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0


class Auth:
    def __init__(self, key_path='key.bin', counter_path='counter.txt'):
        self.counter_path = counter_path
        try:
            with open(key_path, 'rb') as f:
                self.key = f.read()
        except OSError:
            self.key = None               # nothing that changes behaviour is accepted
        try:
            with open(counter_path) as f:
                self.last = int(f.read().strip())
        except (OSError, ValueError):
            self.last = 0
        self.leased = self.last           # stored: no counter up to this is accepted after a boot
        self.writes = 0

    def check(self, payload, counter, mac_hex):
        """None if accepted (and the counter advanced), else the reason; mac_hex is bytes."""
        if self.key is None:
            return 'no device key provisioned'
        if type(counter) is not int or counter <= self.last:
            return 'replayed or stale counter %r (last accepted %d)' % (counter, self.last)
        if not _same(mac_hex, _hex(hmac_sha256(self.key, payload)).encode()):
            return 'bad MAC (wrong key or altered command)'
        if counter > self.leased:
            lease = counter + LEASE_MS
            tmp = self.counter_path + '.tmp'
            with open(tmp, 'w') as f:
                f.write('%d\n' % lease)
            os.rename(tmp, self.counter_path)
            self.leased = lease
            self.writes += 1
        self.last = counter
        return None
