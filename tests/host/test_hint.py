"""`cabctl hint`: validation, the authenticated command line, the local daemon
(HTTP on loopback and a unix socket), and the device side (the firmware's
command handler storing the hint in cabinet.hints.Hints)."""
import json
import subprocess
import sys
import threading
import time

import pytest

from cabctl import hint
from cabinet import auth, commands, hints, predict

KEY = bytes(range(32))
MW = 1_000_000


class FakeCtl:
    """What cabinet.commands needs from the controller, plus the hint table."""

    def __init__(self):
        self.hints = hints.Hints()
        self.events = []

    def send_event(self, code, fields):
        self.events.append(fields)


class Device:
    """The firmware's command channel on CPython: a sink for Forwarder."""

    def __init__(self, tmp_path):
        (tmp_path / "key.bin").write_bytes(KEY)
        self.ctl = FakeCtl()
        self.cmds = commands.Commands(None, self.ctl, auth.Auth(str(tmp_path / "key.bin"),
                                                                 str(tmp_path / "counter.txt")),
                                      str(tmp_path / "site.json"))
        self.lines = []

    def __call__(self, data, cid):
        self.lines.append(data)
        text = data.rstrip(b"\n")
        self.cmds.line[:len(text)] = text
        self.cmds.n = len(text)
        self.cmds.handle()
        f = self.ctl.events[-1]
        return {"id": f[41], "ok": f[42], "code": f[43], "message": f[44], "data": f[45]}


@pytest.fixture
def device(tmp_path):
    return Device(tmp_path)


def test_normalize_checks_and_converts():
    due, args = hint.normalize({"event": "job_start", "in_s": 30, "power_w": 12e6, "job": 7},
                               now=1000.0)
    assert due == 1030.0 and args == {"event": "job_start", "power_w": 12_000_000, "job": 7}
    assert hint.device_args(due, args, now=1000.5)["in_ms"] == 29500
    due, args = hint.normalize({"event": "maint", "at": 2000, "power_w": 1, "for_s": 600},
                               now=1000.0)
    assert due == 2000 and args["for_ms"] == 600_000
    assert hint.normalize({"event": "clear", "job": 3}) == (None, {"event": "clear", "job": 3})
    bad = [({"event": "launch", "in_s": 1, "power_w": 1}, "event must be one of"),
           ({"event": "job_start", "power_w": 1}, "exactly one of in_s"),
           ({"event": "job_start", "in_s": 1, "at": 5, "power_w": 1}, "exactly one of in_s"),
           ({"event": "job_start", "in_s": 1}, "power_w"),
           ({"event": "job_start", "in_s": 1, "power_w": 2e9}, "outside 0..1000000000"),
           ({"event": "job_start", "in_s": 1e6, "power_w": 1}, "within -600..86400"),
           ({"event": "job_end", "in_s": 1, "power_w": 1, "for_s": 3}, "only goes with maint"),
           ({"event": "job_start", "in_s": 1, "power_w": 1, "watts": 1}, "unknown keys"),
           ({"event": "job_start", "in_s": 1, "power_w": True}, "must be a number"),
           ([1, 2], "JSON object")]
    for msg, err in bad:
        with pytest.raises(hint.HintError, match=err):
            hint.normalize(msg)


def test_forwarded_hint_is_authenticated_and_stored_on_the_device(device):
    fwd = hint.Forwarder(device, KEY)
    r = fwd.forward({"event": "job_start", "in_s": 20, "power_w": 12e6, "job": 7})
    assert r["ok"], r
    h = device.ctl.hints
    assert h.count() == 1 and h.kind[0] == hints.JOB_START and h.power[0] == 12 * MW
    assert 19_900 <= h.due[0] <= 20_000 and h.window[0] == 250 and h.job[0] == 7
    # The line: printable JSON + HMAC; a second hint in the same millisecond
    # still gets a larger counter (the device refuses anything else).
    payload, mac = device.lines[0].rstrip(b"\n").rsplit(b" ", 1)
    assert json.loads(payload)["cmd"] == "hint" and len(mac) == 64
    r = fwd.forward({"event": "maint", "in_s": 60, "power_w": 3e6, "for_s": 120,
                     "window_ms": 1000})
    assert r["ok"] and h.count() == 3
    n = [json.loads(x.rsplit(b" ", 1)[0])["n"] for x in device.lines]
    assert n[1] > n[0]
    lst = fwd.forward({"event": "list"})["data"]["pending"]
    assert sorted(e[0] for e in lst) == ["job_start", "maint", "maint_end"]
    assert fwd.forward({"event": "clear", "job": 7})["message"] == "cleared 1 hints"
    # The device checks too: an out-of-range value sent around the host check.
    bad = hint.Forwarder(device, KEY)
    bad_line = hint.cmdline.line("hint", {"event": "job_start", "in_ms": 5, "power_w": -1}, KEY,
                                 counter=time.time_ns() // 1_000_000 + 10)[1]
    assert not device(bad_line, None)["ok"]
    assert bad.sent == 0


def test_wrong_key_is_rejected_by_the_device(device):
    r = hint.Forwarder(device, bytes(32)).forward({"event": "ckpt_end", "in_s": 1, "power_w": 1})
    assert not r["ok"] and r["code"] == "auth_rejected"
    assert device.ctl.hints.count() == 0


def test_device_without_hints_says_so(device):
    del device.ctl.hints
    r = hint.Forwarder(device, KEY).forward({"event": "job_end", "in_s": 1, "power_w": 1})
    assert not r["ok"] and "job hints need prediction on" in r["message"]


def _serve(srv):
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    return th


def test_daemon_over_loopback_http(device):
    srv = hint.make_server(hint.Forwarder(device, KEY), port=0)
    _serve(srv)
    url = "http://127.0.0.1:%d" % srv.server_address[1]
    try:
        status, r = hint.post({"event": "job_start", "in_s": 5, "power_w": 9e6}, url)
        assert status == 200 and r["ok"] and r["reply"]["data"] == {"pending": 1}
        status, r = hint.post({"event": "job_start", "in_s": 5}, url)
        assert status == 400 and "power_w" in r["error"]
        # The CLI a hook would call.
        out = subprocess.run([sys.executable, "-m", "cabctl", "hint", "post", "ckpt_start",
                              "--in", "0.5", "--power-w", "8e6", "--url", url],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["ok"] and device.ctl.hints.count() == 2
        import urllib.request
        health = json.loads(urllib.request.urlopen(url + "/health", timeout=5).read())
        assert health == {"ok": True, "sent": 2, "failed": 0}
    finally:
        srv.shutdown()
        srv.server_close()


def test_daemon_over_a_unix_socket(device, tmp_path):
    path = str(tmp_path / "hint.sock")
    srv = hint.make_server(hint.Forwarder(device, KEY), sock_path=path)
    _serve(srv)
    try:
        status, r = hint.post({"event": "ckpt_end", "in_s": 0.3, "power_w": 8e6, "job": 2},
                              sock_path=path)
        assert status == 200 and r["ok"]
        assert device.ctl.hints.kind[0] == hints.CKPT_END
    finally:
        srv.shutdown()
        srv.server_close()


def test_no_reply_from_the_device_is_a_gateway_timeout():
    srv = hint.make_server(hint.Forwarder(lambda data, cid: None, KEY), port=0)
    _serve(srv)
    try:
        status, r = hint.post({"event": "job_end", "in_s": 1, "power_w": 1},
                              "http://127.0.0.1:%d" % srv.server_address[1])
        assert status == 504 and not r["ok"]
    finally:
        srv.shutdown()
        srv.server_close()
