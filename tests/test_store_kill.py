"""Kill the firmware's config writer at random moments, 120 times: the stored
config must always be the old one or the new one, never corrupt or lost."""
import os
import random
import signal
import subprocess
import time

from cabctl.fw import config
from cabinet import store
from mpy import run  # noqa: F401  (path set-up for the firmware modules)
from cabctl.paths import BOARDS, FIRMWARE
from cabctl.sil import micropython_exe

WRITER = """
from cabinet import config, store
a = config.validate({'cap_w': 17000000, 'tou': [{'start_min': 0}, {'start_min': 600, 'arb_w': 1000000}]})
b = config.validate({'cap_w': 16000000, 'recharge_w': 12000000})
i = 0
while True:
    store.save(%r, a if i & 1 else b)
    i += 1
"""


def test_config_survives_kills_during_writes(tmp_path):
    path = str(tmp_path / "site.json")
    store.save(path, config.validate({"cap_w": 17_000_000}))
    env = dict(os.environ, MICROPYPATH=f"{FIRMWARE}:{BOARDS / 'unix'}:.frozen")
    rng = random.Random(20261128)
    seen = set()
    for i in range(120):
        p = subprocess.Popen([micropython_exe(), "-c", WRITER % path], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.03, 0.12))          # ~25 ms start-up, then writes
        p.send_signal(signal.SIGKILL)
        p.wait()
        cfg, source, problem = store.load(path, config.validate)
        assert source == store.FILE, (i, source, problem)
        assert cfg["cap_w"] in (16_000_000, 17_000_000), (i, cfg["cap_w"])
        seen.add(cfg["cap_w"])
    assert seen == {16_000_000, 17_000_000}, "the writer never got to write: proves nothing"
