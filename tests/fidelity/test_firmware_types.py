"""The firmware calls only what MicroPython's ESP32 port provides.

The firmware also runs under CPython, in tests and in the simulator, where CPython's modules
and the sim's shims stand in for the device's: a CPython-only call such as `time.monotonic()`,
or a keyword the port's `machine.WDT` does not take, passes there and fails on a board. mypy
checks firmware/ against the port's stubs (micropython-esp32-stubs) and MicroPython's cut-down
stdlib (micropython-stdlib-stubs) instead of CPython's; firmware/mypy.ini says how.
"""

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STDLIB_STUBS = "micropython-stdlib-stubs"
PORT_STUBS = "micropython-esp32-stubs"


def copy_stub(dist, file, dest):
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dist.locate_file(file), dest)


def build_typeshed(root):
    """Merge the two stub packages into one typeshed at ``root``; return ``root``.

    mypy takes a stdlib module only from the typeshed, so the port's modules join
    micropython-stdlib-stubs' stdlib/ (which keeps its typeshed layout) rather than being
    found beside it. Both packages install their top-level modules straight into
    site-packages, where mypy would not look for them.
    """
    stdlib = root / "stdlib"
    added = set()
    std = metadata.distribution(STDLIB_STUBS)
    for file in std.files:
        top = file.parts[0]
        if top in ("stdlib", "stubs"):
            copy_stub(std, file, root / file)
        elif top == "_mpy_shed":  # helper types the stubs import
            copy_stub(std, file, stdlib / file)
            added.add(top)
    port = metadata.distribution(PORT_STUBS)
    for file in port.files:
        if file.suffix == ".pyi":
            copy_stub(port, file, stdlib / file)
            added.add(file.parts[0].removesuffix(".pyi"))
    with open(stdlib / "VERSIONS", "a", encoding="utf-8") as versions:
        versions.writelines("%s: 3.0-\n" % name for name in sorted(added))
    return root


def mypy(tmp_path, config, *args, mypypath=None):
    env = dict(os.environ, MUSKET_MPY_TYPESHED=str(build_typeshed(tmp_path / "typeshed")))
    env.pop("MYPYPATH", None)
    if mypypath:
        env["MYPYPATH"] = mypypath
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config), *args],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, "mypy found calls the ESP32 port does not support:\n%s%s" % (
        result.stdout, result.stderr)


def test_firmware_calls_only_esp32_port_apis(tmp_path):
    mypy(tmp_path, "firmware/mypy.ini", "firmware")


# Device-side test code: the check suites, fakes and steps that run on the virtual device.
DEVICE_TEST_CODE = ["tests/device", "tests/firmware/checks", "tests/uplink/checks",
                    "tests/sim/checks", "tests/fidelity/checks"]
# What the sim's device side adds to the port, for the fakes that attach to its peripherals.
SIM_MODULES = "\n[mypy-_simcore,_simworld]\nignore_missing_imports = True\n"


def test_device_side_test_code_calls_only_esp32_port_apis(tmp_path):
    """The same check, with the firmware's settings, over the test code that runs on the
    device: what it calls must exist on the port too, or MicroPython would fail where the
    CPython run passes."""
    config = tmp_path / "mypy.ini"
    config.write_text((REPO / "firmware" / "mypy.ini").read_text() + SIM_MODULES)
    files = [str(p.relative_to(REPO)) for folder in DEVICE_TEST_CODE
             for p in sorted((REPO / folder).glob("*.py"))]
    mypy(tmp_path, config, "--cache-dir", ".mypy_cache/device-tests", *files,
         mypypath="firmware")
