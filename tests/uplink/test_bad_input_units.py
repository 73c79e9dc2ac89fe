"""The uplink service over a fake transport and the readings queue, under both interpreters
(checks/uplink_checks.py on a virtual device): a command on any topic but the device's own
command topic is refused with a reason and does not run; a command reply survives a link cut
before its PUBACK and a reboot, and a repeated command is answered from its stored reply
without running again; a config change is applied by the running part that owns the key
(and the reply says "applied") or stored and reported as "after_reboot"; a full readings
queue drops the oldest readings and counts them, while the counter's events stay."""

from __future__ import annotations

from pathlib import Path

CHECKS = Path(__file__).parent / "checks" / "uplink_checks.py"
NAMES = ["authorised_by_topic", "reply_survives_a_cut_link", "reply_survives_a_reboot",
         "config_applies_live_or_after_reboot", "queue_drops_readings_and_counts_them",
         "events_are_never_dropped"]


def test_uplink_unit_checks(make_device):
    device = make_device()  # the checks' brokers and records come on top
    result = device.run(3600, script=CHECKS.read_text())
    lines = result.script_output.splitlines()
    passed = [ln.split()[1] for ln in lines if ln.startswith("PASS")]
    assert passed == NAMES, result.script_output + "\n".join(result.errors)


UNLOAD_SCRIPT = """
import sys
import app
from app import config
first = config
from app import unload
unload("config")
gone = "app.config" not in sys.modules and not hasattr(app, "config")
from app import config
print("UNLOAD", gone, config is not first, sys.modules.get("app.config") is config)
sys.modules.pop("app.config")
from app import config as again
print("KEPT", again is config)
"""


def test_unloaded_modules_load_again_as_on_the_device(make_device):
    # The uplink lets its command module and the config schema go after each command; both
    # interpreters must then load them again from the file (the sim's CPython importer once
    # kept them and failed `from app import config`).
    result = make_device().run(10, script=UNLOAD_SCRIPT)
    lines = result.script_output.splitlines()
    assert "UNLOAD True True True" in lines, result.script_output + "\n".join(result.errors)
    # Dropped from sys.modules only, a submodule stays its package's attribute, on both.
    assert "KEPT True" in lines, result.script_output
