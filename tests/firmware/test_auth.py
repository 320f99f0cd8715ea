# Command authentication: HMAC-SHA256 against RFC 4231, and the replay
# counter's lease (flash written once per LEASE_MS of counters, never a
# replay after a reboot). Runs on CPython and MicroPython.
import os
from cabinet import auth

DIR = '/tmp/cabinet-auth-test-%d' % (os.urandom(2)[0] * 256 + os.urandom(1)[0])
KEY = b'k' * 32


def setup():
    try:
        os.mkdir(DIR)
    except OSError:
        pass
    for f in os.listdir(DIR):
        os.remove(DIR + '/' + f)
    with open(DIR + '/key.bin', 'wb') as f:
        f.write(KEY)
    return auth.Auth(DIR + '/key.bin', DIR + '/counter.txt')


def mac(payload):
    return auth._hex(auth.hmac_sha256(KEY, payload)).encode()


def stored():
    with open(DIR + '/counter.txt') as f:
        return int(f.read())


def test_hmac_rfc4231_case_2():
    got = auth._hex(auth.hmac_sha256(b'Jefe', b'what do ya want for nothing?'))
    assert got == '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'


def test_one_flash_write_per_lease():
    a = setup()
    t0 = 1764870000000                    # the host's clock in ms
    for i in range(100):                  # a share every 0.5 s for 50 s
        c = t0 + 500 * i
        assert a.check(b'p%d' % i, c, mac(b'p%d' % i)) is None
    assert a.writes == 5, a.writes        # 50 s of counters / 10 s leases
    assert stored() >= t0 + 500 * 99 and stored() == a.leased


def test_no_replay_after_a_reboot():
    a = setup()
    t0 = 1764870000000
    assert a.check(b'x', t0, mac(b'x')) is None
    assert a.check(b'y', t0 + 3000, mac(b'y')) is None
    b = auth.Auth(DIR + '/key.bin', DIR + '/counter.txt')    # reboot
    assert 'stale' in b.check(b'y', t0 + 3000, mac(b'y'))     # the last one, replayed
    assert 'stale' in b.check(b'z', t0 + 4000, mac(b'z'))     # inside the lease: refused too
    assert b.check(b'w', t0 + auth.LEASE_MS + 1, mac(b'w')) is None


def test_bad_mac_and_old_counter_change_nothing():
    a = setup()
    t0 = 1764870000000
    assert 'bad MAC' in a.check(b'x', t0, mac(b'other'))
    assert a.last == 0 and a.writes == 0
    assert a.check(b'x', t0, mac(b'x')) is None
    assert 'stale' in a.check(b'x', t0 - 1, mac(b'x'))
    assert a.last == t0
