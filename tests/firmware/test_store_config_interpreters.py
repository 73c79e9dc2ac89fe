"""The firmware's store and config checks (checks/store_checks.py, checks/config_checks.py)
under real MicroPython and under CPython, one item per check per interpreter.

Under MicroPython they run with an ESP32-sized heap, the firmware modules compiled with
mpy-cross as the device runs them, and the store checks run a second time on a littlefs
filesystem in RAM (``littlefs:<name>``), the filesystem the device uses. Under CPython the
sim's stand-in for MicroPython's `micropython` module comes on the path with the firmware.
"""

from pathlib import Path
from textwrap import indent

from checksuite import Suite, check_names, run_bare, script

CHECKS = Path(__file__).resolve().parent / "checks"
HEAP = "64K"  # an ESP32 without PSRAM leaves MicroPython about this much
STORE = CHECKS / "store_checks.py"
CONFIG = CHECKS / "config_checks.py"
HELPERS = CHECKS / "checkhelp.py"
# The fault-injection checks stay off littlefs (see store_checks.use_littlefs).
FAULTS = ("power_cut_", "flash_error_")
ON_LITTLEFS = [n for n in check_names(STORE) if not n.startswith(FAULTS)]
LITTLEFS = "littlefs:"


def _run_store(interpreter, scratch):
    program = script(STORE)
    if interpreter == "micropython":
        program += "if store_checks.use_littlefs():\n" + indent(script(STORE, LITTLEFS, FAULTS),
                                                                  "    ")
    return run_bare(interpreter, [STORE, HELPERS, CHECKS / "flash_faults.py"], program,
                    scratch, HEAP)


def _run_config(interpreter, scratch):
    return run_bare(interpreter, [CONFIG, HELPERS], script(CONFIG), scratch, HEAP)


STORE_SUITE = Suite(STORE, _run_store, micropython_only=[LITTLEFS + n for n in ON_LITTLEFS])
CONFIG_SUITE = Suite(CONFIG, _run_config)

test_store, test_store_run_is_clean = STORE_SUITE.tests()
test_config, test_config_run_is_clean = CONFIG_SUITE.tests()
