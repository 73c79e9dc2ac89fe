"""The counter and sensor-driver checks (checks/counter_checks.py) under real MicroPython and
under CPython, one item per check per interpreter: a power cut at every flash operation of a
simulated day of counting, the counters API, and the drivers over fake transports with exact
bytes."""

from pathlib import Path

import pytest
from checksuite import Suite, run_bare, script

from musket_sim.device import INTERPRETERS

CHECKS = Path(__file__).resolve().parent / "checks"
COUNTER = CHECKS / "counter_checks.py"
# The check keeps a day's delivered events and the files of each step in memory, beyond
# what the firmware itself needs; the firmware's own heap is measured by `musket sim run`.
HEAP = "1M"


def _run(interpreter, scratch):
    return run_bare(interpreter, [COUNTER, CHECKS / "store_checks.py"], script(COUNTER),
                    scratch, HEAP)


SUITE = Suite(COUNTER, _run)


@SUITE.group
@pytest.mark.parametrize("check", SUITE.names)
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_counter(interpreter, check, tmp_path_factory):
    SUITE.run(interpreter, tmp_path_factory).assert_passed(check)


@SUITE.group
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_run_is_clean(interpreter, tmp_path_factory):
    SUITE.run(interpreter, tmp_path_factory).assert_clean()
