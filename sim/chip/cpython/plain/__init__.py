"""Firmware modules under plain CPython: the folder that holds the stand-ins for MicroPython's
`micropython` and `deflate` modules (micropython.py and deflate.py here), and the path that
runs the firmware with them.

Every runner that imports firmware modules into a plain CPython process (the device-side
checks' runners in tests/firmware, `musket build` writing the config through app.config)
takes its path from here, so each stand-in is defined once."""

from __future__ import annotations

import os
from pathlib import Path

DIR = Path(__file__).resolve().parent
FIRMWARE = DIR.parents[3] / "firmware"


def pythonpath(*dirs: Path | str) -> str:
    """A PYTHONPATH (or sys.path entries joined by os.pathsep): ``dirs`` (the firmware tree
    by default) and then this folder, so that `from micropython import const` resolves."""
    return os.pathsep.join([str(d) for d in (dirs or (FIRMWARE,))] + [str(DIR)])
