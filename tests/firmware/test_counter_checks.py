"""The counter and sensor-driver checks (checks/counter_checks.py) under real MicroPython and
under CPython, one item per check per interpreter: a power cut at every flash operation of a
simulated day of counting, the counters API, and the drivers over fake transports with exact
bytes."""

from pathlib import Path

from checksuite import Suite, run_bare, script

CHECKS = Path(__file__).resolve().parent / "checks"
COUNTER = CHECKS / "counter_checks.py"
# The check keeps a day's delivered events and the files of each step in memory, beyond
# what the firmware itself needs; the firmware's own heap is measured by `musket sim run`.
HEAP = "1M"


def _run(interpreter, scratch):
    return run_bare(interpreter, [COUNTER, CHECKS / "checkhelp.py", CHECKS / "flash_faults.py"],
                    script(COUNTER), scratch, HEAP)


SUITE = Suite(COUNTER, _run)

test_counter, test_counter_run_is_clean = SUITE.tests()
