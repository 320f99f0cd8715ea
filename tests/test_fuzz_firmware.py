"""Fuzz on the device side: the MicroPython unix port runs the firmware's own
Modbus master and command parser against seeded random and mutated input.

- Modbus RTU master: random bytes and mutated valid responses (wrong lengths,
  CRCs, unit ids, function codes, byte counts, exception codes, truncated and
  over-long frames) into Master._check (the response check run() applies),
  with the heap locked for the whole loop: no exception, no allocation, and
  OK only for a frame that is exactly a valid reply. A smaller run goes
  through Master.run() with a fake bus, also heap-locked.
- Command parser: random bytes, random JSON objects, signed lines with
  random config values, mutated signed lines (payload, MAC), replays, stale
  counters, oversized lines into Commands.poll()/handle(): one reply per
  line, nothing applied that should not be, rejects counted, the heap back
  to where it was after a collection.

Seeded and repeatable. CI-sized by default; FUZZ_CASES=100000 (what
`make fuzz` sets) for the full count.
"""
import json
import os
import re

import pytest

from mpy import run

CASES = int(os.environ.get("FUZZ_CASES", 0))
MODBUS_CASES = CASES or 30_000
RUN_CASES = min(CASES, 5000) if CASES else 300
CMD_CASES = CASES or 1_500
SEED = int(os.environ.get("FUZZ_SEED", 20261128))

SCRIPT = r'''
import sys, gc, json, os, micropython
from cabinet import modbus, commands, config, dispatch, events
from cabinet.crc16 import crc
from cabinet.auth import Auth, hmac_sha256, _hex

MODE = sys.argv[1]
N = int(sys.argv[2])
SEED = int(sys.argv[3])
R = [SEED & 0x3FFFFFFF or 1]


def rnd():
    # xorshift, kept below 2**30 (a small int everywhere), no allocation
    x = R[0]
    x ^= (x << 13) & 0x3FFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0x3FFFFFFF
    R[0] = x
    return x


def seal(b, n):
    c = crc(b, 0, n)
    b[n] = c & 0xFF
    b[n + 1] = c >> 8


# ---------------------------------------------------------------- Modbus
KINDS = 11
# per kind: cases, OK results; then result code histogram; then violations
ST = [0] * (2 * KINDS + 6 + 5)
V_OK_INVALID, V_VALID_REJECTED, V_EXC_CODE, V_EXC_RESULT = 2 * KINDS + 6, 2 * KINDS + 7, 2 * KINDS + 8, 2 * KINDS + 9
V_ECHO = 2 * KINDS + 10          # fc 6/16: a well-formed reply to another write accepted


def make_txns():
    out = []
    for unit, fc, addr, count in ((1, 3, 40000, 2), (2, 4, 52, 6), (2, 6, 135, 1), (2, 16, 700, 3),
                                  (247, 3, 0, 125)):
        t = modbus.Txn(unit, fc, addr, count)
        good = bytearray(len(t.resp))
        if fc <= 4:
            good[0] = unit
            good[1] = fc
            good[2] = 2 * count
            for i in range(3, len(good) - 2):
                good[i] = (i * 37) & 0xFF
        else:
            for i in range(6):
                good[i] = t.req[i]
        seal(good, len(good) - 2)
        out.append((t, good))
    return out


def valid_reply(t, r, n):
    # Independent of _check: 0 the frame is a well-formed reply to t, 1 it is
    # not, 2 it is a well-formed fc 6/16 reply whose echo (address, value or
    # count) belongs to another write.
    if n != len(t.resp) or crc(r, 0, n) != 0:
        return 1
    if r[0] != t.unit or r[1] != t.fc:
        return 1
    if t.fc <= 4:
        return 0 if r[2] == 2 * t.count else 1
    for i in range(2, 6):           # fc 6/16 echo address and value/count
        if r[i] != t.req[i]:
            return 2
    return 0


def modbus_case(t, good, chk, k):
    r = t.resp
    L = len(r)
    n = L
    for i in range(L):
        r[i] = good[i]
    code = 0
    if k == 0:                      # random bytes, random length
        n = rnd() % (L + 1)
        for i in range(n):
            r[i] = rnd() & 0xFF
    elif k == 1:                    # the valid reply
        pass
    elif k == 2:                    # one byte flipped
        i = rnd() % L
        r[i] ^= 1 + rnd() % 255
    elif k == 3:                    # another unit answers (valid CRC)
        r[0] = (t.unit + 1 + rnd() % 246) & 0xFF
        seal(r, L - 2)
    elif k == 4:                    # wrong function code (valid CRC)
        f = rnd() & 0x7F
        r[1] = f if f != t.fc else (f + 1) & 0x7F
        seal(r, L - 2)
    elif k == 5:                    # exception response, valid CRC
        code = 1 + rnd() % 11
        r[1] = t.fc | 0x80
        r[2] = code
        seal(r, 3)
        n = 5 + rnd() % (L - 4)     # trailing bytes of a late frame may follow
    elif k == 6:                    # exception response, broken CRC
        r[1] = t.fc | 0x80
        r[2] = 1 + rnd() % 11
        seal(r, 3)
        r[3 + rnd() % 2] ^= 1 + rnd() % 255
        n = 5
    elif k == 7:                    # truncated
        n = rnd() % L
    elif k == 8:                    # over-long: the start of a longer frame fills the buffer
        if t.fc <= 4:
            r[2] = (2 * t.count + 2 + rnd() % 8) & 0xFF
        else:
            r[2] ^= 1 + rnd() % 255
    elif k == 9:                    # wrong byte count / echo (valid CRC)
        r[2] ^= 1 + rnd() % 255
        seal(r, L - 2)
    else:                           # exception from another unit
        r[0] = (t.unit + 1) & 0xFF
        r[1] = t.fc | 0x80
        r[2] = 4
        seal(r, 3)
        n = 5
    t.exc_code = 0
    res = chk(t, r, n)
    ST[2 * k] += 1
    ST[2 * KINDS + res] += 1
    if res == 0:
        ST[2 * k + 1] += 1
        v = valid_reply(t, r, n)
        if v == 1:
            ST[V_OK_INVALID] += 1
        elif v == 2:
            ST[V_ECHO] += 1
    elif k == 1:
        ST[V_VALID_REJECTED] += 1
    if k == 5:
        if res != modbus.EXCEPTION:
            ST[V_EXC_RESULT] += 1
        elif t.exc_code != code:
            ST[V_EXC_CODE] += 1


def modbus_loop(txns, chk, n):
    m = len(txns)
    for i in range(n):
        j = i % m
        pair = txns[j]
        modbus_case(pair[0], pair[1], chk, rnd() % KINDS)


class FakeBus:
    def __init__(self):
        self.src = bytearray(300)
        self.n = 0

    def drain(self):
        pass

    def write(self, buf):
        pass

    def recv_into(self, buf, want, timeout_ms):
        n = self.n if self.n < want else want
        s = self.src
        for i in range(n):
            buf[i] = s[i]
        return n


RUNST = [0] * 8


def run_loop(master, run, bus, txns, n):
    m = len(txns)
    for i in range(n):
        pair = txns[i % m]
        t = pair[0]
        good = pair[1]
        L = len(good)
        s = bus.src
        for q in range(L):
            s[q] = good[q]
        k = rnd() % 3
        bus.n = L
        if k == 1:
            s[rnd() % L] ^= 1 + rnd() % 255
        elif k == 2:
            bus.n = rnd() % L
        res = run(t)
        RUNST[res] += 1
        if k == 0 and res != 0:
            RUNST[7] += 1


def modbus_main():
    txns = make_txns()
    m = modbus.Master(None, 20)
    chk = m._check                  # bound once: taking a bound method allocates
    modbus_loop(txns, chk, 50)      # warm-up
    for i in range(len(ST)):
        ST[i] = 0
    gc.collect()
    before = gc.mem_alloc()
    micropython.heap_lock()
    try:
        modbus_loop(txns, chk, N)
        err = None
    except Exception as e:          # MemoryError means an allocation
        err = e
    micropython.heap_unlock()
    after = gc.mem_alloc()
    bus = FakeBus()
    master = modbus.Master(bus, 20)
    run = master.run
    run_loop(master, run, bus, txns, 10)
    for i in range(len(RUNST)):
        RUNST[i] = 0
    nrun = int(sys.argv[4])
    micropython.heap_lock()
    try:
        run_loop(master, run, bus, txns, nrun)
        err2 = None
    except Exception as e:
        err2 = e
    micropython.heap_unlock()
    out = {"cases": N, "by_kind": [[ST[2 * k], ST[2 * k + 1]] for k in range(KINDS)],
           "results": {modbus.RESULTS[i]: ST[2 * KINDS + i] for i in range(6)},
           "ok_but_invalid": ST[V_OK_INVALID], "valid_rejected": ST[V_VALID_REJECTED],
           "ok_wrong_echo": ST[V_ECHO],
           "exception_not_reported": ST[V_EXC_RESULT], "exception_code_wrong": ST[V_EXC_CODE],
           "alloc_bytes": after - before, "error": None if err is None else repr(err),
           "run_cases": nrun, "run_results": {modbus.RESULTS[i]: RUNST[i] for i in range(6)},
           "run_valid_rejected": RUNST[7], "run_error": None if err2 is None else repr(err2)}
    print(json.dumps(out))


# ---------------------------------------------------------------- commands
KEY = bytes(range(32))


class Board:
    def __init__(self):
        self.rx = bytearray()
        self.out = []

    def console_readinto(self, buf):
        n = len(self.rx)
        if n > len(buf):
            n = len(buf)
        for i in range(n):
            buf[i] = self.rx[i]
        self.rx = self.rx[n:]
        return n

    def send_telemetry(self, f):
        self.out.append(bytes(f))


class Ctl:
    def __init__(self, board):
        self.board = board
        self.cfg = config.validate({})
        self.state = 1
        self.cause = 0
        self.armed = True
        self.config_source = 'file'
        self.dr_limit_w = dispatch.NO_LIMIT
        self.dr_left_ms = 0
        self.uptime_ms = 1
        self.seq = 0
        self.reboot_requested = False
        self.applied = 0
        self.replies = 0
        self.ok = 0

    def send_event(self, code, fields):
        self.seq += 1
        d = {0: 3, 1: self.seq, 2: self.uptime_ms, events.K_EVENT: code}
        d.update(fields)
        if code == events.COMMAND_RESULT:
            self.replies += 1
            if fields[42]:
                self.ok += 1
        self.board.send_telemetry(events.frame(d))
        self.board.out = []

    def apply_config(self, cfg):
        self.applied += 1
        self.cfg = cfg
        self.armed = cfg['armed']

    def set_dr_limit(self, limit_w, for_ms):
        self.applied += 1


NAMES = ('status', 'get_config', 'set_config', 'dr', 'dr_clear', 'arm', 'disarm', 'nope', '',
         'STATUS', 'reboot')
KEYS = sorted(config.SPEC)


def signed(msg):
    p = json.dumps(msg)
    return (p + ' ' + _hex(hmac_sha256(KEY, p.encode()))).encode()


def rand_value(k):
    d, lo, hi = config.SPEC[k]
    c = rnd() % 8
    if lo is not None and c < 4:
        return (lo, hi, lo - 1, hi + 1)[c]
    return (d, None, True, 'x', [], {}, 7, -7)[c]


class Fuzz:
    def __init__(self, d):
        self.board = Board()
        self.ctl = Ctl(self.board)
        self.cmds = commands.Commands(self.board, self.ctl, Auth(d + '/key.bin', d + '/counter.txt'),
                                      d + '/site.json')
        self.counter = 1000
        self.good = []              # accepted signed lines (for replays)
        self.escapes = {}
        self.expect_applied = 0
        self.lines = 0
        self.mac_shaped = 0         # kind 8 lines with a non-UTF-8 byte in the "MAC"

    def feed(self, line):
        self.board.rx = bytearray(line + b'\n')
        self.lines += 1
        for _ in range(40):
            if self.cmds.poll():
                break
        else:
            return None
        r0 = self.ctl.replies
        ok0 = self.ctl.ok
        try:
            self.cmds.handle()
        except Exception as e:
            key = '%s: %s' % (type(e).__name__, str(e)[:40])
            self.escapes[key] = self.escapes.get(key, 0) + 1
            return None
        assert self.ctl.replies == r0 + 1, 'no reply'
        return self.ctl.ok > ok0

    def case(self, k):
        c = self.cmds
        if k == 0:                  # random bytes
            n = rnd() % 120
            b = bytearray(n)
            for i in range(n):
                x = rnd() & 0xFF
                b[i] = x if x not in (10, 13) else 32
            ok = self.feed(bytes(b))
            return
        if k == 1:                  # random JSON object, no MAC, known names
            msg = {'cmd': NAMES[rnd() % len(NAMES)]}
            if rnd() & 1:
                msg['id'] = (rnd(), 'x', [1], None, -5)[rnd() % 5]
            if rnd() & 1:
                msg['args'] = {KEYS[rnd() % len(KEYS)]: 0}
            if rnd() & 1:
                msg['n'] = rnd()
            a0 = self.ctl.applied
            self.feed(json.dumps(msg).encode())
            assert self.ctl.applied == a0, 'applied without a MAC'
            return
        if k == 2:                  # signed set_config with edge values
            key = KEYS[rnd() % len(KEYS)]
            if key in ('max_cycles', 'lock_heap') or key.endswith('_map') or key.endswith('_unit'):
                key = 'cap_w'
            args = {key: rand_value(key)}
            self.counter += 1
            line = signed({'id': 1, 'cmd': 'set_config', 'n': self.counter, 'args': args})
            over = dict(self.ctl.cfg)           # (not **args: that interns the keys)
            over.update(args)
            try:
                config.validate(over)
                valid = True
            except ValueError:
                valid = False
            a0 = self.ctl.applied
            ok = self.feed(line)
            if ok is None:
                return
            assert ok == valid, (args, ok)
            assert self.ctl.applied == a0 + (1 if valid else 0)
            if ok:
                self.good.append(line)
                if len(self.good) > 4:
                    self.good.pop(0)    # bounded: the harness must not grow the heap itself
            return
        if k == 3:                  # a mutated signed line
            self.counter += 1
            line = bytearray(signed({'id': 2, 'cmd': 'dr', 'n': self.counter,
                                     'args': {'limit_w': 5000000, 'for_s': 10}}))
            i = rnd() % len(line)
            x = (line[i] + 1 + rnd() % 94) % 127
            line[i] = x if x > 32 else 33
            a0 = self.ctl.applied
            self.feed(bytes(line))
            assert self.ctl.applied == a0, 'mutated line applied'
            return
        if k == 4:                  # replay an accepted line
            if self.good:
                a0 = self.ctl.applied
                ok = self.feed(self.good[rnd() % len(self.good)])
                assert not ok and self.ctl.applied == a0, 'replay applied'
            return
        if k == 5:                  # stale counter, right MAC
            line = signed({'id': 3, 'cmd': 'disarm', 'n': rnd() % (self.counter + 1)})
            a0 = self.ctl.applied
            ok = self.feed(line)
            assert not ok and self.ctl.applied == a0, 'stale counter applied'
            return
        if k == 6:                  # oversized
            ok = self.feed(b'{' * (commands.MAX_LINE + 1 + rnd() % 300))
            assert ok is False or ok is None
            return
        if k == 8:                  # MAC-shaped: payload, a space, 64 random bytes
            n = rnd() % 60
            b = bytearray(n + 65)
            for i in range(n):
                b[i] = 33 + rnd() % 94
            b[n] = 32
            bad = False
            for i in range(n + 1, n + 65):
                x = rnd() & 0xFF
                b[i] = x if x not in (10, 13) else 48
                if x > 127:
                    bad = True
            if bad:
                self.mac_shaped += 1
            a0 = self.ctl.applied
            self.feed(bytes(b))
            assert self.ctl.applied == a0, 'applied with a random MAC'
            return
        if k == 7:                  # signed dr with random values
            lim = (0, -1, config.MAX_W, config.MAX_W + 1, 'x', None, 5000000)[rnd() % 7]
            secs = (0, 1, 86400, 86401, -3, 'x', 60)[rnd() % 7]
            self.counter += 1
            line = signed({'id': 4, 'cmd': 'dr', 'n': self.counter,
                           'args': {'limit_w': lim, 'for_s': secs}})
            valid = (type(lim) is int and 0 <= lim <= config.MAX_W and type(secs) is int
                     and 1 <= secs <= 86400)
            a0 = self.ctl.applied
            ok = self.feed(line)
            assert ok == valid and self.ctl.applied == a0 + (1 if valid else 0), (lim, secs)
            return


def commands_main():
    d = sys.argv[4]
    with open(d + '/key.bin', 'wb') as f:
        f.write(KEY)
    fz = Fuzz(d)
    for i in range(200):            # warm-up: buffers, interned names, the counter file
        fz.case(rnd() % 8 if rnd() % 8 else 2)
    gc.collect()
    before = gc.mem_alloc()
    for i in range(N):
        fz.case(rnd() % 9)
    gc.collect()
    after = gc.mem_alloc()
    # Unique unknown command names (a line noise or an attacker could send).
    for i in range(300):
        fz.feed(json.dumps({'cmd': 'x%d_%d' % (rnd(), i)}).encode())
    gc.collect()
    after_names = gc.mem_alloc()
    out = {"cases": N, "lines": fz.lines, "replies": fz.ctl.replies, "accepted": fz.cmds.accepted,
           "rejected": fz.cmds.rejected, "applied": fz.ctl.applied, "escapes": fz.escapes, "mac_shaped": fz.mac_shaped,
           "heap_growth": after - before, "heap_growth_unique_names": after_names - after}
    print(json.dumps(out))


def macchars_main():
    # Fresh: lines whose "MAC" is printable ASCII but not hex, every such
    # character, with a fresh counter (so the MAC compare is reached).
    d = sys.argv[4]
    with open(d + '/key.bin', 'wb') as f:
        f.write(KEY)
    fz = Fuzz(d)
    for i in range(20):
        fz.feed(b'{"cmd": "status"}')
    chars = bytes(c for c in range(33, 127) if c not in b'0123456789abcdef')
    micropython.qstr_info()         # "qstr pool: ... n_qstr=N ...", read by the test
    for i in range(len(chars)):
        mac = bytes(chars[(i + j) % len(chars)] for j in range(64))
        fz.feed(b'{"cmd": "disarm", "n": 536870912} ' + mac)
    micropython.qstr_info()
    print(json.dumps({"lines": len(chars), "replies": fz.ctl.replies - 20}))


if MODE == 'modbus':
    modbus_main()
elif MODE == 'macchars':
    macchars_main()
else:
    commands_main()
'''


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    p = tmp_path_factory.mktemp("fuzz") / "fuzz_fw.py"
    p.write_text(SCRIPT)
    return p


def mpy_json(script, *args, timeout=600):
    r = run([str(script), *map(str, args)], timeout=timeout)
    assert r.returncode == 0, f"MicroPython fuzz failed:\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def modbus_result(script):
    return mpy_json(script, "modbus", MODBUS_CASES, SEED, RUN_CASES)


@pytest.fixture(scope="module")
def commands_result(script, tmp_path_factory):
    d = tmp_path_factory.mktemp("flash")
    return mpy_json(script, "commands", CMD_CASES, SEED, d)


def test_modbus_check_never_raises_allocates_or_accepts_garbage(modbus_result):
    r = modbus_result
    assert r["error"] is None, r                       # MemoryError = an allocation
    assert r["alloc_bytes"] == 0, r
    assert r["cases"] == MODBUS_CASES
    assert r["ok_but_invalid"] == 0, r                 # nothing accepted that is not a reply
    assert r["valid_rejected"] == 0, r                 # every valid reply accepted
    assert r["exception_not_reported"] == 0 and r["exception_code_wrong"] == 0, r
    # Every mutation kind was exercised and rejected (counted by result code).
    assert all(n > 0 for n, _ in r["by_kind"]), r["by_kind"]
    ok_by_kind = [ok for _, ok in r["by_kind"]]
    assert ok_by_kind[1] == r["by_kind"][1][0]          # valid: all OK
    for k in (3, 4, 5, 6, 7, 10):                       # never OK
        assert ok_by_kind[k] == 0, (k, r["by_kind"])
    # kind 9 (a changed byte count or echo, CRC valid): fc 3/4 never OK; fc 6/16
    # see the regression test below.
    assert ok_by_kind[9] == r["ok_wrong_echo"], r
    assert sum(r["results"].values()) == MODBUS_CASES
    for code in ("timeout", "crc", "wrong_reply", "exception", "short"):
        assert r["results"][code] > 0, r["results"]


def test_modbus_run_with_a_fake_bus_is_locked_and_counted(modbus_result):
    r = modbus_result
    assert r["run_error"] is None, r
    assert sum(r["run_results"].values()) == RUN_CASES
    assert r["run_valid_rejected"] == 0, r


def test_modbus_write_reply_echo_is_checked(modbus_result):
    # Regression: fc 6/16 replies were accepted without comparing the echoed
    # address and value/count with the request, so a well-formed reply to
    # another write (RTU has no transaction id) confirmed this one.
    assert modbus_result["ok_wrong_echo"] == 0, modbus_result
    assert modbus_result["by_kind"][9][0] > 0


def test_commands_one_reply_nothing_wrongly_applied(commands_result):
    r = commands_result
    assert not r["escapes"], r["escapes"]             # every line got its reply
    assert r["accepted"] + r["rejected"] == r["replies"], r
    assert r["rejected"] > 0 and r["accepted"] > 0 and r["applied"] > 0, r


def test_commands_random_mac_bytes_get_a_reply(commands_result):
    # Regression: a space 65 bytes from the end of a line and a non-UTF-8 byte
    # after it raised UnicodeError out of handle() (mac = text[-64:].decode()
    # outside the try): an unauthenticated console line ended the firmware.
    assert commands_result["mac_shaped"] > 0
    assert not [k for k in commands_result["escapes"] if k.startswith("UnicodeError")], \
        commands_result["escapes"]


def test_commands_heap_does_not_grow(commands_result):
    # Everything a command allocates is garbage once its reply is out.
    assert commands_result["heap_growth"] <= 2048, commands_result


def test_commands_mac_characters_are_not_interned(script, tmp_path):
    # Regression: auth._same compared the MAC as a str, and indexing a str
    # interns each 1-character ASCII string (a qstr, never freed): unauthenticated
    # lines with printable non-hex "MAC"s kept ~1 kB for good (bounded by the
    # ASCII set, but one more qstr pool later on). The MAC is bytes now, and
    # anything but 64 lowercase hex digits is malformed before auth.
    p = run([str(script), "macchars", "0", str(SEED), str(tmp_path)], timeout=60)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["replies"] == r["lines"] > 70, r
    n_qstr = [int(x) for x in re.findall(r"n_qstr=(\d+)", p.stdout)]
    assert len(n_qstr) == 2 and n_qstr[1] == n_qstr[0], n_qstr       # nothing interned


def test_commands_unique_unknown_names_do_not_leak(commands_result):
    # Regression: getattr(self, 'cmd_' + cmd) interned every name it was asked
    # for (a qstr, never freed): 300 unique unknown names kept ~13 kB for good.
    # handle() now looks the name up in commands.NAMES first.
    assert commands_result["heap_growth_unique_names"] <= 1024, commands_result
