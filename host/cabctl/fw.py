"""The firmware's pure modules, imported on CPython (unchanged, same source).

The host runs the very dispatch engine, site logic (outage, genset, PV)
and config validation that run on the board, so `cabctl sim` and
`cabctl flash` can never disagree with it.
"""
import sys

from .paths import FIRMWARE

if str(FIRMWARE) not in sys.path:
    sys.path.insert(0, str(FIRMWARE))

from cabinet import config, dispatch, site  # noqa: E402

__all__ = ["config", "dispatch", "site"]
