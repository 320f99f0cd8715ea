"""Commands over the console against the running firmware (unix target):
authentication, validation on the device, persistence, replies."""
import os
import time

import pytest

from cabctl import cmd as cmdline
from cabctl.fw import config
from cabinet import store

KEY = bytes(range(32))


@pytest.fixture
def running(make_rig, unix_only):
    """A rig running in the background for ~8 s; yields it once frames flow."""
    rig = make_rig(site={"cap_w": 18_000_000})
    rig.key = KEY
    th, result = rig.run_in_background(8)
    assert rig.logger.frames, "firmware did not start"
    yield rig
    th.join(timeout=20)
    assert result.get("ok"), result.get("errors")
    rig.summary = result


def cap_now(rig):
    return rig.logger.frames[-1]["cap_w"]


def test_set_config_is_authenticated_validated_applied_and_stored(running):
    rig = running
    # Read-only commands need no key.
    st = rig.command("status")
    assert st["ok"] and st["data"]["state"] in (1, 2) and st["data"]["config_source"] == "file"
    # Out of range: an error naming the key and the range, nothing applied.
    r = rig.command("set_config", {"cap_w": -5}, key=KEY)
    assert not r["ok"] and r["code"] == "invalid_value"
    assert "'cap_w' = -5 is outside 1..1000000000" in r["message"]
    r = rig.command("set_config", {"recharge_w": 19_000_000}, key=KEY)
    assert not r["ok"] and "recharge_w (19000000) must be below cap_w (18000000)" in r["message"]
    time.sleep(0.2)
    assert cap_now(rig) == 18_000_000
    # Valid and signed: applied at once and stored with a CRC.
    r = rig.command("set_config", {"cap_w": 17_000_000}, key=KEY)
    assert r["ok"], r
    time.sleep(0.3)
    assert cap_now(rig) == 17_000_000
    text = (rig.dir / "site.json").read_text()
    assert "crc16=" in text and store.decode(text, "site.json")["cap_w"] == 17_000_000
    ev = [e for e in rig.logger.events if e["event"] == "config_changed"]
    assert ev and ev[-1]["source"] == "command"


def test_wrong_key_replay_and_malformed_are_rejected_and_counted(running):
    rig = running
    r = rig.command("set_config", {"cap_w": 16_000_000}, key=bytes(32))
    assert not r["ok"] and r["code"] == "auth_rejected" and "bad MAC" in r["message"]
    r = rig.command("disarm")                                      # no MAC at all
    assert not r["ok"] and r["code"] == "auth_rejected"
    cid, line = cmdline.line("set_config", {"cap_w": 16_500_000}, KEY)
    assert rig.command("", raw=line)["ok"]
    again = rig.command("", raw=line)                              # replayed bytes
    assert not again["ok"] and "replayed" in again["message"]
    older = rig.command("set_config", {"cap_w": 15_000_000}, key=KEY, counter=1)
    assert not older["ok"] and "stale counter" in older["message"]
    assert rig.command("", raw=b"\x01garbage{\n")["code"] == "malformed"
    assert rig.command("", raw=b'{"id": 9}\n')["code"] == "malformed"
    assert rig.command("self_destruct")["code"] == "unknown_command"
    time.sleep(0.3)
    assert cap_now(rig) == 16_500_000                              # only the good one applied
    st = rig.command("status")["data"]
    assert st["rejected"] == 7 and st["accepted"] == 1       # status counts itself after replying


def test_demand_response_limit_and_disarm(running):
    rig = running
    assert rig.command("dr", {"limit_w": 12_000_000, "for_s": 2}, key=KEY)["ok"]
    time.sleep(1.0)
    recent = rig.logger.frames[-15:]
    assert any(f["reason"] == 8 for f in recent), [f["reason"] for f in recent]   # dr_limit
    assert rig.command("disarm", key=KEY)["ok"]
    time.sleep(0.5)
    assert rig.logger.frames[-1]["setpoint_w"] == 0
    assert rig.command("get_config")["data"]["armed"] is False
