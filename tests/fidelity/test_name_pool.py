"""The firmware's names fit the pool the sim grows ahead of it.

MicroPython interns every name (module, function, attribute) in pools that double in size. The
virtual device grows the pool on its own side of the heap before the firmware starts, with room
for a fixed number of firmware names (sim/chip/_simboot_mp.py), so that the firmware's heap
share never takes a pool of thousands of entries in one piece. This checks that importing every
firmware module interns fewer names than that room.
"""

import re
from pathlib import Path

from checksuite import call
from checksuite import modules as device_modules

from musket.firmware import default_cache_dir, firmware_sources
from musket_sim import VirtualDevice
from musket_sim.device import CHIP_DIR

NAME_POOL = Path(__file__).parent / "checks" / "name_pool.py"

QSTR_INFO = re.compile(r"n_pool=(\d+), n_qstr=(\d+)")


def room_for_firmware_names() -> int:
    source = (CHIP_DIR / "_simboot_mp.py").read_text(encoding="utf-8")
    found = re.search(r"^_FIRMWARE_NAMES = (\d+)", source, re.M)
    assert found, "_FIRMWARE_NAMES not found in _simboot_mp.py"
    return int(found.group(1))


def firmware_modules() -> list[str]:
    modules = []
    for path in firmware_sources():
        if path.endswith(".py") and path.startswith("app/"):
            name = path[:-3].replace("/", ".")
            modules.append(name[:-len(".__init__")] if name.endswith(".__init__") else name)
    return sorted(modules)


def test_firmware_names_fit_the_pool_grown_for_them(tmp_path):
    names = firmware_modules()
    assert "app.main" in names
    device = VirtualDevice("esp32-sim7080g", tmp_path, interpreter="micropython")
    device.create_flash(device_modules("micropython", [NAME_POOL], default_cache_dir()))
    result = device.run(10, script=call("name_pool.import_each", names))
    found = QSTR_INFO.findall(result.script_output)
    assert len(found) == 2, result.script_output
    (pools_before, names_before), (pools_after, names_after) = [
        (int(p), int(n)) for p, n in found]
    added = names_after - names_before
    assert added > 100, "importing %d modules interned only %d names" % (len(names), added)
    assert added < room_for_firmware_names(), (
        "the firmware interns %d names; the sim grows the pool for %d (raise _FIRMWARE_NAMES)"
        % (added, room_for_firmware_names()))
    assert pools_after == pools_before, "a new pool of names was made in the firmware's share"
