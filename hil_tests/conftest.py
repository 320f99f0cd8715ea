"""HIL fixtures: the firmware against the emulated plant, in real time.

--target unix (default): the firmware on the MicroPython unix port, bus = pty.
--target port:DEV --bus DEV2: a flashed board whose telemetry arrives on DEV,
with the plant serving the RS-485 adapter DEV2. Tests that need to control the
firmware process itself (config files, heap lock, kills) run only on unix.
"""
import pytest

from cabctl.rig import Rig


def pytest_addoption(parser):
    parser.addoption("--target", default="unix", help="unix, or port:DEV for a real board")
    parser.addoption("--bus", default=None, help="RS-485 adapter for the plant (with port:DEV)")


@pytest.fixture
def target(request):
    t = request.config.getoption("--target")
    if t.startswith("port:") and not request.config.getoption("--bus"):
        pytest.skip("--target port:DEV needs --bus DEV2 (the plant's RS-485 adapter)")
    return t


@pytest.fixture
def unix_only(target):
    if target != "unix":
        pytest.skip("needs the firmware process (unix target)")


@pytest.fixture
def make_rig(request, tmp_path, target):
    def make(site=None, plant=None):
        return Rig(tmp_path, site=site, plant=plant, target=target,
                   bus_port=request.config.getoption("--bus"))
    return make


@pytest.fixture
def hardware(request):
    """For tests that only make sense on a real board: skip cleanly without one."""
    t = request.config.getoption("--target")
    if not t.startswith("port:"):
        pytest.skip("no board: pass --target port:DEV --bus DEV2")
    return t
