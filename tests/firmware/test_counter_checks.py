"""Run the counter and sensor-driver checks (checks/counter_checks.py) under real MicroPython
and under CPython: a power cut at every flash operation of a simulated day of counting, the
counters API, and the drivers over fake transports with exact bytes."""

import subprocess
import sys

import pytest
from test_store_config_interpreters import CHECKS, FIRMWARE, TIMEOUT_S, tool

from musket_sim.chip.cpython import plain

EXPECTED = ["power_cut_day", "api_basics", "rollover_keeps_undelivered", "rules_parse",
            "sht_crc", "sht_faults", "analog_sensors"]
# The check keeps a day's delivered events and the files of each step in memory, beyond
# what the firmware itself needs; the firmware's own heap is measured by `musket sim run`.
HEAP = "1M"


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
def test_counter_checks(interpreter, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    if interpreter == "cpython":
        argv = [sys.executable, str(CHECKS / "counter_checks.py"), str(scratch)]
        env = {"PYTHONPATH": plain.pythonpath(FIRMWARE, CHECKS), "PYTHONDONTWRITEBYTECODE": "1"}
    else:
        build = tmp_path / "mpy"
        build.mkdir()
        for script in ("counter_checks", "store_checks"):
            subprocess.run([str(tool("mpy-cross")), "-o", str(build / f"{script}.mpy"),
                            str(CHECKS / f"{script}.py")], check=True, capture_output=True)
        argv = [str(tool("micropython")), "-X", f"heapsize={HEAP}", "-m", "counter_checks",
                str(scratch)]
        env = {"MICROPYPATH": f"{build}:{FIRMWARE}:.frozen"}
    proc = subprocess.run(argv, env=env, cwd=scratch, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    passed = [line[5:] for line in proc.stdout.splitlines() if line.startswith("PASS ")]
    assert passed == EXPECTED, output
    cuts = [int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("CUTS")]
    assert cuts and cuts[0] >= 2000, f"a day of counting has thousands of cut points: {cuts}"
