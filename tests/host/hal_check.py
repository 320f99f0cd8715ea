# Runs one hardware board's hal.py on the MicroPython unix port against the
# fake `machine` (tests/host/fake_machine). Usage, from tests/host/test_boards.py:
#   MICROPYPATH=fake_machine:boards/<b>:firmware:tests/firmware micropython hal_check.py <b>
# Prints PASS/FAIL per check and "N passed, M failed"; exit status 1 on failure.
# Telemetry written by the HAL shows up on stdout as the line "TLM-OK".
import json
import sys
import time
import machine
from alloc import no_alloc

BOARD = sys.argv[1]
PORTS = {'armv6m': 'rp2', 'xtensawin': 'esp32'}

import hal                    # needs machine.PORT only when Board() is built


def crc16(b, n):
    c = 0xFFFF
    for i in range(n):
        c ^= b[i]
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return c


def frame(*body):
    b = bytearray(len(body) + 2)
    for i, v in enumerate(body):
        b[i] = v
    c = crc16(b, len(body))
    b[-2] = c & 0xFF
    b[-1] = c >> 8
    return b


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Ctx:
    pass


X = Ctx()


def setup():
    with open(hal._DIR + '/board.json') as f:
        cfg = json.load(f)
    machine.PORT = PORTS[cfg['mpy_arch']]
    X.cfg = cfg
    X.board = hal.Board()
    X.bus = X.board.bus
    X.uart = machine.UARTS[-1]
    X.de = [p for p in machine.PINS if p.id == cfg['bus']['de_pin']][-1]
    X.buf = bytearray(16)


def test_construct():
    cfg, b, u = X.cfg, X.board, X.uart
    check(b.cfg['name'] == BOARD, 'board.json name')
    check(b.baud == cfg['bus']['baud'] and b.site_path == 'site.json', 'baud/site_path')
    check(u.id == cfg['bus']['uart'] and u.baudrate == b.baud, 'UART id/baud')
    check(u.tx == cfg['bus']['tx_pin'] and u.rx == cfg['bus']['rx_pin'], 'UART pins')
    check(u.timeout == 0, 'UART reads must not block (timeout=0)')
    check(X.de.mode == machine.Pin.OUT and X.de.v == 0, 'DE is an output, low (receive) at boot')
    check(len(machine.WDTS) == 1 and machine.WDTS[0].timeout == cfg['watchdog_ms'], 'one WDT, board timeout')
    check([a.pin for a in machine.ADCS] == cfg['adc']['ct_channels'], 'one ADC per CT channel')
    if machine.PORT == 'esp32':
        check(all(a.atten == machine.ADC.ATTN_11DB for a in machine.ADCS), '11 dB attenuation')
    if cfg['led_pin'] is not None:
        led = [p for p in machine.PINS if p.id == cfg['led_pin']]
        check(led and led[-1].mode == machine.Pin.OUT, 'LED pin is an output')


def test_write_drives_de_around_the_frame():
    req = frame(1, 3, 0, 0, 0, 2)
    machine.LOG.clear()
    X.uart.sent_n = 0
    X.bus.write(req)
    de = X.de.num
    ev = machine.LOG.events()
    check(ev == [('pin_on', de), ('write', len(req)), ('flush', 0), ('pin_off', de)],
          'expected DE on, write, flush, DE off; got %r' % (ev,))
    check(X.uart.sent[:len(req)] == req and X.uart.sent_n == len(req), 'bytes on the wire')
    check(X.de.v == 0, 'DE released after the frame')


def test_write_no_alloc():
    req = frame(1, 3, 0, 0, 0, 2)
    no_alloc(lambda: X.bus.write(req), 3, 'bus.write')


def _recv(want, timeout_ms):
    t0 = time.ticks_us()
    n = X.bus.recv_into(X.buf, want, timeout_ms)
    return n, time.ticks_diff(time.ticks_us(), t0)


def test_recv_returns_scripted_bytes():
    u = X.uart
    u.reset_rx()
    u.script(b'\x01\x03\x04\x00\x0a\x00', 6)
    X.buf[6] = 0xEE
    n, us = _recv(9, 20)
    check(n == 6 and X.buf[:6] == b'\x01\x03\x04\x00\x0a\x00', 'got %d bytes' % n)
    check(X.buf[6] == 0xEE, 'nothing written past the received bytes')
    check(us >= X.bus.gap_us, 'short frame ends at the silent gap, not earlier')
    check(u.overreads == 0, 'readinto asked for more than any() (would block on hardware)')


def test_recv_stops_at_want():
    u = X.uart
    u.reset_rx()
    u.script(b'0123456789', 10)
    n, us = _recv(8, 20)
    check(n == 8 and X.buf[:8] == b'01234567', 'want caps the read')
    check(u.any() == 2, 'the rest stays in the UART for drain()')


def test_recv_joins_chunks_within_the_gap():
    u = X.uart
    u.reset_rx()
    u.script(b'abc', 3)
    u.script(b'def', 3, X.bus.gap_us // 3)
    n, _ = _recv(10, 20)
    check(n == 6 and X.buf[:6] == b'abcdef', 'bytes within the gap are one frame, got %d' % n)


def test_recv_ends_at_a_gap():
    u = X.uart
    u.reset_rx()
    u.script(b'abc', 3)
    u.script(b'def', 3, 10 * X.bus.gap_us)    # far apart: robust on a busy host
    n, _ = _recv(10, 100)
    check(n == 3 and X.buf[:3] == b'abc', 'a long silence ends the frame, got %d' % n)


def test_recv_waits_for_a_late_first_byte():
    u = X.uart
    u.reset_rx()
    u.script(b'xy', 2, 5000)
    n, us = _recv(2, 20)
    check(n == 2 and us >= 5000, 'first byte after 5 ms within a 20 ms timeout')


def test_recv_timeout_returns_0():
    X.uart.reset_rx()
    n, us = _recv(8, 5)
    check(n == 0, 'nothing arrives: 0')
    check(5000 <= us < 200000, 'waited %d us for a 5 ms timeout' % us)


def test_recv_no_alloc():
    u, bus, buf = X.uart, X.bus, X.buf
    data = b'\x01\x03\x04\x00\x0a\x00\x14\xda\x3e'

    def hit():
        u.reset_rx()
        u.script(data, 9)
        return bus.recv_into(buf, 9, 20)

    def miss():
        u.reset_rx()
        return bus.recv_into(buf, 9, 2)
    check(no_alloc(hit, 3, 'recv_into') == 9, 'recv under lock')
    check(no_alloc(miss, 2, 'recv_into timeout') == 0, 'timeout under lock')


def test_drain_empties_the_uart():
    u, bus = X.uart, X.bus
    big = bytes(range(150))

    def fill_and_drain():
        u.reset_rx()
        u.script(big, 150)
        bus.drain()
        return u.any()
    check(no_alloc(fill_and_drain, 2, 'drain') == 0, 'drain leaves nothing behind')


def test_modbus_master_through_the_hal():
    from cabinet import modbus
    u = X.uart
    txn = modbus.Txn(1, 3, 0, 2)
    m = modbus.Master(X.bus, 20, X.board.baud)
    ok = frame(1, 3, 4, 0, 10, 0, 20)
    u.set_reply(ok, len(ok), 300)
    check(no_alloc(lambda: m.run(txn), 3, 'Master.run') == modbus.OK, 'read through the HAL')
    check(txn.reg(0) == 10 and txn.reg(1) == 20, 'register values')
    exc = frame(1, 0x83, 2)
    u.set_reply(exc, len(exc), 300)
    check(m.run(txn) == modbus.EXCEPTION and txn.exc_code == 2, 'exception reply')
    u.set_reply(ok, 0, 0)
    u.reset_rx()
    check(m.run(txn) == modbus.TIMEOUT, 'silence is a timeout')


def test_feed_watchdog():
    w = machine.WDTS[0]
    n = w.feeds
    no_alloc(X.board.feed_watchdog, 2, 'feed_watchdog')
    check(w.feeds == n + 3, 'each call feeds the WDT once')


def test_send_telemetry():
    tlm = b'TLM-OK\n'
    no_alloc(lambda: X.board.send_telemetry(tlm), 1, 'send_telemetry')


def test_led():
    b = X.board
    no_alloc(lambda: b.led(True), 1, 'led')
    if X.cfg['led_pin'] is not None:
        led = [p for p in machine.PINS if p.id == X.cfg['led_pin']][-1]
        check(led.v == 1, 'LED on')
        b.led(False)
        check(led.v == 0, 'LED off')


def test_read_ct():
    b = X.board
    for i, a in enumerate(machine.ADCS):
        a.level = 1000 + i
        check(no_alloc(lambda: b.read_ct(i), 1, 'read_ct') == 1000 + i, 'CT %d reading' % i)


def test_log_keeps_a_bounded_ring():
    b = X.board
    for i in range(40):
        b.log('log line %d' % i)
    r = b.recent_logs
    check(0 < len(r) <= 32 and r[-1] == 'log line 39', 'recent_logs %r' % (r,))


def main():
    setup()
    passed = failed = 0
    for name in sorted(k for k in globals() if k.startswith('test_')):
        try:
            globals()[name]()
            passed += 1
            print('PASS', name)
        except Exception as e:
            failed += 1
            print('FAIL', name)
            sys.print_exception(e)
    print('%d passed, %d failed' % (passed, failed))
    sys.exit(1 if failed else 0)


main()
