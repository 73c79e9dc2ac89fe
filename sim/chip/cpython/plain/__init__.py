"""Firmware modules under plain CPython: the folder that holds the stand-in for MicroPython's
`micropython` module (micropython.py here), and the path that runs the firmware with it.

Every runner that imports firmware modules into a plain CPython process (the device-side
checks' runners in tests/firmware, `musket build` writing the config through app.config)
takes its path from here, so the stand-in is defined once."""

from __future__ import annotations

import os
from pathlib import Path

DIR = Path(__file__).resolve().parent
FIRMWARE = DIR.parents[2] / "firmware"


def pythonpath(*dirs: Path | str) -> str:
    """A PYTHONPATH (or sys.path entries joined by os.pathsep): ``dirs`` (the firmware tree
    by default) and then this folder, so that `from micropython import const` resolves."""
    return os.pathsep.join([str(d) for d in (dirs or (FIRMWARE,))] + [str(DIR)])
