import sys

import pytest

from cabctl.paths import FIRMWARE

# Firmware modules are pure MicroPython and import as-is on CPython.
sys.path.insert(0, str(FIRMWARE))


def pytest_collection_modifyitems(config, items):
    # test_mpy_* functions need MicroPython (heap_lock, ticks); they run in
    # tests/test_firmware_on_micropython.py, not on CPython.
    skip = pytest.mark.skip(reason="MicroPython only: runs under tests/test_firmware_on_micropython.py")
    for item in items:
        if item.name.startswith("test_mpy_"):
            item.add_marker(skip)
