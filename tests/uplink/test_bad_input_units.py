"""The uplink service over a fake transport and the readings queue, under both interpreters
(checks/uplink_checks.py on a virtual device): a command on any topic but the device's own
command topic is refused with a reason and does not run; a command reply survives a link cut
before its PUBACK and a reboot, and a repeated command is answered from its stored reply
without running again; a reply let go from RAM before its PUBACK goes once, and replies
acknowledged are marked delivered before the next command's record can push them out; a
config change is applied by the running part that owns the key (and the reply says
"applied") or stored and reported as "after_reboot"; a full readings queue drops the oldest
readings and counts them, while the counter's events stay. (Sessions short of heap:
test_session_memory.py.)"""

from __future__ import annotations

from pathlib import Path

from checksuite import Suite, call, on_device

CHECKS = Path(__file__).parent / "checks" / "uplink_checks.py"
SUITE = Suite(CHECKS, on_device(CHECKS, 3600))

test_uplink_unit, test_uplink_unit_run_is_clean = SUITE.tests()


UNLOAD = Path(__file__).parent / "checks" / "unload_steps.py"


def test_unloaded_modules_load_again_as_on_the_device(make_device):
    # The uplink lets its command module and the config schema go after each command; both
    # interpreters must then load them again from the file (the sim's CPython importer once
    # kept them and failed `from app import config`).
    result = make_device(device_modules=[UNLOAD]).run(10, script=call("unload_steps.run"))
    lines = result.script_output.splitlines()
    assert "UNLOAD True True True" in lines, result.script_output + "\n".join(result.errors)
    # Dropped from sys.modules only, a submodule stays its package's attribute, on both.
    assert "KEPT True" in lines, result.script_output
