"""The OTA signature check (app.ota.ed25519 and its SHA-512) under real MicroPython and under
CPython: checks/ed25519_checks.py, one item per check per interpreter.

MicroPython runs with the reference board's heap; the firmware modules are imported from
source inside it.
"""

from pathlib import Path

from checksuite import Suite, run_bare, script

from musket.boards import load_board

CHECKS = Path(__file__).resolve().parent / "checks" / "ed25519_checks.py"
HEAP = str(load_board("esp32-sim7080g").heap)  # 111,936 bytes: the ESP32 port's heap


def _run(interpreter, scratch):
    return run_bare(interpreter, [CHECKS], script(CHECKS), scratch, HEAP)


SUITE = Suite(CHECKS, _run)

test_ed25519, test_ed25519_run_is_clean = SUITE.tests()
