"""Every tests/firmware/test_*.py module, run again on the MicroPython unix port."""
from pathlib import Path

import pytest

from mpy import run

MODULES = sorted(p.stem for p in (Path(__file__).parent / "firmware").glob("test_*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_module_on_micropython(module):
    r = run([str(Path(__file__).parent / "firmware" / "mpy_runner.py"), module], timeout=300)
    assert r.returncode == 0, f"{module} failed on MicroPython:\n{r.stdout}\n{r.stderr}"
    assert " passed, 0 failed" in r.stdout
